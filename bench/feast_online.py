"""Feast online read latency: SQLite in-process (embedded default) vs Redis, one member and 100 posts.

Reads go through ``pipelines.feature_store.OnlineReader`` (store, service and join keys resolved once), as the
serving path does. Each case: warm-up calls, then N timed calls on random entities; p50/p99 in milliseconds.
Goals (issue "Foundation"): p99 < 5 ms for one member on SQLite, < 2 ms on Redis. Where time goes is measured
with cProfile over the member case and reported under ``details.profile``.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import io
import pstats
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feed.config import REPORTS_DIR, FeedSettings
from feed.reports import write_report
from pipelines import delta_io, feature_store


@dataclass(frozen=True)
class BenchConfig:
    warmup: int = 50
    calls: int = 500  # timed calls per case (>= 500 so p99 rests on >= 5 samples)
    posts_per_call: int = 100  # a ranking request's candidate set
    # One member read = every feature of the member-keyed views (14 today: the issue asks for ≈20), not just
    # a service, so the figure covers what the request path fetches for a member at once.
    member_views: tuple[str, ...] = (
        "member_profile",
        "member_history",
        "member_affinity",
        "member_embedding",
    )
    post_service: str = "retrieval_post_v1"
    seed: int = 0


def _ms(samples_ns: list[int]) -> dict[str, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def _time(call: Callable[[], Any], cfg: BenchConfig) -> dict[str, float]:
    for _ in range(cfg.warmup):
        call()
    samples = []
    for _ in range(cfg.calls):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return _ms(samples)


def _entities(settings: FeedSettings, cfg: BenchConfig) -> tuple[list[int], list[tuple[int, int]]]:
    """Member ids and (post_id, author_id) pairs that exist in the feature tables."""
    paths = settings.paths()
    members = delta_io.read(paths.table("member_profile"), columns=["member_id"]).column(0).unique()
    posts = delta_io.read(paths.table("post_content"), columns=["post_id", "author_id"]).to_pylist()
    pairs = sorted({(r["post_id"], r["author_id"]) for r in posts})
    if not len(members) or not pairs:
        raise feature_store.FeatureStoreError(f"no members or posts in the feature tables under {paths.lake}")
    return members.to_pylist(), pairs


def _require_materialized(settings: FeedSettings) -> dt.datetime:
    """The end time the local online store was materialized to; a clear error when it never was."""
    paths = settings.paths()
    try:
        views = feature_store.applied_store(paths).list_feature_views()
    except feature_store.FeatureStoreError:
        views = []
    ends = [v.most_recent_end_time for v in views if v.most_recent_end_time is not None]
    if not views or len(ends) < len(views):
        raise feature_store.FeatureStoreError(
            f"the Feast store under {paths.feast} is not materialized; run `feed features apply` and "
            "`feed features materialize` first"
        )
    return max(e if e.tzinfo else e.replace(tzinfo=dt.UTC) for e in ends)


def _cases(fs: Any, settings: FeedSettings, cfg: BenchConfig, members: list[int], pairs: list) -> dict:
    paths = settings.paths()
    rng = random.Random(cfg.seed)
    member_refs = [
        f"{view}:{feature.name}"
        for view in cfg.member_views
        for feature in fs.get_feature_view(view).features
    ]
    member_reader = feature_store.online_reader(paths, member_refs, fs=fs)
    post_reader = feature_store.online_reader(paths, cfg.post_service, fs=fs)

    def member_call() -> Any:
        return member_reader.read([{"member_id": rng.choice(members)}])

    def posts_call() -> Any:
        chosen = rng.sample(pairs, min(cfg.posts_per_call, len(pairs)))
        return post_reader.read([{"post_id": p, "author_id": a} for p, a in chosen])

    n_features = len(member_call()) - 1  # minus the member_id column
    n_post_features = len(posts_call()) - 2  # minus post_id, author_id
    return {
        "member": _time(member_call, cfg),
        "posts100": _time(posts_call, cfg),
        "member_features": n_features,
        "post_features": n_post_features,
        "member_call": member_call,
    }


def _profile(call: Callable[[], Any], calls: int = 300, top: int = 10) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return [line.strip() for line in out.getvalue().splitlines() if line.strip()][-top:]


@contextmanager
def _redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port (None when the binary is missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([*cmd, "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            import redis

            client = redis.Redis(host="127.0.0.1", port=port)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def run(
    settings: FeedSettings, config: BenchConfig | None = None, *, reports_dir: Path = REPORTS_DIR
) -> Path:
    """Measure, write <reports_dir>/bench/feast_online.json, and return its path."""
    cfg = config or BenchConfig()
    paths = settings.paths()
    end = _require_materialized(settings)
    members, pairs = _entities(settings, cfg)
    notes: list[str] = []

    sqlite = _cases(feature_store.store(paths), settings, cfg, members, pairs)
    profile = {"sqlite_member": _profile(sqlite.pop("member_call"))}

    redis: dict[str, Any] = {}
    with _redis_server() as connection:
        if connection is None:
            notes.append("redis-server not installed: Redis figures are null (apt-get install redis-server)")
        else:
            feature_store.apply(paths, "redis", redis_connection=connection)
            feature_store.materialize_incremental(paths, end, "redis", redis_connection=connection)
            fs = feature_store.store(paths, "redis", redis_connection=connection)
            redis = _cases(fs, settings, cfg, members, pairs)
            profile["redis_member"] = _profile(redis.pop("member_call"))

    summary = {
        "sqlite_member_p50_ms": sqlite["member"]["p50_ms"],
        "sqlite_member_p99_ms": sqlite["member"]["p99_ms"],
        "sqlite_posts100_p50_ms": sqlite["posts100"]["p50_ms"],
        "sqlite_posts100_p99_ms": sqlite["posts100"]["p99_ms"],
        "redis_member_p50_ms": redis["member"]["p50_ms"] if redis else None,
        "redis_member_p99_ms": redis["member"]["p99_ms"] if redis else None,
        "redis_posts100_p50_ms": redis["posts100"]["p50_ms"] if redis else None,
        "redis_posts100_p99_ms": redis["posts100"]["p99_ms"] if redis else None,
        "member_features": sqlite["member_features"],
        "post_features": sqlite["post_features"],
        "sqlite_member_goal_met": sqlite["member"]["p99_ms"] < 5.0,
        "redis_member_goal_met": (redis["member"]["p99_ms"] < 2.0) if redis else None,
    }
    if not summary["sqlite_member_goal_met"]:
        notes.append("SQLite member p99 misses 5 ms: see details.profile.sqlite_member for where time goes")
    if redis and not summary["redis_member_goal_met"]:
        notes.append("Redis member p99 misses 2 ms: see details.profile.redis_member for where time goes")
    run_config = asdict(cfg) | {"members": len(members), "posts": len(pairs), "home": str(paths.home)}
    return write_report(
        "feast_online",
        summary,
        run_config,
        notes=notes,
        details={"profile": profile},
        reports_dir=reports_dir,
    )
