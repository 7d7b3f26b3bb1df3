"""feed_ranking_training (weekly, Mondays 05:00 UTC): build the GR ranking set → train a candidate →
evaluate it on validation and test → gate on per-task validation AUC against the served ranker → promote.

Task bodies live in ``feed.flows.ranking`` (imported inside each task: parsing this file imports no torch,
Spark or pandas). The run conf picks the training size (``feed.flows.ranking.RankingRunConfig``: ``steps``,
``token_budget``, model widths, ``first_gate``...); unknown keys fail the run. A refused candidate fails the
``gate`` task without retries and leaves ``artifacts/ranking/CURRENT`` as it was.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, dag, task

from feed.flows import RANKING_PROMOTED


@dag(
    dag_id="feed_ranking_training",
    # Weekly; each run covers the week before its trigger time (data_interval_start .. data_interval_end).
    schedule=CronTriggerTimetable("0 5 * * 1", timezone="UTC", interval=timedelta(weeks=1)),
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share artifacts/ranking/CURRENT
    tags=["feed"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True},
)
def feed_ranking_training() -> None:
    @task
    def build_ranking_set(
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        dag_run: Any = None,
    ) -> dict[str, Any]:
        from feed.flows.ranking import build_set

        assert data_interval_start is not None
        assert data_interval_end is not None
        return build_set(data_interval_start, data_interval_end, dag_run.conf)

    @task
    def train_ranker(ranking_set: dict[str, Any], dag_run: Any = None) -> dict[str, Any]:
        from feed.flows.ranking import train_candidate

        return train_candidate(ranking_set["set_path"], ranking_set["version"], dag_run.conf)

    @task
    def evaluate(ranking_set: dict[str, Any], trained: dict[str, Any], dag_run: Any = None) -> dict[str, Any]:
        from feed.flows.ranking import evaluate_candidate

        return evaluate_candidate(ranking_set["set_path"], trained["candidate"], dag_run.conf)

    @task
    def gate(
        ranking_set: dict[str, Any],
        trained: dict[str, Any],
        evaluation: dict[str, Any],
        dag_run: Any = None,
    ) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from feed.flows.ranking import RankingGateFailed, gate_candidate

        try:
            return gate_candidate(ranking_set["set_path"], trained["candidate"], evaluation, dag_run.conf)
        except RankingGateFailed as exc:  # a refused model is not a transient failure: no retries
            raise AirflowFailException(str(exc)) from exc

    @task(outlets=[Asset(RANKING_PROMOTED)])
    def promote(trained: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        from feed.flows.ranking import promote_candidate

        assert decision["passed"]
        return promote_candidate(trained["candidate"], trained["version"])

    ranking_set = build_ranking_set()
    trained = train_ranker(ranking_set)
    evaluation = evaluate(ranking_set, trained)
    promote(trained, gate(ranking_set, trained, evaluation))


feed_ranking_training()
