"""feed_retrieval_training's structure, as dags/README.md describes it (no data, no metadata DB: fast)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from feed.flows import FEATURES_PUBLISHED, RETRIEVAL_PROMOTED
from feed.orchestration import DAGS_DIR

DAG_ID = "feed_retrieval_training"
CHAIN = (
    "build_training_set",
    "train_encoder",
    "evaluate",
    "quality_gate",
    "promote",
    "embed",
    "backfill_index",
    "push_embeddings",
)


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_tasks_and_dependencies_are_the_documented_chain(dag: Any) -> None:
    assert set(dag.task_ids) == set(CHAIN)
    upstream = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    for before, after in itertools.pairwise(CHAIN):
        assert before in upstream[after], f"{before} must run before {after}"
    assert upstream["build_training_set"] == set()
    assert upstream["evaluate"] == {"build_training_set", "train_encoder"}  # the set's path + the candidate
    assert upstream["promote"] == {"quality_gate"}  # nothing is promoted without the gate


def test_schedule_is_weekly_or_features_published(dag: Any) -> None:
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    timetable = dag.timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert isinstance(timetable.timetable, CronTriggerTimetable)
    assert timetable.timetable.expression == "0 4 * * 1"  # Mondays 04:00
    assert str(timetable.timetable.timezone) == "UTC"
    assets = getattr(timetable.asset_condition, "objects", (timetable.asset_condition,))
    assert [a.uri for a in assets] == [FEATURES_PUBLISHED]
    assert dag.catchup is False
    assert "feed" in dag.tags


def test_only_the_last_task_announces_the_new_model(dag: Any) -> None:
    outlets = {t.task_id: [a.uri for a in t.outlets] for t in dag.tasks}
    assert outlets.pop("push_embeddings") == [RETRIEVAL_PROMOTED]
    assert all(not uris for uris in outlets.values())


def test_tasks_retry_with_backoff(dag: Any) -> None:
    for t in dag.tasks:
        assert t.retries == 2
        assert t.retry_exponential_backoff
