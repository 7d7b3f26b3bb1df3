"""feed_features (daily): new raw data → Spark features → GX gate → freshness/drift → publish → Feast.

ingest_raw → build_features → check_drift → publish_features → materialize

The run for the data interval [D, D+1) builds the feature snapshot at D+1 (it sees the events of day D and
before), clipped to the raw data's span; task bodies live in ``feed.flows.features`` (see its docstring for
the interval mapping and idempotency). A refused GX gate, stale raw data or drift past the threshold fails
the run without retrying (``AirflowFailException``: the same data would be refused again) and before Feast
is touched; ``publish_features`` emits the ``feed://features/published`` asset that triggers
``feed_retrieval_training``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task

from feed.flows import FEATURES_PUBLISHED

FEATURES_ASSET = Asset(FEATURES_PUBLISHED)


@dag(
    dag_id="feed_features",
    # A data-interval timetable: the run for logical date D covers [D, D+1) and starts at D+1, so "the
    # day's snapshot" is well defined ("@daily" is a trigger timetable in Airflow 3: a zero-length interval).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    tags=["feed"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True},
    # scale/seed: synthetic data generated only when the lake and landing are empty; backfill_from (ISO date):
    # an initial load building every snapshot from that day to the interval's end in one run
    params={"scale": "tiny", "seed": 0, "backfill_from": None},
    doc_md=__doc__,
)
def feed_features() -> None:
    @task
    def ingest_raw(params: dict[str, Any] | None = None) -> dict:
        from feed.flows import features

        params = params or {}
        with features.fail_without_retry():
            return features.ingest_new_data(scale=str(params["scale"]), seed=int(params["seed"]))

    @task
    def build_features(
        data_interval_start: Any = None, data_interval_end: Any = None, params: dict[str, Any] | None = None
    ) -> dict:
        import datetime as dt

        from airflow.sdk.exceptions import AirflowSkipException

        from feed.flows import features

        since = (params or {}).get("backfill_from")
        with features.fail_without_retry():
            built = features.build(
                None,
                data_interval_start,
                data_interval_end,
                backfill_from=dt.date.fromisoformat(str(since)) if since else None,
            )
        if "skipped" in built:  # an interval before the data: the run succeeds with nothing to do
            raise AirflowSkipException(built["skipped"])
        return built

    @task
    def check_drift(built: dict) -> dict:
        from feed.flows import features

        with features.fail_without_retry():
            return features.check_drift(None, built)

    @task(outlets=[FEATURES_ASSET])
    def publish_features(built: dict, checked: dict, outlet_events: Any = None) -> dict:
        from feed.flows import features

        published = features.publish(None, built)
        if outlet_events is not None:  # the asset event carries the versions to the consuming DAG
            outlet_events[FEATURES_ASSET].extra = {**published, "drift_report": checked["report"]}
        return published

    @task
    def materialize(published: dict) -> dict:
        from feed.flows import features

        return features.materialize(None, published)

    built = build_features()
    ingest_raw() >> built
    materialize(publish_features(built, check_drift(built)))


feed_features()
