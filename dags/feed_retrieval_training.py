"""feed_retrieval_training: retrain the dual encoder weekly, or as soon as feed_features publishes features.

build_training_set → train_encoder → evaluate → quality_gate → promote → embed → backfill_index →
push_embeddings (outlet: the RETRIEVAL_PROMOTED asset). A failed gate fails the run without retries and
leaves artifacts/retrieval/CURRENT, the Milvus alias and the Feast rows as they were. The task bodies live in
feed.flows.retrieval; XCom carries versions, paths and small summaries only. Run conf (all optional):
{"profile": "cpu", "steps": 150, "seed": 0, "max_train_anchors": null, "max_eval_anchors": 500,
"tolerance": 0.01} — see dags/README.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from feed.flows import FEATURES_PUBLISHED, RETRIEVAL_PROMOTED


def _interval_end(context: dict[str, Any]) -> datetime:
    """The run's data interval end; an asset-triggered run may have no interval, then its run_after."""
    end = context.get("data_interval_end") or context.get("logical_date")
    return end if end is not None else context["dag_run"].run_after


@dag(
    dag_id="feed_retrieval_training",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * 1", timezone="UTC"),  # Mondays 04:00 UTC
        assets=(Asset(FEATURES_PUBLISHED),),  # ...and whenever feed_features publishes
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one training at a time: runs share the Milvus alias and CURRENT
    tags=["feed"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True},
)
def feed_retrieval_training() -> None:
    @task
    def build_training_set(**context: Any) -> dict[str, Any]:
        from feed.config import FeedSettings
        from feed.flows import retrieval

        cfg = retrieval.RetrievalTrainingConfig.from_conf(context["dag_run"].conf)
        paths = FeedSettings().paths()
        version = retrieval.version_for(_interval_end(context))
        return retrieval.build_training_set(paths, version, cfg)

    @task
    def train_encoder(built: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pathlib import Path

        from feed.config import FeedSettings
        from feed.flows import retrieval

        cfg = retrieval.RetrievalTrainingConfig.from_conf(context["dag_run"].conf)
        return retrieval.train_candidate(FeedSettings().paths(), Path(built["set"]), built["version"], cfg)

    @task
    def evaluate(built: dict[str, Any], trained: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pathlib import Path

        from feed.config import FeedSettings
        from feed.flows import retrieval

        cfg = retrieval.RetrievalTrainingConfig.from_conf(context["dag_run"].conf)
        paths = FeedSettings().paths()
        return retrieval.evaluate_candidate(paths, Path(built["set"]), Path(trained["candidate"]), cfg)

    @task
    def quality_gate(evaluation: dict[str, Any], **context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from feed.flows import retrieval

        cfg = retrieval.RetrievalTrainingConfig.from_conf(context["dag_run"].conf)
        try:
            return retrieval.gate(evaluation, cfg.gate)
        except retrieval.RetrievalGateFailed as exc:
            raise AirflowFailException(str(exc)) from exc  # a verdict, not a glitch: no retries

    @task
    def promote(gated: dict[str, Any]) -> dict[str, Any]:
        from feed.config import FeedSettings
        from feed.flows import retrieval

        return retrieval.promote(FeedSettings().paths(), gated["version"])

    @task
    def embed(promoted: dict[str, Any], **context: Any) -> dict[str, Any]:
        from feed.config import FeedSettings
        from feed.flows import retrieval

        paths = FeedSettings().paths()
        at = retrieval.export_time(paths, _interval_end(context))
        return retrieval.export_embeddings(paths, promoted["version"], at)

    @task
    def backfill_index(embedded: dict[str, Any]) -> dict[str, Any]:
        from feed.config import FeedSettings
        from feed.flows import retrieval

        return retrieval.backfill_index(FeedSettings().paths(), embedded["version"])

    @task(outlets=[Asset(RETRIEVAL_PROMOTED)])
    def push_embeddings(indexed: dict[str, Any]) -> dict[str, Any]:
        from feed.config import FeedSettings
        from feed.flows import retrieval

        return retrieval.push_embeddings(FeedSettings().paths(), indexed["version"])

    built = build_training_set()
    trained = train_encoder(built)
    gated = quality_gate(evaluate(built, trained))
    push_embeddings(backfill_index(embed(promote(gated))))


feed_retrieval_training()
