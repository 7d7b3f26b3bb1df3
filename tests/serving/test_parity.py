"""``feed parity``: value comparison rules (unit), and runs on a real Feast home (SQLite online, DuckDB
offline) built from the fabricated feature tables: no skew after materialization, a planted online value is
named, a TTL-expired row is online-only at a late time."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from feed.commands import parity as parity_cmds
from feed.config import FeedPaths
from serving import parity

UTC = dt.UTC
T0 = dt.datetime(2026, 9, 29, tzinfo=UTC)


# --- comparison rules (no Feast) ----------------------------------------------------------------------------


def test_normalize_makes_both_sides_alike() -> None:
    assert parity.normalize(np.array([1.5, np.nan], dtype=np.float32)) == [1.5, None]
    assert parity.normalize(np.int64(3)) == 3
    assert parity.normalize(float("nan")) is None
    assert parity.normalize(pd.NaT) is None
    assert parity.normalize(pd.NA) is None
    naive = dt.datetime(2026, 9, 29, 12)
    assert parity.normalize(naive) == naive.replace(tzinfo=UTC)
    plus2 = dt.datetime(2026, 9, 29, 14, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert parity.normalize(plus2) == dt.datetime(2026, 9, 29, 12, tzinfo=UTC)
    assert parity.normalize(pd.Timestamp("2026-09-29 12:00", tz="UTC")) == dt.datetime(
        2026, 9, 29, 12, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("online", "offline", "outcome"),
    [
        (None, None, parity.BOTH_NULL),
        (3, None, parity.ONLINE_ONLY),
        (None, 3, parity.OFFLINE_ONLY),
        (3, 3.0, parity.EQUAL),  # offline int columns with nulls come back as float
        (0.1, 0.1 + 1e-9, parity.EQUAL),
        (1_790_553_600, 1_790_553_601, parity.MISMATCH),  # ints exactly (epoch seconds in member_sequence)
        (1_790_553_600, 1_790_553_600.0, parity.EQUAL),
        (0.1, 0.1001, parity.MISMATCH),
        ([0.125, 0.5], [0.125, 0.5 + 1e-9], parity.EQUAL),
        ([0.125, 0.5], [0.125, 0.75], parity.MISMATCH),
        ([1, 2], [1, 2, 3], parity.MISMATCH),
        ([], [], parity.EQUAL),
        (["a", None], ["a", None], parity.EQUAL),
        ("ai", "data", parity.MISMATCH),
        (True, 1.0, parity.MISMATCH),
        # Feast keeps UnixTimestamp features as whole seconds online: equal at the default 1 s resolution
        (T0, T0 + dt.timedelta(microseconds=572_332), parity.EQUAL),
        (T0, T0 + dt.timedelta(seconds=1), parity.MISMATCH),
        (T0.timestamp(), T0, parity.EQUAL),
    ],
)
def test_classify(online: Any, offline: Any, outcome: str) -> None:
    assert parity.classify(online, offline) == outcome


def test_timestamps_can_be_compared_exactly() -> None:
    late = T0 + dt.timedelta(microseconds=5)
    assert parity.classify(T0, late, resolution_s=0) == parity.MISMATCH
    assert parity.classify(T0, T0, resolution_s=0) == parity.EQUAL


def test_reasons_come_from_the_online_timestamp() -> None:
    at, ttl = T0, dt.timedelta(days=2)
    s = int(at.timestamp())
    assert parity.reason(parity.EQUAL, s, at, ttl) is None
    assert parity.reason(parity.OFFLINE_ONLY, 0, at, ttl) == "not_in_online_store"
    assert parity.reason(parity.OFFLINE_ONLY, s, at, ttl) == "online_value_null"
    assert parity.reason(parity.ONLINE_ONLY, s - 3 * 86400, at, ttl) == "ttl_expired"
    assert parity.reason(parity.ONLINE_ONLY, s + 60, at, ttl) == "online_newer_than_at"
    assert parity.reason(parity.ONLINE_ONLY, s - 60, at, ttl) == "offline_missing"
    assert parity.reason(parity.MISMATCH, s + 60, at, ttl) == "online_newer_than_at"
    assert parity.reason(parity.MISMATCH, s, at, ttl) == "value_differs"


def test_sampling_is_seeded_and_bounded() -> None:
    pool = range(1000)

    def draw(seed: int, n: int = 10) -> list[int]:
        return parity.sample_ids(pool, n, np.random.default_rng([seed, 0]))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    assert len(set(draw(7))) == 10
    assert draw(7) == sorted(draw(7))
    assert parity.sample_ids([3, 1, 3, 2], 10, np.random.default_rng(0)) == [1, 2, 3]  # all when fewer


def test_examples_are_spread_over_features() -> None:
    per_column = {"a": [{"i": i, "c": "a"} for i in range(30)], "b": [{"i": 0, "c": "b"}]}
    picked = parity.spread(per_column, 5)
    assert len(picked) == 5
    assert {"i": 0, "c": "b"} in picked
    assert parity.show(list(range(20)), [*range(10), 99, *range(11, 20)])["first_difference"]["index"] == 10


def test_t_defaults_to_the_newest_materialization() -> None:
    until = {"a": T0, "b": T0 - dt.timedelta(days=1), "c": None}
    assert parity.resolve_at(parity.ParityConfig(), until) == (T0, "materialization")
    given = T0 + dt.timedelta(days=3)
    assert parity.resolve_at(parity.ParityConfig(at=given), until) == (given, "given")
    with pytest.raises(parity.ParityError, match="materialization interval"):
        parity.resolve_at(parity.ParityConfig(), {"a": None})
    with pytest.raises(parity.ParityError, match="time zone"):
        parity.ParityConfig(at=dt.datetime(2026, 9, 29))


def test_at_option_parses_iso_and_now() -> None:
    assert parity_cmds.parse_at("2026-09-29T00:00:00") == T0
    assert parity_cmds.parse_at("2026-09-29T02:00:00+02:00") == T0
    now = parity_cmds.parse_at("now")
    assert now is not None
    assert abs((now - dt.datetime.now(UTC)).total_seconds()) < 5
    assert parity_cmds.parse_at(None) is None
    with pytest.raises(typer.BadParameter, match="ISO-8601"):
        parity_cmds.parse_at("yesterday")


# --- a real Feast home -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Home:
    paths: FeedPaths
    fab: Any  # fabricate.Fabricated
    end: dt.datetime  # materialized up to here


@pytest.fixture(scope="module")
def parity_home(tmp_path_factory: pytest.TempPathFactory, fabricate: ModuleType) -> Home:
    """Fabricated feature tables (3 members, 4 posts, two snapshots), applied and materialized on the
    embedded default (SQLite online, DuckDB offline). Read-only: a test that writes copies it."""
    from pipelines import feature_store

    paths = FeedPaths(home=tmp_path_factory.mktemp("parity_home"))
    fab = fabricate.write_feature_tables(paths)
    end = fab.t + dt.timedelta(minutes=30)
    feature_store.apply(paths)
    feature_store.materialize_incremental(paths, end)
    return Home(paths=paths, fab=fab, end=end)


def _app() -> typer.Typer:
    """The real root callback (--home → settings) with the parity command, as feed/cli.py registers it."""
    from feed.cli import _root

    app = typer.Typer()
    app.callback()(_root)
    app.command("parity")(parity_cmds.parity)
    return app


def _run_cli(home: Path, reports: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Exit code, written report and output of ``feed --home HOME parity --reports-dir REPORTS ...``."""
    result = CliRunner().invoke(
        _app(), ["--home", str(home), "parity", "--reports-dir", str(reports), *args], catch_exceptions=False
    )
    return result.exit_code, json.loads((reports / "parity.json").read_text()), result.output


