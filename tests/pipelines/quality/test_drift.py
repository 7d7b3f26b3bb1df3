"""PSI and freshness (pipelines.quality.drift) on hand-made data whose values are known in closed form."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pytest

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.quality import drift
from pipelines.quality.drift import DriftConfig
from pipelines.schemas import TS

# ref 50/50 over {1, 2}, current 25/75: PSI = (0.25 − 0.5)·ln(0.25/0.5) + (0.75 − 0.5)·ln(0.75/0.5)
HALF_TO_QUARTER = 0.25 * math.log(2) + 0.25 * math.log(1.5)


def test_psi_of_shares_is_the_textbook_sum() -> None:
    value = drift.psi_from_shares(np.array([0.5, 0.5]), np.array([0.25, 0.75]))
    assert value == pytest.approx(HALF_TO_QUARTER, rel=1e-12)


def test_psi_bins_on_the_reference_values() -> None:
    reference = np.array([1] * 50 + [2] * 50)
    current = np.array([1] * 25 + [2] * 75)
    # ties: the deciles of {1, 2} are the values themselves → bins (-inf, 1], (1, 2], (2, inf)
    assert list(drift.quantile_edges(reference, 10)) == [1.0, 2.0]
    assert list(drift.bin_shares(current, np.array([1.0, 2.0]))) == [0.25, 0.75, 0.0]
    # the third bin is empty on both sides: its floored shares are equal and add nothing
    assert drift.psi(reference, current) == pytest.approx(HALF_TO_QUARTER, rel=1e-12)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    assert drift.psi(reference, reference.copy()) == 0.0
    shifts = [drift.psi(reference, reference + s) for s in (0.1, 0.5, 1.0)]
    assert shifts == sorted(shifts)
    assert shifts[0] < 0.1 < 0.25 < shifts[-1]  # a 1-σ shift is a "major" one, a 0.1-σ one is not


def test_values_outside_the_reference_range_land_in_the_open_bins() -> None:
    reference = np.arange(100.0)
    shares = drift.bin_shares(np.array([-5.0, 1000.0]), drift.quantile_edges(reference, 10))
    assert shares[0] == 0.5
    assert shares[-1] == 0.5


def test_an_emptied_bin_counts_with_the_epsilon_floor() -> None:
    # everything moves from bin 0 to bin 1: both terms use epsilon for the zero share
    eps = 1e-4
    value = drift.psi_from_shares(np.array([1.0, 0.0]), np.array([0.0, 1.0]), eps)
    assert value == pytest.approx(2 * (1 - eps) * math.log(1 / eps), rel=1e-12)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="psi_threshold"):
        DriftConfig(psi_threshold=0)
    with pytest.raises(ValueError, match="bins"):
        DriftConfig(bins=1)


# --- against a hand-made lake


def _at(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


S = dt.date(2026, 9, 10)


def _write_engagement(paths: FeedPaths, previous: list[int], current: list[int]) -> None:
    rows = [(i, v, _at(S - dt.timedelta(days=1))) for i, v in enumerate(previous)]
    rows += [(i, v, _at(S)) for i, v in enumerate(current)]
    table = pa.table(
        {
            "post_id": pa.array([r[0] for r in rows], pa.int64()),
            "views_7d": pa.array([r[1] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r[2] for r in rows], TS),
        }
    )
    delta_io.write(paths.table("post_engagement"), table, mode="overwrite")


def _write_impressions(paths: FeedPaths, stamps: list[dt.datetime]) -> None:
    table = pa.table({"event_timestamp": pa.array(stamps, TS)})
    delta_io.write(paths.table("raw_impressions"), table, mode="overwrite")


def test_feature_drift_compares_a_snapshot_with_the_day_before(feed_paths: FeedPaths) -> None:
    _write_engagement(feed_paths, previous=[1] * 200 + [2] * 200, current=[1] * 100 + [2] * 300)
    result = drift.feature_drift(feed_paths, "post_engagement", "views_7d", S, DriftConfig(min_rows=300))
    assert result.psi == pytest.approx(HALF_TO_QUARTER, abs=1e-6)
    assert (result.rows, result.reference_rows) == (400, 400)
    assert result.gated
    assert not result.passed  # 0.275 > the default 0.25
    lenient = DriftConfig(psi_threshold=0.3)
    assert drift.feature_drift(feed_paths, "post_engagement", "views_7d", S, lenient).passed


def test_small_snapshots_are_reported_not_gated(feed_paths: FeedPaths) -> None:
    _write_engagement(feed_paths, previous=[1] * 10, current=[5] * 10)  # a total shift, but 10 rows
    result = drift.feature_drift(feed_paths, "post_engagement", "views_7d", S, DriftConfig(min_rows=300))
    assert result.psi > 1
    assert not result.gated
    assert result.passed


def test_no_previous_snapshot_means_no_psi(feed_paths: FeedPaths) -> None:
    _write_engagement(feed_paths, previous=[], current=[1, 2, 3])
    result = drift.feature_drift(feed_paths, "post_engagement", "views_7d", S, DriftConfig())
    assert result.psi is None
    assert result.passed


def test_freshness_is_the_age_of_the_newest_impression_before_the_snapshot(feed_paths: FeedPaths) -> None:
    day_before = S - dt.timedelta(days=1)
    # the impression at S itself belongs to the next snapshot and must not count
    _write_impressions(feed_paths, [_at(day_before, 6), _at(day_before, 18), _at(S, 3)])
    fresh = drift.freshness(feed_paths, S, DriftConfig(max_staleness=dt.timedelta(hours=12)))
    assert fresh.staleness_hours == 6.0
    assert fresh.passed
    stale = drift.freshness(feed_paths, S + dt.timedelta(days=2), DriftConfig())
    assert stale.staleness_hours == 24 * 2 - 3
    assert not stale.passed


def test_check_lists_every_failure_and_the_report_is_json(feed_paths: FeedPaths) -> None:
    _write_engagement(feed_paths, previous=[1] * 400, current=[9] * 400)
    _write_impressions(feed_paths, [_at(S - dt.timedelta(days=3))])
    config = DriftConfig(features=(("post_engagement", "views_7d"),))
    report = drift.check(feed_paths, [S], config)
    assert not report.passed
    assert len(report.failures) == 2
    assert "raw data is stale" in report.failures[0]
    assert "post_engagement.views_7d PSI" in report.failures[1]
    path = drift.write_report(report, feed_paths.data / "quality" / "drift" / f"{S}.json")
    doc = json.loads(path.read_text())
    assert doc["passed"] is False
    assert doc["features"][0]["psi"] > config.psi_threshold
    assert doc["config"]["max_staleness"] == 86_400


def test_a_requested_end_beyond_the_build_is_checked_for_freshness(feed_paths: FeedPaths) -> None:
    # the data's span cut the build at S; the interval asked for S + 3: those days would be stale
    _write_engagement(feed_paths, previous=[1] * 10, current=[1] * 10)
    _write_impressions(feed_paths, [_at(S - dt.timedelta(days=1), 20)])
    config = DriftConfig(features=(("post_engagement", "views_7d"),))
    report = drift.check(feed_paths, [S], config, requested_end=S + dt.timedelta(days=3))
    assert [f.snapshot for f in report.freshness] == [str(S), str(S + dt.timedelta(days=3))]
    assert [f.passed for f in report.freshness] == [True, False]
    assert not report.passed
