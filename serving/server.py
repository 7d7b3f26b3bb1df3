"""The feed service as a background process of a home (``feed serve --detach | --stop | --status``).

``make demo`` ends with the service running: the demo starts ``feed serve`` in its own session, waits for
``/healthz`` to answer, and leaves it up. Its pid, URL and log live in ``<home>/data/serving/`` (like the
Milvus Lite server's), so any later process can find and stop it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from feed.config import FeedPaths
from serving.index.lite import free_port, log_tail, pid_alive, port_open, stop_process

RUN_DIR = "serving"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
START_TIMEOUT_S = 240.0  # imports (torch, Feast, transformers) + models + the post-feature cache warm-up


class ServiceStartError(RuntimeError):
    """The service process exited or did not become ready; the message carries its log tail."""


@dataclass(frozen=True)
class ServiceProcess:
    pid: int
    host: str
    port: int
    log_file: str
    started_at: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return pid_alive(self.pid)


def run_dir(paths: FeedPaths) -> Path:
    return paths.data / RUN_DIR


def running(paths: FeedPaths) -> ServiceProcess | None:
    try:
        proc = ServiceProcess(**json.loads((run_dir(paths) / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return proc if proc.alive() else None


def _feed_executable() -> list[str]:
    exe = Path(sys.executable).parent / "feed"
    return [str(exe)] if exe.is_file() else [sys.executable, "-c", "from feed.cli import main; main()"]


def wait_ready(proc: ServiceProcess, timeout: float = START_TIMEOUT_S) -> float:
    """Block until ``/healthz`` answers (the app's lifespan has loaded everything); seconds waited."""
    import httpx

    t0 = time.perf_counter()
    while True:
        if not proc.alive():
            raise ServiceStartError(
                f"feed service (pid {proc.pid}) exited during start; log {proc.log_file}:\n"
                f"{log_tail(proc.log_file)}"
            )
        if port_open(proc.host, proc.port):
            try:
                if httpx.get(f"{proc.url}/healthz", timeout=5).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
        if time.perf_counter() - t0 > timeout:
            stop_process(proc.pid)
            raise ServiceStartError(
                f"feed service (pid {proc.pid}) not ready on {proc.url} after {timeout:.0f} s; log "
                f"{proc.log_file}:\n{log_tail(proc.log_file)}"
            )
        time.sleep(0.25)


def start(
    paths: FeedPaths, *, host: str = "127.0.0.1", port: int | None = 8000, extra: list[str] | None = None
) -> ServiceProcess:
    """Start ``feed serve`` for ``paths`` in its own session (it outlives this process) and wait until ready.
    ``port`` taken → a free one. Returns the running service (the existing one if it already runs)."""
    current = running(paths)
    if current is not None:
        return current
    if port is None or port_open(host, port):
        port = free_port(host)
    out = run_dir(paths)
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / LOG_FILE
    cmd = [*_feed_executable(), "--home", str(paths.home), "serve", "--host", host, "--port", str(port)]
    cmd += extra or []
    with open(log_file, "ab") as log:
        child = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    proc = ServiceProcess(child.pid, host, port, str(log_file), time.time())
    wait_ready(proc)
    (out / STATE_FILE).write_text(json.dumps(asdict(proc)))
    return proc


def stop(paths: FeedPaths) -> ServiceProcess | None:
    proc = running(paths)
    if proc is not None:
        stop_process(proc.pid)
    (run_dir(paths) / STATE_FILE).unlink(missing_ok=True)
    return proc