@pytest.mark.integration
def test_materialized_store_has_no_skew(parity_home: Home, tmp_path: Path) -> None:
    from pipelines import feature_store

    fab = parity_home.fab
    code, report, output = _run_cli(parity_home.paths.home, tmp_path, "--fail-on-mismatch")
    assert code == 0, output
    s = report["summary"]
    assert s["at"] == parity_home.end.isoformat()
    assert s["at_source"] == "materialization"
    assert (s["members"], s["posts"], s["authors"]) == (3, 4, 3)  # every fabricated entity (fewer than asked)
    assert s["mismatches"] == s["online_only"] == s["offline_only"] == 0
    assert s["mismatch_rate"] == 0.0
    assert s["equal"] == s["features_compared"] > 100
    registered = {v.name for v in feature_store.applied_store(parity_home.paths).list_feature_views()}
    assert set(s["per_view"]) == registered  # every view (member_sequence too, where the repo defines it)
    assert {
        "member_profile",
        "member_embedding",
        "post_content",
        "author_stats",
        "post_embedding",
    } <= registered
    assert all(v["equal"] > 0 for v in s["per_view"].values()), s["per_view"]
    assert s["per_view"]["author_stats"]["entity"] == "author_id"
    assert report["examples"] == []
    for key in ("config", "device", "git_commit", "created_at"):
        assert key in report
    assert report["config"]["materialized_until"]["post_engagement"] == parity_home.end.isoformat()
    assert report["details"]["entities"]["post_id"] == list(fab.posts)
    assert "ranking_v1" in report["details"]["per_feature"]["post_engagement__views_7d"]["read_by"]
    md = (tmp_path / "parity.md").read_text()
    assert "| post_engagement | post_id |" in md


