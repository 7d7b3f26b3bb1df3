"""The embedded Milvus: Milvus Lite run as a local server process.

Milvus Lite's data directory holds a lock — only one process may open it (STACK.md) — while serving, the
nearline index worker and the CLI are several processes. So the embedded default is one
``python -m milvus_lite server --data-dir <home>/data/milvus --host 127.0.0.1 --port P`` child process, and
every client connects to ``http://127.0.0.1:P``: the same client code as a Milvus cluster.

The server's pid, port and log live next to the data directory (``<home>/data/milvus_server/``), so
``feed index server start|stop|status`` and :func:`ensure_server` find a running server from any process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feed.config import FeedPaths

DEFAULT_HOST = "127.0.0.1"  # never 0.0.0.0: the embedded server is for this machine only
DEFAULT_PORT = 19530  # Milvus' own default port
DATA_DIR = "milvus"  # <home>/data/milvus
RUN_DIR = "milvus_server"  # <home>/data/milvus_server/{server.json,server.log}
STATE_FILE = "server.json"
LOG_FILE = "server.log"
START_TIMEOUT_S = 60.0  # a cold start imports pymilvus/grpc/faiss: ≈1–2 s idle, far more on a busy machine


class LiteServerError(RuntimeError):
    """The Milvus Lite server could not be started, or died; the message carries its log tail."""


@dataclass(frozen=True)
class LiteServer:
    """A running (or recorded) Milvus Lite server process."""

    pid: int
    host: str
    port: int
    data_dir: str
    log_file: str
    started_at: float

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return pid_alive(self.pid)


def data_dir(paths: FeedPaths) -> Path:
    return paths.data / DATA_DIR


def run_dir(paths: FeedPaths) -> Path:
    return paths.data / RUN_DIR


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still answers kill(0); reap it if it is ours
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path | str, lines: int = 20) -> str:
    p = Path(path)
    if not p.is_file():
        return "(no log)"
    return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])


def read_state(paths: FeedPaths) -> LiteServer | None:
    """The recorded server of this home, or None (nothing recorded, or the file is unreadable)."""
    f = run_dir(paths) / STATE_FILE
    try:
        return LiteServer(**json.loads(f.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def wait_ready(server: LiteServer, timeout: float = START_TIMEOUT_S) -> float:
    """Block until the server answers an RPC; returns seconds waited. Raises :class:`LiteServerError` when
    the process exits or the timeout passes (with the log tail)."""
    from pymilvus import MilvusClient, MilvusException

    t0 = time.perf_counter()
    while True:
        if not server.alive():
            raise LiteServerError(
                f"Milvus Lite server (pid {server.pid}) exited during start; log {server.log_file}:\n"
                f"{log_tail(server.log_file)}"
            )
        if port_open(server.host, server.port):
            try:
                client = MilvusClient(uri=server.uri, timeout=5)
                client.get_server_version()
                client.close()
                return time.perf_counter() - t0
            except MilvusException:
                pass
        if time.perf_counter() - t0 > timeout:
            raise LiteServerError(
                f"Milvus Lite server (pid {server.pid}) not ready on {server.uri} after {timeout:.0f} s; "
                f"log {server.log_file}:\n{log_tail(server.log_file)}"
            )
        time.sleep(0.05)


def start_server(
    data: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    run: Path | None = None,
    timeout: float = START_TIMEOUT_S,
    detach: bool = True,
) -> LiteServer:
    """Start ``python -m milvus_lite server`` on ``data`` and wait until it answers.

    ``port`` None → a free port. ``run`` (default ``<data>/../milvus_server``) receives ``server.json`` and
    ``server.log``. ``detach`` → own session, so the server outlives a CLI process that started it.
    """
    port = free_port(host) if port is None else port
    if port_open(host, port):
        raise LiteServerError(f"port {port} on {host} is already in use; pick another with --port")
    run = run or data.parent / RUN_DIR
    run.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    log_file = run / LOG_FILE
    cmd = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data), "--host", host]
    cmd += ["--port", str(port)]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach
        )
    server = LiteServer(proc.pid, host, port, str(data), str(log_file), time.time())
    try:
        wait_ready(server, timeout)
    except LiteServerError:
        stop_process(proc.pid)
        raise
    (run / STATE_FILE).write_text(json.dumps(asdict(server)))
    return server


def stop_process(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True when the process is gone."""
    if not pid_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    return not pid_alive(pid)


def stop_server(paths: FeedPaths) -> LiteServer | None:
    """Stop this home's recorded server (if any) and forget it; returns what was stopped."""
    server = read_state(paths)
    if server is None:
        return None
    if server.alive():
        stop_process(server.pid)
    with contextlib.suppress(FileNotFoundError):
        (run_dir(paths) / STATE_FILE).unlink()
    return server


def running_server(paths: FeedPaths) -> LiteServer | None:
    """This home's recorded server when its process is alive and its port is open."""
    server = read_state(paths)
    if server is not None and server.alive() and port_open(server.host, server.port):
        return server
    return None


def ensure_server(
    paths: FeedPaths, *, port: int | None = None, timeout: float = START_TIMEOUT_S
) -> LiteServer:
    """The running server of this home, or a new one on ``port`` (default :data:`DEFAULT_PORT` when free,
    else any free port). A stale state file (process gone) is replaced."""
    server = running_server(paths)
    if server is not None:
        if port is not None and server.port != port:
            raise LiteServerError(
                f"a Milvus Lite server for {paths.home} already runs on port {server.port} "
                f"(pid {server.pid}); stop it first (feed index server stop) to use port {port}"
            )
        return server
    if port is None:
        port = DEFAULT_PORT if not port_open(DEFAULT_HOST, DEFAULT_PORT) else free_port()
    return start_server(data_dir(paths), port=port, run=run_dir(paths), timeout=timeout)
