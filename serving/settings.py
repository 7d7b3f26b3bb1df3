"""The feed service's settings: a pydantic-settings class read once at start-up (env prefix ``FEED_SERVE_``).

``FEED_HOME`` (via :class:`feed.config.FeedSettings`) says where the lake, the Feast repo, the models and the
Milvus Lite data live; everything else has an embedded default that serves the ``tiny`` demo on one laptop.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feed.config import FeedPaths, FeedSettings
from training.ranking.features import TASKS

# Default blend of the task heads: active engagement counts most, a skip counts against.
DEFAULT_BLEND: dict[str, float] = {
    "click": 1.0,
    "skip": -0.5,
    "long_dwell": 1.0,
    "like": 2.0,
    "comment": 3.0,
    "share": 3.0,
}


class StageTimeouts(BaseSettings):
    """Per-stage budgets in milliseconds; a stage over its budget takes its fallback."""

    model_config = SettingsConfigDict(extra="forbid")

    member_features: float = 200.0
    cold_start: float = 500.0
    retrieval: float = 300.0
    post_features: float = 300.0
    ranking: float = 1000.0


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEED_SERVE_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=lambda: FeedSettings().home)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Where the top-N comes from. "replica": the in-process HNSW replica of the promoted encoder's post
    # vectors (docs/index.md), kept current from the nearline log that feeds Milvus too; "milvus": the
    # collection behind the `posts` alias; "auto": Milvus when a cluster URI is configured, else the replica.
    # Milvus Lite searches in Python in its own process (≈ 20 ms a query here, competing with the service for
    # the CPU: reports/bench/serving_milvus.json); Milvus stays the system of record either way.
    retriever: Literal["auto", "milvus", "replica"] = "auto"
    milvus_uri: str | None = None  # None: the home's Milvus Lite server (started when not running)
    milvus_token: str = ""
    start_milvus: bool = True  # start the home's Lite server when it is not running (embedded default)
    top_n: int = Field(default=500, ge=1, le=5000)  # candidates retrieved from Milvus
    max_k: int = Field(default=500, ge=1)
    max_per_author: int = Field(default=2, ge=1)  # creator diversity guard in the top k
    blend: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_BLEND))
    timeouts_ms: StageTimeouts = Field(default_factory=StageTimeouts)
    # Request time. "data": the end of the newest materialized feature snapshot (a synthetic or replayed
    # world whose clock is not today's); "wall": now. Features older than their view's TTL at that time are
    # stale (member_features_stale).
    clock: Literal["data", "wall"] = "data"
    as_of: dt.datetime | None = None  # fixed request time (overrides clock), e.g. for a replay
    # Candidate features are served from the cache for this long, then refreshed in the background; nearline
    # pushes (engagement percentiles within minutes) reach the feed within this bound.
    post_cache_ttl_s: float = Field(default=300.0, ge=0)
    post_cache_size: int = Field(default=200_000, ge=0)
    prewarm_posts: int = Field(default=20_000, ge=0)  # newest posts' features read into the cache at start
    cold_start_cache_size: int = Field(default=10_000, ge=0)  # profile embeddings encoded on the fly
    popular_fallback_size: int = Field(default=1000, ge=1)  # recent popular posts kept for fallbacks
    popular_window_days: int = Field(default=7, ge=1)
    score_batch_max: int = Field(default=4, ge=1)  # members scored in one GR forward (model stage batching)
    score_batch_wait_ms: float = Field(default=2.0, ge=0)
    feature_workers: int = Field(default=4, ge=1)  # CPU feature-stage threads
    torch_threads: int = Field(default=1, ge=1)  # per GR forward; the model stage is one thread
    device: str = "cpu"  # GR and cold-start encoder device ("cuda" on a GPU host)
    kernel: str = "auto"
    erasure_poll_s: float = Field(default=2.0, gt=0)  # how often data/erasure/ is checked for new receipts
    log_impressions: bool = True  # served impressions → landing batch → raw_impressions
    impression_flush_s: float = Field(default=10.0, gt=0)
    impression_flush_rows: int = Field(default=5000, ge=1)
    feast_variant: str = "local"
    redis_connection: str | None = None

    @field_validator("blend")
    @classmethod
    def _known_tasks(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(TASKS))
        if unknown:
            raise ValueError(f"blend weights for unknown tasks {unknown}; tasks are {list(TASKS)}")
        return {task: float(value.get(task, 0.0)) for task in TASKS}

    @model_validator(mode="after")
    def _aware(self) -> ServingSettings:
        if self.as_of is not None and self.as_of.tzinfo is None:
            self.as_of = self.as_of.replace(tzinfo=dt.UTC)
        return self

    def paths(self) -> FeedPaths:
        return FeedPaths(home=Path(self.home).resolve())
