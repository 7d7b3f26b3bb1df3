"""The loop every worker process runs: step until stopped (a daemon) or until the input is drained (``once``).

A step that raises ends the process (non-zero exit): the worker's in-memory state may be ahead of its
committed offset, and only a restart (replay up to the offset) makes it exact again. ``run-all`` restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from feed.config import FeedPaths
from serving.nearline.config import STAGES, NearlineConfig, NearlineConfigError

log = logging.getLogger(__name__)


class Worker(Protocol):
    stage: str
    offset: int

    def step(self, *, drain: bool = False) -> int: ...

    def pending(self) -> int: ...


@dataclass(frozen=True)
class RunSummary:
    stage: str
    batches: int
    commits_consumed: int
    offset: int
    seconds: float


def make_worker(stage: str, paths: FeedPaths, cfg: NearlineConfig) -> Worker:
    if stage == "prompts":
        from serving.nearline.prompts import PromptWorker

        return PromptWorker(paths, cfg)
    if stage == "embed":
        from serving.nearline.embed import EmbedWorker

        return EmbedWorker(paths, cfg)
    if stage == "index":
        from serving.nearline.index import IndexWorker

        return IndexWorker(paths, cfg)
    raise NearlineConfigError(f"unknown nearline stage {stage!r}; expected one of {STAGES}")


def run_worker(
    worker: Worker, cfg: NearlineConfig, *, once: bool = False, stop: threading.Event | None = None
) -> RunSummary:
    """Run ``worker`` until ``stop`` is set, or (``once``) until nothing is left to read."""
    began = time.perf_counter()
    batches = consumed = 0
    stop = stop or threading.Event()
    while not stop.is_set():
        n = worker.step(drain=once)
        if n:
            batches += 1
            consumed += n
            continue
        if once and worker.pending() == 0 and not getattr(worker, "buffer", None):
            break
        stop.wait(cfg.poll_s)
    return RunSummary(worker.stage, batches, consumed, worker.offset, time.perf_counter() - began)
