"""feed_features' task bodies (feed.flows.features) and full ``airflow dags test`` runs on ``tiny`` data.

The DAG runs start from a copy of ``tiny_feature_home`` (every snapshot already built and Feast applied, as
after earlier daily runs) plus the landing batch its lake was ingested from, and rebuild one snapshot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from feed.config import FEATURE_TABLES, RAW_TABLES, FeedPaths, FeedSettings
from feed.flows import FEATURES_PUBLISHED, features
from feed.flows.features import StaleDataError, backfill_start, interval_days, plan_snapshots
from feed.orchestration import DagTestResult, airflow_env, dags_test
from pipelines import delta_io
from pipelines.features.snapshots import midnight
from pipelines.schemas import FEATURE_KEYS, RAW_KEYS

DAG_ID = "feed_features"
# `airflow dags test` for D is a manual run with interval [D − 1, D): it builds snapshot D. Inside the tiny
# data (snapshots 2026-09-02..29) and past its first week, while the 7-day windows are still filling up.
DAY = dt.date(2026, 9, 19)


def _utc(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


# --- interval → snapshots (no data)

FIRST = _utc(dt.date(2026, 9, 1), 0) + dt.timedelta(minutes=3)  # first impression → origin 2026-09-02
LAST = _utc(dt.date(2026, 9, 28), 23)  # last impression → last snapshot 2026-09-29


def test_a_daily_interval_is_the_snapshot_at_its_end() -> None:
    start = _utc(dt.date(2026, 9, 18))
    assert interval_days(start, start + dt.timedelta(days=1)) == (DAY, DAY)
    # a trigger timetable's zero-length interval: the midnight at (or before) it
    assert interval_days(_utc(DAY), _utc(DAY)) == (DAY, DAY)
    assert interval_days(_utc(DAY, 5), _utc(DAY, 5)) == (DAY, DAY)
    # a three-day catch-up: the three midnights after its start
    assert interval_days(start, start + dt.timedelta(days=3)) == (DAY, DAY + dt.timedelta(days=2))


def test_intervals_without_a_midnight_or_a_time_zone_are_refused() -> None:
    with pytest.raises(ValueError, match="no UTC midnight"):
        interval_days(_utc(DAY, 1), _utc(DAY, 5))
    with pytest.raises(ValueError, match="time zone"):
        interval_days(dt.datetime(2026, 9, 18), dt.datetime(2026, 9, 19))


def test_plan_inside_the_data_is_the_interval() -> None:
    plan = plan_snapshots(_utc(DAY - dt.timedelta(days=1)), _utc(DAY), FIRST, LAST)
    assert plan.snapshots is not None
    assert (plan.snapshots.start, plan.snapshots.end) == (DAY, DAY)
    assert plan.snapshots.full is False  # replaces only its own snapshots
    assert plan.snapshots.origin == dt.date(2026, 9, 2)


def test_a_backfill_builds_the_snapshot_of_its_first_day() -> None:
    """backfill_from = the data's first snapshot must build that snapshot: it is where every member created
    before the data gets a profile row (skipping it left most members without a profile online)."""
    run_start = dt.datetime(2026, 9, 28, tzinfo=dt.UTC)
    start = backfill_start(run_start, dt.date(2026, 9, 2))
    first, last = interval_days(start, run_start + dt.timedelta(days=1))
    assert (first, last) == (dt.date(2026, 9, 2), dt.date(2026, 9, 29))
    assert backfill_start(run_start, dt.date(2026, 9, 29)) == run_start  # never later than the interval


def test_plan_is_clipped_to_the_data() -> None:
    plan = plan_snapshots(_utc(dt.date(2026, 8, 30)), _utc(dt.date(2026, 9, 4)), FIRST, LAST)
    assert plan.snapshots is not None
    assert (plan.snapshots.start, plan.snapshots.end) == (dt.date(2026, 9, 2), dt.date(2026, 9, 4))
    plan = plan_snapshots(_utc(dt.date(2026, 9, 27)), _utc(dt.date(2026, 10, 2)), FIRST, LAST)
    assert plan.snapshots is not None
    assert plan.snapshots.end == dt.date(2026, 9, 29)
    assert plan.requested[1] == dt.date(2026, 10, 2)  # the freshness check then fails the run


def test_an_interval_before_the_data_builds_nothing_and_one_after_it_fails() -> None:
    plan = plan_snapshots(_utc(dt.date(2026, 8, 1)), _utc(dt.date(2026, 8, 2)), FIRST, LAST)
    assert plan.snapshots is None
    assert "before the data's first snapshot 2026-09-02" in plan.reason
    with pytest.raises(StaleDataError, match="after the data's last snapshot 2026-09-29"):
        plan_snapshots(_utc(dt.date(2026, 10, 5)), _utc(dt.date(2026, 10, 6)), FIRST, LAST)


# --- ingest (files only, no Spark)


def _raw_home(tmp_path: Path, tiny_raw_lake: FeedPaths) -> FeedSettings:
    home = tmp_path / "home"
    shutil.copytree(tiny_raw_lake.lake, home / "data" / "lake")
    shutil.copytree(tiny_raw_lake.landing, home / "data" / "landing")
    return FeedSettings(home=home)


def _raw_counts(paths: FeedPaths) -> dict[str, int]:
    return {t: delta_io.dataset(paths.table(t)).count_rows() for t in RAW_TABLES}


def test_ingest_adopts_what_the_lake_holds_and_ingests_a_new_batch_once(
    tmp_path: Path, tiny_raw_lake: FeedPaths
) -> None:
    from pipelines.ingest import write_landing

    settings = _raw_home(tmp_path, tiny_raw_lake)
    paths = settings.paths()
    before = _raw_counts(paths)
    first = features.ingest_new_data(settings)
    assert first["adopted"] == ["synth-tiny-0"]  # the batch the lake was built from: not ingested twice
    assert first["ingested"] == {}
    assert _raw_counts(paths) == before

    members = delta_io.read(paths.table("raw_members"))
    newcomer = members.slice(0, 1).set_column(
        0, "member_id", pa.array([pc.max(members["member_id"]).as_py() + 1], pa.int64())
    )
    write_landing(paths.landing / "batch-0001", {"raw_members": newcomer})
    second = features.ingest_new_data(settings)
    assert second["ingested"] == {"batch-0001": {"raw_members": 1}}
    third = features.ingest_new_data(settings)
    assert third["ingested"] == {}
    assert third["adopted"] == []
    assert _raw_counts(paths) == {**before, "raw_members": before["raw_members"] + 1}
    ledger = json.loads((paths.lake / features.LEDGER).read_text())
    assert set(ledger) == {"synth-tiny-0", "batch-0001"}


def test_ingest_generates_the_synthetic_set_into_an_empty_home(tmp_path: Path) -> None:
    settings = FeedSettings(home=tmp_path)
    first = features.ingest_new_data(settings, scale="tiny", seed=0)
    assert first["generated"] == {"batch": "synth-tiny-0", "scale": "tiny", "seed": "0"}
    assert set(first["ingested"]["synth-tiny-0"]) >= set(RAW_TABLES)
    counts = _raw_counts(settings.paths())
    again = features.ingest_new_data(settings, scale="tiny", seed=0)
    assert again["generated"] == {}
    assert again["ingested"] == {}
    assert _raw_counts(settings.paths()) == counts


def test_build_skips_an_interval_before_the_data_and_fails_one_after_it(tiny_raw_lake: FeedPaths) -> None:
    settings = FeedSettings(home=tiny_raw_lake.home)  # neither case writes anything
    early = features.build(settings, _utc(dt.date(2026, 7, 1)), _utc(dt.date(2026, 7, 2)))
    assert "nothing to build" in early["skipped"]
    with pytest.raises(StaleDataError, match="Land the new raw data"):
        features.build(settings, _utc(dt.date(2026, 11, 1)), _utc(dt.date(2026, 11, 2)))


# --- full DAG runs on tiny data


def _dag_home(root: Path, tiny_feature_home: FeedPaths, tiny_raw_lake: FeedPaths) -> FeedPaths:
    paths = FeedPaths(home=root)
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    shutil.copytree(tiny_feature_home.feast, paths.feast)
    shutil.copytree(tiny_raw_lake.landing, paths.landing)
    return paths


@dataclass(frozen=True)
class TableState:
    rows: int
    digest: str  # every column but `created` (the build's wall-clock stamp), rows in key order
    duplicate_keys: int


def _table_state(paths: FeedPaths, name: str) -> TableState:
    data = delta_io.read(paths.table(name))
    keys = [FEATURE_KEYS[name], "event_timestamp"]
    data = data.sort_by([(k, "ascending") for k in keys])
    content = data.select([c for c in data.column_names if c != "created"]).to_pylist()
    digest = hashlib.sha256(json.dumps(content, default=str).encode()).hexdigest()
    frame = data.select(keys).to_pandas()
    return TableState(data.num_rows, digest, int(frame.duplicated().sum()))


def _state(paths: FeedPaths) -> dict[str, object]:
    state: dict[str, object] = {t: _table_state(paths, t) for t in FEATURE_TABLES}
    for name in RAW_TABLES:  # raw tables: same Delta version and rows ⇒ nothing was ingested again
        frame = delta_io.read(paths.table(name), columns=list(RAW_KEYS[name])).to_pandas()
        state[name] = (delta_io.version(paths.table(name)), len(frame), int(frame.duplicated().sum()))
    return state


def _airflow_db(paths: FeedPaths) -> sqlite3.Connection:
    url = airflow_env(paths)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert url.startswith("sqlite:///"), "these tests read the embedded SQLite metadata DB"
    return sqlite3.connect(url.removeprefix("sqlite:///"))


def _asset_events(paths: FeedPaths) -> list[str]:
    with _airflow_db(paths) as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ?",
            (FEATURES_PUBLISHED,),
        ).fetchall()
    return [r[0] for r in rows]


def _task_states(paths: FeedPaths) -> dict[str, str]:
    with _airflow_db(paths) as db:
        rows = db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)).fetchall()
    return dict(rows)


def _files_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass(frozen=True)
class Run:
    paths: FeedPaths
    result: DagTestResult
    state: dict[str, object]


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_feature_home: FeedPaths, tiny_raw_lake: FeedPaths
) -> Run:
    paths = _dag_home(tmp_path_factory.mktemp("feed_features_dag"), tiny_feature_home, tiny_raw_lake)
    result = dags_test(paths, DAG_ID, DAY)
    return Run(paths, result, _state(paths))


@pytest.fixture(scope="module")
def second_run(first_run: Run) -> Run:
    result = dags_test(first_run.paths, DAG_ID, DAY)
    return Run(first_run.paths, result, _state(first_run.paths))


@pytest.mark.integration
@pytest.mark.slow
def test_a_daily_run_publishes_features_and_fills_the_online_store(first_run: Run) -> None:
    from pipelines import feature_store

    paths = first_run.paths
    assert first_run.result.state == "success"
    assert set(_task_states(paths).values()) == {"success"}
    # the online store serves snapshot DAY: pick posts whose views changed since the day before
    engagement = delta_io.read(
        paths.table("post_engagement"), columns=["post_id", "views", "event_timestamp"]
    )
    at = {
        day: dict(
            zip(
                *[
                    engagement.filter(pc.field("event_timestamp") == midnight(day)).column(c).to_pylist()
                    for c in ("post_id", "views")
                ],
                strict=True,
            )
        )
        for day in (DAY, DAY - dt.timedelta(days=1))
    }
    changed = sorted(p for p, v in at[DAY].items() if at[DAY - dt.timedelta(days=1)].get(p) != v)[:20]
    assert changed
    online = feature_store.online_features(
        paths, ["post_engagement:views"], [{"post_id": p} for p in changed]
    )
    assert online["post_engagement__views"] == [at[DAY][p] for p in changed]
    # the drift report of the run, and the asset event carrying the published versions
    report = json.loads(features.drift_report_path(paths, {"start": str(DAY), "end": str(DAY)}).read_text())
    assert report["passed"] is True
    assert report["snapshots"] == [str(DAY)]
    events = [json.loads(e) for e in _asset_events(paths)]
    assert len(events) == 1
    assert set(events[0]["versions"]) == set(FEATURE_TABLES)
    for table, version in events[0]["versions"].items():
        assert delta_io.version(paths.table(table)) == version


@pytest.mark.integration
@pytest.mark.slow
def test_the_same_interval_twice_leaves_identical_tables(first_run: Run, second_run: Run) -> None:
    assert second_run.result.state == "success"
    assert second_run.state == first_run.state
    for name in FEATURE_TABLES:
        state = second_run.state[name]
        assert isinstance(state, TableState)
        assert state.duplicate_keys == 0, name
    for name in RAW_TABLES:
        assert second_run.state[name][2] == 0, name  # type: ignore[index]
    assert len(_asset_events(second_run.paths)) == 2  # each successful run announces its publish


def _land_post_flood(paths: FeedPaths, day: dt.date) -> int:
    """A raw batch that passes ingest (valid posts of existing authors) but triples the post_engagement cohort
    of snapshot ``day``: the gate's row-count check must refuse the fan-out."""
    from pipelines.ingest import write_landing

    posts = delta_io.read(paths.table("raw_posts"))
    created = pc.field("created_at")
    cohort = posts.filter(
        (created >= midnight(day - dt.timedelta(days=28))) & (created < midnight(day))
    ).num_rows
    n = 3 * cohort
    flood = posts.take(pa.array(np.arange(n) % posts.num_rows))
    first_id = pc.max(posts["post_id"]).as_py() + 1
    flood = flood.set_column(0, "post_id", pa.array(np.arange(first_id, first_id + n), pa.int64()))
    noon = midnight(day - dt.timedelta(days=1)) + dt.timedelta(hours=12)
    at = flood.schema.get_field_index("created_at")
    flood = flood.set_column(at, "created_at", pa.array([noon] * n, flood.schema.field(at).type))
    write_landing(paths.landing / "flood-0001", {"raw_posts": flood})
    return n


