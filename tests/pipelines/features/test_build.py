"""build_features end to end: Spark → staging → quality gate → Delta, and idempotent range re-runs."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter

import pytest

from feed.config import FEATURE_TABLES, RAW_TABLES, FeedPaths, SparkConfig
from pipelines import delta_io
from pipelines.schemas import FEATURE_KEYS

pytestmark = pytest.mark.integration
SPARK = SparkConfig(master="local[2]")


def published(paths: FeedPaths, table: str) -> list[dict]:
    return delta_io.read(paths.table(table)).to_pylist()


def keyed(rows: list[dict], table: str) -> dict[tuple, dict]:
    key = FEATURE_KEYS[table]
    return {(r[key], r["event_timestamp"]): {k: v for k, v in r.items() if k != "created"} for r in rows}


@pytest.mark.slow  # two builds × six gated tables: 20–90 s on 2 busy cores
def test_full_build_then_one_day_rerun_replaces_rows(raw, feed_paths, spark) -> None:
    from pipelines.features.build import build_features

    at = raw.at
    for m in (1, 2, 3):
        raw.member(m, at(-3))
    for p in range(1, 7):
        raw.post(p, 1 + p % 3, at(p - 4, 6), text=f"#t{p % 2}")
    raw.follow(2, 1, at(0, 3))
    for day in range(6):
        for m in (1, 2, 3):
            raw.impression(m, 1 + (day + m) % 6, at(day, 8 + m), "click" if (day + m) % 2 else "skip")
    raw.update(1, at(2, 9), headline="moved")
    raw.write(feed_paths)

    report = build_features(feed_paths, SPARK, run_id="full")
    assert report.passed, [t.gate.summary for t in report.tables if not t.passed]
    assert [t.table for t in report.tables] == list(FEATURE_TABLES)
    assert (report.snapshots.start, report.snapshots.end) == (at(1).date(), at(6).date())
    before = {}
    for t in report.tables:
        rows = published(feed_paths, t.table)
        assert len(rows) == t.rows > 0, t.table
        assert t.staged == feed_paths.staging / t.table / "full"
        before[t.table] = keyed(rows, t.table)

    day = at(3).date()
    rerun = build_features(feed_paths, SPARK, start=day, end=day, run_id="day3")
    assert rerun.passed, [t.gate.summary for t in rerun.tables if not t.passed]
    eng = next(t for t in rerun.tables if t.table == "post_engagement")
    assert eng.rows == sum(1 for _, s in before["post_engagement"] if s == at(3))
    for table in FEATURE_TABLES:
        rows = published(feed_paths, table)
        key = FEATURE_KEYS[table]
        dupes = [k for k, n in Counter((r[key], r["event_timestamp"]) for r in rows).items() if n > 1]
        assert not dupes, (table, dupes)
        assert keyed(rows, table) == before[table], table  # same rows, same values: replaced, not appended
        # The re-run's rows carry the re-run's `created`.
        stamps = {r["created"] for r in rows if r["event_timestamp"] == at(3)}
        if table in ("post_engagement", "author_stats"):
            assert stamps == {rerun.created}, table


def test_missing_raw_table_is_a_clear_error(feed_paths, spark) -> None:
    from pipelines.features.build import build_features
    from pipelines.features.common import MissingRawTableError

    with pytest.raises(MissingRawTableError, match="raw_impressions"):
        build_features(feed_paths, SPARK)


def test_builds_the_tiny_synthetic_lake(tiny_raw_lake, tmp_path, spark) -> None:
    """The generator's tiny data set (≈1k members, ≈100k impressions) passes every gate."""
    from pipelines.features.build import build_features

    paths = FeedPaths(home=tmp_path)
    for name in RAW_TABLES:
        shutil.copytree(tiny_raw_lake.table(name), paths.table(name))
    report = build_features(paths, SPARK, run_id="tiny")
    assert report.passed, [t.gate.summary for t in report.tables if not t.passed]
    rows = {t.table: t.rows for t in report.tables}
    assert all(n > 0 for n in rows.values()), rows
    last = report.snapshots.timestamps()[-1]
    eng = delta_io.read(paths.table("post_engagement")).to_pandas()
    latest = eng[eng.event_timestamp == last]
    assert latest.view_percentile.between(1, 100).all()
    assert latest.view_percentile.max() == 100
    assert report.created.tzinfo is dt.UTC
