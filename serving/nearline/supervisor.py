"""``feed nearline run-all``: the three workers as child processes, for the demo and the freshness benchmark.

Each worker is its own OS process (``python -m feed.cli --home H nearline <stage>``), exactly as it would run
alone; the supervisor restarts a child that exits (crash, kill, OOM) after ``restart_delay_s`` — the restarted
worker resumes from its committed offset — and on Ctrl-C / SIGTERM stops all children (SIGTERM, then SIGKILL
after ``stop_timeout_s``). A child that exits with code 2 (a configuration error: no promoted model, Feast not
applied, …) is not restarted: the supervisor stops all and raises :class:`SupervisorError`. Child output goes
to ``<home>/data/nearline/logs/<stage>.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from feed.config import FeedPaths
from serving.nearline.config import STAGES

log = logging.getLogger(__name__)

CONFIG_ERROR_EXIT = 2  # what `feed nearline <stage>` returns for a bad setting / missing model or tables


class SupervisorError(RuntimeError):
    """A worker cannot run as configured (it exited with CONFIG_ERROR_EXIT); restarting would not help."""


def log_dir(paths: FeedPaths) -> Path:
    return paths.data / "nearline" / "logs"


def worker_command(paths: FeedPaths, stage: str, extra_args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "feed.cli", "--home", str(paths.home), "nearline", stage, *extra_args]


@dataclass
class Child:
    stage: str
    process: subprocess.Popen
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0


@dataclass(frozen=True)
class SupervisorConfig:
    stages: tuple[str, ...] = STAGES
    restart_delay_s: float = 1.0
    stop_timeout_s: float = 10.0
    check_s: float = 0.25
    worker_args: tuple[str, ...] = ()  # extra CLI options passed to every worker


class Supervisor:
    def __init__(
        self,
        paths: FeedPaths,
        cfg: SupervisorConfig = SupervisorConfig(),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.paths, self.cfg = paths, cfg
        self.env = {**os.environ, **(env or {})}
        self.children: dict[str, Child] = {}
        self.restarts: dict[str, int] = dict.fromkeys(cfg.stages, 0)

    def _start(self, stage: str) -> Child:
        folder = log_dir(self.paths)
        folder.mkdir(parents=True, exist_ok=True)
        out = (folder / f"{stage}.log").open("ab")
        process = subprocess.Popen(
            worker_command(self.paths, stage, self.cfg.worker_args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.info("run-all: started %s (pid %d)", stage, process.pid)
        return Child(stage, process, out, restarts=self.restarts[stage])

    def start(self) -> None:
        for stage in self.cfg.stages:
            self.children[stage] = self._start(stage)

    def check(self) -> list[str]:
        """Restart every child that exited; returns the stages restarted."""
        restarted = []
        for stage, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                continue
            child.log_file.close()
            if code == CONFIG_ERROR_EXIT:
                raise SupervisorError(
                    f"{stage} exited with a configuration error; see {log_dir(self.paths) / f'{stage}.log'}"
                )
            self.restarts[stage] += 1
            log.warning(
                "run-all: %s exited with %s; restarting (restart %d)", stage, code, self.restarts[stage]
            )
            time.sleep(self.cfg.restart_delay_s)
            self.children[stage] = self._start(stage)
            restarted.append(stage)
        return restarted

    def stop(self) -> None:
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.stop_timeout_s
        for child in self.children.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.log_file.close()
        log.info("run-all: stopped %s", ", ".join(self.children))

    def run(self, stop: threading.Event) -> None:
        """Start the children and supervise them until ``stop`` is set; always stops the children."""
        self.start()
        try:
            while not stop.wait(self.cfg.check_s):
                self.check()
        finally:
            self.stop()