@pytest.mark.integration
@pytest.mark.slow
def test_a_refused_gate_fails_the_run_before_feast_is_touched(
    tmp_path_factory: pytest.TempPathFactory, tiny_feature_home: FeedPaths, tiny_raw_lake: FeedPaths
) -> None:
    from pipelines.quality.gate import list_quarantined

    paths = _dag_home(tmp_path_factory.mktemp("feed_features_gx"), tiny_feature_home, tiny_raw_lake)
    _land_post_flood(paths, DAY)
    feast_before = _files_digest(paths.feast)
    engagement_before = delta_io.version(paths.table("post_engagement"))

    result = dags_test(paths, DAG_ID, DAY, check=False)

    assert result.state == "failed"
    log = result.log.read_text()
    assert "quality gate refused" in log
    states = _task_states(paths)
    assert states["ingest_raw"] == "success"  # the flood is valid raw data ...
    assert states["build_features"] == "failed"  # ... that the feature gate refuses
    assert {states[t] for t in ("check_drift", "publish_features", "materialize")} == {"upstream_failed"}
    assert "post_engagement" in {q.table for q in list_quarantined(paths)}
    assert delta_io.version(paths.table("post_engagement")) == engagement_before
    # Feast untouched: registry and online store byte for byte; no asset event, no drift report
    assert _files_digest(paths.feast) == feast_before
    assert _asset_events(paths) == []
    assert not features.drift_report_path(paths, {"start": str(DAY), "end": str(DAY)}).exists()


