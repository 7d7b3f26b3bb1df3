"""feed_features' structure, as dags/README.md describes it (no data, no metadata DB: fast)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from feed.flows import FEATURES_PUBLISHED
from feed.orchestration import DAGS_DIR

DAG_ID = "feed_features"


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    # The whole folder, as the DAG processor parses it. Airflow 3's DagBag never loads the example DAGs (they
    # are a bundle of their own), so it has no include_examples any more; airflow.models.dagbag still takes
    # it but warns that it is deprecated (an error under our filterwarnings).
    bag = DagBag(dag_folder=str(DAGS_DIR))
    errors = {path: error for path, error in bag.import_errors.items() if path.endswith(f"{DAG_ID}.py")}
    assert errors == {}
    return bag.dags[DAG_ID]


def _documented_edges() -> set[tuple[str, str]]:
    """Edges of the ``a >> b >> c`` lines in the README's feed_features section."""
    readme = (DAGS_DIR / "README.md").read_text()
    section = readme.split(f"## {DAG_ID}\n", 1)[1].split("\n## ", 1)[0]
    edges = set()
    for line in section.splitlines():
        if re.fullmatch(r"\w+( >> \w+)+", line.strip()):
            names = line.strip().split(" >> ")
            edges |= set(itertools.pairwise(names))
    return edges


def test_tasks_and_dependencies_are_what_the_readme_says(dag: Any) -> None:
    documented = _documented_edges()
    assert documented, "dags/README.md has no task graph for feed_features"
    actual = {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}
    assert actual == documented
    assert set(dag.task_ids) == {name for edge in documented for name in edge}


def test_feast_only_after_the_gate_and_the_drift_check(dag: Any) -> None:
    materialize = dag.get_task("materialize")
    assert {"build_features", "check_drift", "publish_features"} <= materialize.get_flat_relative_ids(
        upstream=True
    )
    assert dag.get_task("build_features").upstream_task_ids == {"ingest_raw"}


def test_schedule_is_daily_with_a_data_interval(dag: Any) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    timetable = dag.timetable
    # a data-interval timetable: the run for D covers [D, D+1) (a trigger timetable's interval is empty)
    assert isinstance(timetable, CronDataIntervalTimetable)
    assert timetable.expression == "0 0 * * *"  # daily, midnight
    assert str(timetable.timezone) == "UTC"
    assert dag.catchup is False
    assert "feed" in dag.tags


def test_publish_announces_the_features_and_nothing_else_does(dag: Any) -> None:
    outlets = {t.task_id: [a.uri for a in t.outlets] for t in dag.tasks}
    assert outlets.pop("publish_features") == [FEATURES_PUBLISHED]
    assert all(not uris for uris in outlets.values())


def test_tasks_retry_with_backoff(dag: Any) -> None:
    for t in dag.tasks:
        assert t.retries == 2
        assert t.retry_exponential_backoff


def test_synthetic_default_is_tiny_seed_0(dag: Any) -> None:
    assert dict(dag.params) == {"scale": "tiny", "seed": 0, "backfill_from": None}
