"""feed.orchestration: the embedded Airflow environment and one DAG run through `airflow dags test`, on a
throw-away DAGs folder (two tiny DAGs: one passes, one raises)."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from feed.config import FeedPaths
from feed.orchestration import DagRunFailed, airflow_env, dags_test

DAGS = """
import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["test"])
def passes():
    @task
    def write(**context) -> str:
        import os
        from pathlib import Path

        out = Path(os.environ["FEED_HOME"]) / f"ran_{context['ds']}.txt"
        out.write_text(context["ds"])
        return str(out)

    write()


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["test"])
def fails():
    @task
    def boom() -> None:
        raise RuntimeError("gate refused the candidate")

    boom()


passes()
fails()
"""


def test_embedded_defaults_do_not_override_the_environment(tmp_path: Path) -> None:
    paths = FeedPaths(home=tmp_path)
    env = airflow_env(paths, base={})
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert env["FEED_HOME"] == str(tmp_path)
    prod = airflow_env(paths, base={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://af@db/af"})
    assert prod["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://af@db/af"


@pytest.mark.integration
def test_dags_test_runs_a_dag_and_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "tiny.py").write_text(textwrap.dedent(DAGS))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    paths = FeedPaths(home=tmp_path / "home")
    paths.home.mkdir()
    result = dags_test(paths, "passes", dt.date(2026, 3, 2))
    assert result.state == "success"
    assert (paths.home / "ran_2026-03-02.txt").read_text() == "2026-03-02"
    with pytest.raises(DagRunFailed, match="fails 2026-03-02: state failed"):
        dags_test(paths, "fails", dt.date(2026, 3, 2))
    assert dags_test(paths, "fails", dt.date(2026, 3, 3), check=False).state == "failed"