@pytest.mark.integration
def test_drift_past_the_threshold_fails_loudly_with_a_report(
    tmp_path: Path, tiny_feature_home: FeedPaths
) -> None:
    from pipelines.quality.drift import DriftConfig, DriftError

    settings = FeedSettings(home=tmp_path)
    paths = settings.paths()
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    built = {
        "snapshots": {"start": str(DAY), "end": str(DAY)},
        "requested": {"start": str(DAY), "end": str(DAY)},
    }
    config = DriftConfig()
    features.check_drift(settings, built, config)  # the data as built passes

    # a pipeline fault that inflates one day's 7-day views tenfold
    table = paths.table("post_engagement")
    day = delta_io.read(table, filter=pc.field("event_timestamp") == midnight(DAY))
    column = day.schema.get_field_index("views_7d")
    day = day.set_column(column, "views_7d", pc.multiply(day["views_7d"], 10))
    delta_io.write(
        table, day, mode="overwrite", predicate=f"event_timestamp = '{midnight(DAY):%Y-%m-%dT%H:%M:%SZ}'"
    )

    expected = rf"post_engagement\.views_7d PSI \d+\.\d+ > {config.psi_threshold}"
    with pytest.raises(DriftError, match=expected) as failure:
        features.check_drift(settings, built, config)
    report_path = features.drift_report_path(paths, built["snapshots"])
    assert str(report_path) in str(failure.value)
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    flagged = [f for f in report["features"] if not f["passed"]]
    assert [(f["table"], f["feature"]) for f in flagged] == [("post_engagement", "views_7d")]
