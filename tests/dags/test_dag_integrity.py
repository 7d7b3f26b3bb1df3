"""Every DAG file in dags/ imports cleanly (Airflow's DagBag, no import errors) and they are the DAGs the
README schedules; DAG files do no top-level work (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from feed.orchestration import DAG_IDS, DAGS_DIR

HEAVY = {"torch", "pandas", "pyarrow", "pyspark", "feast", "numpy", "great_expectations", "pymilvus"}


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3.3's home of the DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dagbag_has_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}


def test_the_scheduled_dags_are_there(dagbag) -> None:  # type: ignore[no-untyped-def]
    present = set(dagbag.dag_ids)
    assert present == set(DAG_IDS)
    for dag_id in DAG_IDS:
        dag = dagbag.dags[dag_id]  # get_dag() would ask the metadata DB
        assert dag.catchup is False
        assert "feed" in dag.tags


@pytest.mark.parametrize("path", sorted(DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_import_nothing_heavy_at_module_level(path: Path) -> None:
    roots = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & HEAVY, f"{path.name} imports {roots & HEAVY} at module level"
