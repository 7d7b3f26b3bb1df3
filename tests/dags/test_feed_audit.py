"""feed_audit's structure, as dags/README.md documents it: parses with no import errors, weekly on Mondays
06:00 UTC or when a ranker is promoted, static_check → exposure_audit → quality_by_group → publish_report,
no outlets, retries but none for a failed static check. No data, no metadata DB."""

from __future__ import annotations

import ast
import subprocess
import sys
from typing import Any

import pytest

from feed.config import PROJECT_ROOT
from feed.orchestration import DAGS_DIR

DAG_ID = "feed_audit"
UPSTREAM = {
    "static_check": set(),
    "exposure_audit": {"static_check"},
    "quality_by_group": {"static_check", "exposure_audit"},
    "publish_report": {"static_check", "quality_by_group"},
}


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_task_graph_is_what_the_readme_says(dag: Any) -> None:
    assert set(dag.task_ids) == set(UPSTREAM)
    for task_id, upstream in UPSTREAM.items():
        assert dag.get_task(task_id).upstream_task_ids == upstream, task_id
    assert dag.get_task("publish_report").downstream_task_ids == set()


def test_weekly_after_ranking_training_or_when_a_ranker_is_promoted(dag: Any) -> None:
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    from feed.flows import RANKING_PROMOTED

    timetable = dag.timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert isinstance(timetable.timetable, CronTriggerTimetable)
    assert timetable.timetable.expression == "0 6 * * 1"  # Mondays 06:00, after ranking training (05:00)
    assert str(timetable.timetable.timezone) == "UTC"
    assets = getattr(timetable.asset_condition, "objects", (timetable.asset_condition,))
    assert [a.uri for a in assets] == [RANKING_PROMOTED]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "feed" in dag.tags


def test_no_task_emits_an_asset(dag: Any) -> None:
    assert all(not t.outlets for t in dag.tasks)


def test_retries_with_backoff(dag: Any) -> None:
    for task in dag.tasks:
        assert task.retries == 2
        assert task.retry_exponential_backoff


def test_a_failed_static_check_fails_without_retries() -> None:
    """The DAG turns the check's SensitiveAttributeError into AirflowFailException (no retry can fix it)."""
    tree = ast.parse((DAGS_DIR / f"{DAG_ID}.py").read_text())
    handlers = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ExceptHandler) and "SensitiveAttributeError" in ast.unparse(node.type or node)
    ]
    assert len(handlers) == 1
    assert "AirflowFailException" in ast.unparse(handlers[0])
    from feed.flows import audit
    from pipelines.audit.static import SensitiveAttributeError

    with pytest.raises(SensitiveAttributeError, match="planted"):
        audit.raise_if_failed(
            {"passed": False, "violations": [{"message": "x: 'planted_group' names group"}]}
        )
    audit.raise_if_failed({"passed": True, "violations": []})


def test_run_conf_is_parsed_strictly() -> None:
    from feed.flows.audit import AuditRunConfig

    cfg = AuditRunConfig.from_conf({"members": 20, "source": "logged"})
    assert (cfg.members, cfg.source, cfg.k) == (20, "logged", 50)
    with pytest.raises(ValueError, match=r"unknown feed_audit conf keys \['member'\]"):
        AuditRunConfig.from_conf({"member": 20})
    with pytest.raises(ValueError, match="source must be"):
        AuditRunConfig.from_conf({"source": "both"})


def test_parsing_the_dag_file_imports_nothing_heavy() -> None:
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]); "
        "heavy = {'torch', 'pandas', 'feast', 'pyspark', 'matplotlib'} & set(sys.modules); "
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(DAGS_DIR / f"{DAG_ID}.py")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_the_work_folder_is_named_after_the_run(tmp_path: Any) -> None:
    from feed.config import FeedPaths
    from feed.flows.audit import work_dir

    folder = work_dir(FeedPaths(home=tmp_path), "scheduled__2026-09-28T06:00:00+00:00")
    assert folder.is_dir()
    assert folder.parent == tmp_path / "data" / "audit"
    assert ":" not in folder.name
    assert "+" not in folder.name
