"""Airflow around the ``feed`` packages: the environment a scheduler or ``airflow dags test`` runs the DAGs in
(``dags/``), the embedded metadata DB, and running one DAG for one logical date.

Embedded default: SQLite at ``<FEED_HOME>/airflow/airflow.db`` (``airflow db migrate`` on first use) and
``airflow dags test`` — one process runs a whole DAG run without a scheduler, which is what ``make demo`` and
the tests do. Production: point ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` at Postgres and
``AIRFLOW__CORE__EXECUTOR`` at a real executor (LocalExecutor / CeleryExecutor / KubernetesExecutor) before
``feed airflow env`` — values already in the environment win over the embedded defaults (README,
"Scheduling").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from feed.config import PROJECT_ROOT, FeedPaths

DAGS_DIR = PROJECT_ROOT / "dags"
DAG_IDS = ("feed_features", "feed_retrieval_training", "feed_ranking_training", "feed_audit")


class DagRunFailed(RuntimeError):
    """An ``airflow dags test`` run ended in a state other than success (the log tail is in the message)."""


@dataclass(frozen=True)
class DagTestResult:
    dag_id: str
    logical_date: str
    state: str
    seconds: float
    log: Path


def airflow_home(paths: FeedPaths) -> Path:
    return paths.home / "airflow"


def airflow_env(paths: FeedPaths, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``airflow`` commands: ``base`` (default: this process's) plus the embedded defaults
    for whatever it does not set — AIRFLOW_HOME, the DAGs folder, a SQLite DB, no example DAGs — and
    ``FEED_HOME`` so task code finds this project's data."""
    env = dict(os.environ if base is None else base)
    home = airflow_home(paths)
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "FEED_HOME": str(paths.home),
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env


def _airflow(
    args: list[str], env: Mapping[str, str], log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    done = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout + done.stderr)
    return done


def migrate(paths: FeedPaths) -> Path:
    """Create or upgrade the metadata DB (idempotent; ≈ 3.5 s on SQLite). Returns the AIRFLOW_HOME."""
    env = airflow_env(paths)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    done = _airflow(["db", "migrate"], env, home / "logs" / "db_migrate.log")
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{_tail(done.stdout + done.stderr)}")
    return home


_FINAL_STATE = re.compile(r"DagRun Finished: dag_id=(\S+?), .*?state=(\w+)")


def dags_test(
    paths: FeedPaths,
    dag_id: str,
    logical_date: date,
    conf: Mapping[str, Any] | None = None,
    *,
    check: bool = True,
) -> DagTestResult:
    """Run every task of ``dag_id`` for ``logical_date`` in this machine's processes (``airflow dags test``),
    after making sure the metadata DB exists. Raises :class:`DagRunFailed` when the run does not succeed
    (unless ``check=False``); the full log is kept under ``<FEED_HOME>/airflow/logs/``."""
    env = airflow_env(paths)
    if not (Path(env["AIRFLOW_HOME"]) / "airflow.db").exists() and env[
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
    ].startswith("sqlite"):
        migrate(paths)
    args = ["dags", "test", dag_id, logical_date.isoformat()]
    if conf:
        args += ["--conf", json.dumps(dict(conf))]
    log = Path(env["AIRFLOW_HOME"]) / "logs" / f"dags_test_{dag_id}_{logical_date.isoformat()}.log"
    t0 = time.perf_counter()
    done = _airflow(args, env, log)
    seconds = time.perf_counter() - t0
    output = done.stdout + done.stderr
    states = [m.group(2) for m in _FINAL_STATE.finditer(output) if m.group(1) == dag_id]
    state = states[-1] if states else ("failed" if done.returncode else "unknown")
    result = DagTestResult(dag_id, logical_date.isoformat(), state, seconds, log)
    if check and (done.returncode != 0 or state != "success"):
        raise DagRunFailed(
            f"{dag_id} {logical_date}: state {state}, exit {done.returncode}; log {log}\n{_tail(output)}"
        )
    return result


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
