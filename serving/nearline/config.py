"""Nearline settings: one frozen dataclass per run, built once by the CLI; crash injection for tests.

``FEED_NEARLINE_CRASH_AT=<stage>:<point>`` (read by :class:`NearlineSettings`, the only reader of the
environment here) makes a worker end itself with ``os._exit(137)`` — what a SIGKILL or an OOM kill looks like
to its parent — the first time it reaches ``point``:

* ``after_read``: the input batch is read (and, for the index worker, nothing sent yet);
* ``after_sink``: index worker only — Milvus upserted and Feast pushed, offset not yet committed;
* ``after_commit``: output and offset committed, before the next batch.

The kill-and-restart tests run each worker as a real process with these points set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic_settings import BaseSettings, SettingsConfigDict

STAGES: tuple[str, ...] = ("prompts", "embed", "index")
CRASH_POINTS: dict[str, tuple[str, ...]] = {
    "prompts": ("after_read", "after_commit"),
    "embed": ("after_read", "after_commit"),
    "index": ("after_read", "after_sink", "after_commit"),
}
CRASH_EXIT_CODE = 137  # 128 + SIGKILL


class NearlineConfigError(ValueError):
    """A nearline setting is out of range or names an unknown stage / crash point."""


@dataclass(frozen=True)
class CrashPoint:
    stage: str
    point: str

    @classmethod
    def parse(cls, text: str | None) -> CrashPoint | None:
        if not text:
            return None
        stage, _, point = text.partition(":")
        if stage not in CRASH_POINTS or point not in CRASH_POINTS[stage]:
            known = [f"{s}:{p}" for s, ps in CRASH_POINTS.items() for p in ps]
            raise NearlineConfigError(f"FEED_NEARLINE_CRASH_AT={text!r}: expected one of {known}")
        return cls(stage, point)

    def maybe_crash(self, stage: str, point: str) -> None:
        if stage == self.stage and point == self.point:
            os._exit(CRASH_EXIT_CODE)  # no cleanup, no flush: a kill, not an exit


@dataclass(frozen=True)
class NearlineConfig:
    """How the three workers batch and poll. Defaults are sized for seconds-fresh results on 2 CPU cores."""

    poll_s: float = 0.2  # idle wait between looks at the input log
    max_versions: int = 200  # input commits per batch (bounds a catch-up batch after an outage)
    max_rows: int = 2000  # input rows per batch (whole commits; the first commit is always taken)
    # Embedding micro-batches: flush when this many prompts wait, or when the oldest waiting prompt has
    # waited deadline_s — small batches keep freshness, large ones throughput (a forward pass of 32 short
    # prompts costs about as much as 8 on CPU).
    embed_batch_size: int = 32
    embed_deadline_s: float = 1.0
    # Index sinks: retries with exponential backoff while Milvus (or Feast) is unreachable; the offset stays.
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    retry_attempts: int | None = None  # None: retry forever (a daemon); --once sets a bound and then fails
    feast_variant: str = "local"
    push_to_feast: bool = True
    milvus_uri: str | None = None  # None: the local Milvus Lite server of the home
    crash: CrashPoint | None = None

    def __post_init__(self) -> None:
        for name in ("poll_s", "embed_deadline_s", "retry_initial_s", "retry_max_s"):
            if getattr(self, name) < 0:
                raise NearlineConfigError(f"NearlineConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_versions", "max_rows", "embed_batch_size"):
            if getattr(self, name) < 1:
                raise NearlineConfigError(f"NearlineConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.retry_attempts is not None and self.retry_attempts < 1:
            raise NearlineConfigError(
                f"NearlineConfig.retry_attempts must be >= 1, got {self.retry_attempts}"
            )

    def maybe_crash(self, stage: str, point: str) -> None:
        if self.crash is not None:
            self.crash.maybe_crash(stage, point)


class NearlineSettings(BaseSettings):
    """Environment for the nearline workers: ``FEED_NEARLINE_CRASH_AT`` (tests only)."""

    model_config = SettingsConfigDict(env_prefix="FEED_NEARLINE_", extra="ignore")

    crash_at: str | None = None

    def crash_point(self) -> CrashPoint | None:
        return CrashPoint.parse(self.crash_at)
