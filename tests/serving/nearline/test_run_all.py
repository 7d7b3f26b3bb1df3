"""``run-all``'s supervisor with a real worker process: a worker killed with SIGKILL is restarted, resumes
from its committed offset and processes what arrived meanwhile; stopping the supervisor stops its children."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from pipelines import delta_io
from serving.nearline.events import EventPublisher, NewPost
from serving.nearline.schemas import PROMPTS_TABLE
from serving.nearline.supervisor import Supervisor, SupervisorConfig

from .conftest import NearlineHome

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _prompted_posts(home: NearlineHome) -> set[int]:
    path = home.paths.table(PROMPTS_TABLE)
    if not delta_io.exists(path):
        return set()
    rows = delta_io.read(path, columns=["kind", "entity_id"]).to_pylist()
    return {r["entity_id"] for r in rows if r["kind"] == "post"}


def test_supervisor_restarts_a_killed_worker_which_resumes(nearline_home: NearlineHome) -> None:
    publisher = EventPublisher(nearline_home.paths)
    publisher.publish([NewPost(900, 1, "text", "First post on #ai")])
    supervisor = Supervisor(nearline_home.paths, SupervisorConfig(stages=("prompts",), restart_delay_s=0.1))
    stop = threading.Event()
    thread = threading.Thread(target=supervisor.run, args=(stop,))
    thread.start()
    try:
        _wait(lambda: 900 in _prompted_posts(nearline_home))
        first = supervisor.children["prompts"].process
        os.kill(first.pid, signal.SIGKILL)
        _wait(lambda: supervisor.restarts["prompts"] == 1)
        publisher.publish([NewPost(901, 2, "text", "Second post on #ai")])
        _wait(lambda: 901 in _prompted_posts(nearline_home))
        second = supervisor.children["prompts"].process
        assert second.pid != first.pid
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert second.poll() is not None  # stopped with the supervisor
    rows = delta_io.read(nearline_home.paths.table(PROMPTS_TABLE), columns=["kind", "entity_id"]).to_pylist()
    assert sorted(r["entity_id"] for r in rows if r["kind"] == "post") == [900, 901]  # once each


def test_supervisor_stops_on_a_configuration_error(nearline_home: NearlineHome) -> None:
    """The index worker of a home whose Feast repo was never applied exits with code 2: restarting cannot
    help, so run-all stops instead of restarting it forever."""
    from serving.nearline.supervisor import SupervisorError, log_dir

    supervisor = Supervisor(nearline_home.paths, SupervisorConfig(stages=("index",), restart_delay_s=0.1))
    with pytest.raises(SupervisorError, match="index exited with a configuration error"):
        supervisor.run(threading.Event())
    assert supervisor.restarts["index"] == 0
    assert "feed features apply" in (log_dir(nearline_home.paths) / "index.log").read_text()
