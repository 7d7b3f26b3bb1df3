"""feed_audit (weekly, Mondays 06:00 UTC, or whenever a new ranker is promoted): the Responsible-AI audit.

static_check → exposure_audit → quality_by_group → publish_report

Task bodies live in ``feed.flows.audit`` (imported inside each task: parsing this file imports no torch,
pandas or Feast). Each step writes its JSON into the run's work folder ``<data>/audit/<run_id>/``; XCom
carries that folder and headline numbers only. A sensitive attribute in a feature service, prompt template or
model input fails ``static_check`` without retries (``AirflowFailException``) and nothing else runs. Run conf
(all optional; unknown keys fail the run): ``feed.flows.audit.AuditRunConfig`` — ``{"members": 200, "seed":
0, "k": 50, "source": "served", "attribute": "group", "max_anchors": 500, "max_eval_days": null, "device":
"auto", "top_fraction": 0.01, "reports_dir": null, "quality": true}``. With ``"source": "logged"`` the
audited feeds are the served impressions logged in the run's data interval.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from feed.flows import RANKING_PROMOTED


def _interval(context: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The run's data interval; an asset-triggered run may have none (then no window: every logged feed)."""
    return context.get("data_interval_start"), context.get("data_interval_end")


@dag(
    dag_id="feed_audit",
    schedule=AssetOrTimeSchedule(
        # Mondays 06:00 UTC: after feed_retrieval_training (04:00) and feed_ranking_training (05:00)
        timetable=CronTriggerTimetable("0 6 * * 1", timezone="UTC", interval=timedelta(weeks=1)),
        assets=(Asset(RANKING_PROMOTED),),  # ...and whenever a new ranker starts serving
    ),
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs start the home's Milvus Lite server and write the same reports/audit/
    tags=["feed"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True},
    doc_md=__doc__,
)
def feed_audit() -> None:
    @task
    def static_check(**context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from feed.config import FeedSettings
        from feed.flows import audit

        audit.AuditRunConfig.from_conf(context["dag_run"].conf)  # a bad conf fails before any work
        paths = FeedSettings().paths()
        work = audit.work_dir(paths, context["run_id"])
        result = audit.static_check(paths, work)
        try:
            audit.raise_if_failed(result)
        except audit.SensitiveAttributeError as exc:  # a verdict, not a glitch: no retries
            raise AirflowFailException(str(exc)) from exc
        return {"work": str(work), "passed": True, "places": result["places"]}

    @task
    def exposure_audit(checked: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pathlib import Path

        from feed.config import FeedSettings
        from feed.flows import audit

        cfg = audit.AuditRunConfig.from_conf(context["dag_run"].conf)
        since, until = _interval(context)
        return audit.exposure_audit(
            FeedSettings().paths(), cfg, Path(checked["work"]), since=since, until=until
        )

    @task
    def quality_by_group(checked: dict[str, Any], exposed: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pathlib import Path

        from feed.config import FeedSettings
        from feed.flows import audit

        cfg = audit.AuditRunConfig.from_conf(context["dag_run"].conf)
        if not cfg.quality:
            return {"skipped": True}
        return audit.quality_audit(FeedSettings().paths(), cfg, Path(checked["work"]))

    @task
    def publish_report(checked: dict[str, Any], quality: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pathlib import Path

        from feed.config import FeedSettings
        from feed.flows import audit

        cfg = audit.AuditRunConfig.from_conf(context["dag_run"].conf)
        notes = [f"DAG run {context['run_id']}"]
        if quality.get("skipped"):
            notes.append("quality audit skipped (conf quality=false): quality_by_member_group is null")
        return audit.publish_report(FeedSettings().paths(), cfg, Path(checked["work"]), extra_notes=notes)

    checked = static_check()
    exposed = exposure_audit(checked)
    publish_report(checked, quality_by_group(checked, exposed))


feed_audit()
