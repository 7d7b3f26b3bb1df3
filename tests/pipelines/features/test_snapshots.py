"""Snapshot ranges and the Delta predicates that make a range re-run replace its rows."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from pipelines import delta_io
from pipelines.features.config import FeatureConfig
from pipelines.features.snapshots import SnapshotRange, resolve_snapshots
from pipelines.schemas import TS

D = dt.date


def test_default_range_is_day_after_first_to_day_after_last_impression() -> None:
    first = dt.datetime(2025, 3, 1, 23, 59, tzinfo=dt.UTC)
    last = dt.datetime(2025, 3, 10, 0, 0, tzinfo=dt.UTC)
    snaps = resolve_snapshots(first, last)
    assert (snaps.start, snaps.end, snaps.origin, snaps.full) == (
        D(2025, 3, 2),
        D(2025, 3, 11),
        D(2025, 3, 2),
        True,
    )
    assert len(snaps.days()) == 10
    assert snaps.cutoff == dt.datetime(2025, 3, 11, tzinfo=dt.UTC)
    assert snaps.predicate() == "event_timestamp < '2025-03-12T00:00:00Z'"
    ranged = resolve_snapshots(first, last, start=D(2025, 3, 5), end=D(2025, 3, 5))
    assert ranged.origin == D(2025, 3, 2)  # independent of the range asked for
    assert ranged.predicate() == (
        "event_timestamp >= '2025-03-05T00:00:00Z' AND event_timestamp < '2025-03-06T00:00:00Z'"
    )
    assert ranged.predicate(lag_days=1) == (
        "event_timestamp >= '2025-03-04T00:00:00Z' AND event_timestamp < '2025-03-05T00:00:00Z'"
    )


def test_bad_config_and_range_are_refused() -> None:
    with pytest.raises(ValueError, match="after end"):
        SnapshotRange(start=D(2025, 3, 5), end=D(2025, 3, 4), origin=D(2025, 3, 1), full=False)
    with pytest.raises(ValueError, match="post_engagement schema"):
        FeatureConfig(engagement_windows_days=(1, 14))
    with pytest.raises(ValueError, match="history_cap"):
        FeatureConfig(history_cap=0)


def test_predicate_replaces_exactly_the_range_in_delta(tmp_path) -> None:
    path = tmp_path / "t"
    days = [dt.datetime(2025, 3, d, tzinfo=dt.UTC) for d in range(1, 8)]
    delta_io.write(path, pa.table({"k": list(range(7)), "event_timestamp": pa.array(days, TS)}))
    snaps = SnapshotRange(start=D(2025, 3, 3), end=D(2025, 3, 4), origin=D(2025, 3, 1), full=False)
    new = pa.table({"k": [30, 40], "event_timestamp": pa.array(days[2:4], TS)})
    delta_io.write(path, new, mode="overwrite", predicate=snaps.predicate())
    assert sorted(delta_io.read(path).column("k").to_pylist()) == [0, 1, 4, 5, 6, 30, 40]
