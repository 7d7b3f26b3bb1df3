"""feed_ranking_training's structure, as dags/README.md documents it: parses with no import errors, weekly,
build → train → evaluate → gate → promote, and only promote emits the ranking asset. No data, no DB."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from feed.orchestration import DAGS_DIR

DAG_ID = "feed_ranking_training"
TASKS = ("build_ranking_set", "train_ranker", "evaluate", "gate", "promote")
UPSTREAM = {
    "build_ranking_set": set(),
    "train_ranker": {"build_ranking_set"},
    "evaluate": {"build_ranking_set", "train_ranker"},
    "gate": {"build_ranking_set", "train_ranker", "evaluate"},
    "promote": {"train_ranker", "gate"},
}


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_task_graph_is_what_the_readme_says(dag: Any) -> None:
    assert set(dag.task_ids) == set(TASKS)
    for task_id, upstream in UPSTREAM.items():
        assert dag.get_task(task_id).upstream_task_ids == upstream, task_id
    assert dag.get_task("promote").downstream_task_ids == set()


def test_weekly_on_monday_with_a_week_long_data_interval(dag: Any) -> None:
    from airflow.sdk import CronTriggerTimetable

    timetable = dag.timetable
    assert isinstance(timetable, CronTriggerTimetable)
    assert timetable.expression == "0 5 * * 1"  # Mondays 05:00
    assert str(timetable.timezone) == "UTC"
    assert timetable.interval == dt.timedelta(weeks=1)
    assert dag.catchup is False
    assert "feed" in dag.tags


def test_only_promote_emits_the_ranking_asset(dag: Any) -> None:
    from feed.flows import RANKING_PROMOTED

    for task_id in TASKS:
        uris = {getattr(o, "uri", None) for o in dag.get_task(task_id).outlets}
        assert (RANKING_PROMOTED in uris) == (task_id == "promote"), task_id


def test_retries_with_backoff(dag: Any) -> None:
    task = dag.get_task("train_ranker")
    assert task.retries == 2
    assert task.retry_exponential_backoff


def test_version_is_named_after_the_interval() -> None:
    from feed.flows.ranking import version_for

    end = dt.datetime(2026, 9, 28, 5, tzinfo=dt.UTC)
    assert version_for(end) == "g20260928"
    assert version_for(end.astimezone(dt.timezone(dt.timedelta(hours=-8)))) == "g20260928"
