"""Fixtures for the feature pipeline tests: small raw tables built row by row, so expectations are exact."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.schemas import LABELS, RAW_SCHEMAS

T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)  # day 0 of the hand-made scenarios


def at(day: float, hours: float = 0.0) -> dt.datetime:
    """A UTC instant ``day`` days (+ ``hours``) after T0."""
    return T0 + dt.timedelta(days=day, hours=hours)


@dataclass
class RawBuilder:
    """Collects raw rows (with canonical defaults) and writes the five raw Delta tables."""

    members: list[dict[str, Any]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    follows: list[dict[str, Any]] = field(default_factory=list)
    impressions: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    at = staticmethod(at)  # tests reach the clock through the fixture (importlib mode: no conftest imports)

    def member(self, member_id: int, created_at: dt.datetime, **fields: Any) -> None:
        row = {"member_id": member_id, "created_at": created_at, "headline": f"headline {member_id}"}
        self.members.append(row | fields)

    def post(
        self, post_id: int, author_id: int, created_at: dt.datetime, text: str = "hello", **f: Any
    ) -> None:
        row = {
            "post_id": post_id,
            "author_id": author_id,
            "created_at": created_at,
            "text": text,
            "format": "text",
        }
        self.posts.append(row | f)

    def follow(self, member_id: int, author_id: int, created_at: dt.datetime) -> None:
        self.follows.append({"member_id": member_id, "author_id": author_id, "created_at": created_at})

    def impression(
        self, member_id: int, post_id: int, ts: dt.datetime, *labels: str, position: int = 0
    ) -> int:
        unknown = set(labels) - set(LABELS)
        assert not unknown, unknown
        event_id = len(self.impressions) + 1
        row = {
            "event_id": event_id,
            "member_id": member_id,
            "post_id": post_id,
            "event_timestamp": ts,
            "session_id": event_id,
            "device_type": "mobile_app",
            "position": position,
        }
        self.impressions.append(row | {label: int(label in labels) for label in LABELS})
        return event_id

    def update(self, member_id: int, ts: dt.datetime, **fields: Any) -> None:
        self.updates.append({"member_id": member_id, "event_timestamp": ts} | fields)

    def write(self, paths: FeedPaths) -> FeedPaths:
        rows = {
            "raw_members": self.members,
            "raw_posts": self.posts,
            "raw_follows": self.follows,
            "raw_impressions": self.impressions,
            "raw_profile_updates": self.updates,
        }
        for name, schema in RAW_SCHEMAS.items():
            table = pa.Table.from_pylist(rows[name], schema=schema)
            delta_io.write(paths.table(name), table, mode="overwrite", schema=schema)
        return paths


@pytest.fixture
def raw() -> RawBuilder:
    return RawBuilder()


def random_raw(
    seed: int, *, members: int = 40, posts: int = 60, impressions: int = 2500, days: int = 24
) -> RawBuilder:
    """Random raw data with many ties and same-day events, for recompute-from-raw comparisons."""
    rng = random.Random(seed)
    b = RawBuilder()
    tags = ["#AI", "#ml stuff", "#Jobs", "no tag", "#ai again", "#Data_2"]
    for m in range(1, members + 1):
        b.member(m, at(rng.uniform(-10, days - 5)), industry=rng.choice(["tech", "law", None]))
    for p in range(1, posts + 1):
        b.post(
            p,
            rng.randint(1, members // 2),
            at(rng.uniform(-20, days - 1)),
            text=f"post {p} {rng.choice(tags)}",
        )
    created = {p["post_id"]: p["created_at"] for p in b.posts}
    pairs = {(rng.randint(1, members), rng.randint(1, members // 2)) for _ in range(members * 3)}
    for m, a in sorted(pairs):
        b.follow(m, a, at(rng.uniform(-15, days)))
    for _ in range(impressions):
        p = rng.randint(1, posts)
        start = max(created[p], T0)
        ts = start + dt.timedelta(seconds=rng.randint(0, int((at(days) - start).total_seconds())))
        labels = [lab for lab in LABELS if rng.random() < 0.12]
        b.impression(rng.randint(1, members), p, ts, *labels)
    for m in rng.sample(range(1, members + 1), members // 2):
        for _ in range(rng.randint(1, 3)):
            b.update(
                m,
                at(rng.uniform(-5, days)),
                headline=rng.choice([None, f"new {m}"]),
                industry=rng.choice([None, "ops"]),
            )
    # Unique (member_id, event_timestamp) per RAW_KEYS.
    b.updates = list({(u["member_id"], u["event_timestamp"]): u for u in b.updates}.values())
    return b


@pytest.fixture(scope="module")
def random_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeedPaths, RawBuilder]:
    builder = random_raw(7)
    paths = FeedPaths(home=Path(tmp_path_factory.mktemp("random_lake")))
    return builder.write(paths), builder


CREATED = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # the "job run time" stamped on rows computed in tests


@pytest.fixture
def compute(spark: Any) -> Any:
    """Run feature jobs on a lake without the gate: ``compute(paths, tables, start=, end=, config=)`` gives
    the staged rows per table."""
    from pipelines.features.build import feature_jobs, impression_span, stage_table
    from pipelines.features.common import load_raw
    from pipelines.features.config import FeatureConfig
    from pipelines.features.snapshots import resolve_snapshots

    def run(
        paths: FeedPaths,
        tables: tuple[str, ...],
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        config: FeatureConfig | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        snaps = resolve_snapshots(*impression_span(spark, paths), start=start, end=end)
        raw_frames = load_raw(spark, paths, snaps.cutoff)
        jobs = feature_jobs(raw_frames, snaps, config or FeatureConfig(), CREATED)
        try:
            return {t: stage_table(jobs[t](), paths.staging / t / "test", t).to_pylist() for t in tables}
        finally:
            raw_frames.impressions.unpersist()

    return run


def _by_snapshot(rows: list[dict[str, Any]], key: str) -> dict[tuple[Any, dt.datetime], dict[str, Any]]:
    keyed = {(r[key], r["event_timestamp"]): r for r in rows}
    assert len(keyed) == len(rows), "duplicate (key, event_timestamp)"
    return keyed


@pytest.fixture
def by_snapshot() -> Any:
    """Rows keyed by (entity id, event_timestamp); asserts that pair is unique (Feast's join key)."""
    return _by_snapshot
