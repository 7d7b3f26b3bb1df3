"""A throwaway local ``redis-server`` (Debian's package) for the Redis online-store variant: tests, the
serving bench's feature-store fault run. Loopback only, no persistence; stopped (and never left SIGSTOPped)
on exit."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class RedisNotInstalled(RuntimeError):
    """No ``redis-server`` on PATH."""


class RedisStartError(RuntimeError):
    """The server exited or did not answer PING in time."""


@dataclass(frozen=True)
class LocalRedis:
    proc: subprocess.Popen
    address: str  # host:port, Feast's redis connection string


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_redis(workdir: Path, *, port: int | None = None, timeout: float = 20.0) -> Iterator[LocalRedis]:
    """Start ``redis-server`` on ``port`` (default: a free one) with ``workdir`` as its dir; yield it once it
    answers PING; stop it at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisNotInstalled("redis-server is not installed (Debian: apt-get install -y redis-server)")
    import redis

    port = port or _free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*cmd, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RedisStartError(f"redis-server on port {port} did not answer PING") from None
                time.sleep(0.1)
        yield LocalRedis(proc, f"127.0.0.1:{port}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a fault run may have stopped it
        proc.terminate()
        proc.wait(timeout=10)