@pytest.mark.integration
def test_planted_online_value_is_detected_and_named(parity_home: Home, tmp_path: Path) -> None:
    """Overwrite author 2's followers in the online store only: one mismatch, named with both values."""
    from pipelines import delta_io, feature_store

    home = FeedPaths(home=tmp_path / "home")
    shutil.copytree(parity_home.paths.home, home.home)
    row = delta_io.read(home.table("author_stats")).to_pandas()
    row = row[(row["author_id"] == 2) & (row["event_timestamp"] == parity_home.fab.s2)].copy()
    assert len(row) == 1
    offline_value = int(row["followers"].iloc[0])
    row["followers"] = offline_value + 1000
    feature_store.store(home).write_to_online_store("author_stats", row)

    code, report, output = _run_cli(home.home, tmp_path / "reports", "--fail-on-mismatch")
    assert code == 1, output
    assert "1 online/offline mismatches" in output
    s = report["summary"]
    assert s["mismatches"] == 1
    assert s["per_view"]["author_stats"]["mismatches"] == 1
    assert s["per_view"]["author_stats"]["reasons"] == {"mismatch:value_differs": 1}
    assert s["mismatch_rate"] == pytest.approx(1 / s["features_compared"], abs=1e-6)
    (example,) = report["examples"]
    assert example["view"] == "author_stats"
    assert example["feature"] == "followers"
    assert example["entity"] == {"author_id": 2}
    assert (example["online"], example["offline"]) == (offline_value + 1000, offline_value)
    assert "author_stats | followers | author_id=2" in (tmp_path / "reports" / "parity.md").read_text()
    # without the flag the same skew is reported but does not fail the command
    code, _, output = _run_cli(home.home, tmp_path / "reports")
    assert code == 0, output


@pytest.mark.integration
def test_ttl_expired_row_is_online_only_at_a_late_time(parity_home: Home) -> None:
    """3 days after the last snapshot post_engagement (ttl 2 days) has expired offline while the online store
    still serves it; author_stats (7 days) and member_history (30 days) still agree."""
    late = parity_home.fab.s2 + dt.timedelta(days=3)
    result = parity.run_parity(parity_home.paths, parity.ParityConfig(at=late, seed=1))
    assert result.at == late
    assert result.at_source == "given"
    engagement = result.per_view["post_engagement"]
    assert engagement.online_only == engagement.compared == 4 * 20
    assert dict(engagement.reasons) == {"online_only:ttl_expired": 80}
    assert result.per_view["author_stats"].equal == result.per_view["author_stats"].compared > 0
    assert result.per_view["member_history"].equal == result.per_view["member_history"].compared > 0
    assert result.mismatches == 0
    others = {(e["view"], e["reason"]) for e in result.other_examples}
    assert ("post_engagement", "ttl_expired") in others


@pytest.mark.integration
def test_a_home_without_a_registry_is_refused_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["--home", str(tmp_path), "parity", "--reports-dir", str(tmp_path / "reports")]
    )
    assert result.exit_code == 1
    assert "run `feed features apply" in result.output
    assert not (tmp_path / "reports" / "parity.json").exists()
