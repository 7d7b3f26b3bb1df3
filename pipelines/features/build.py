"""Orchestration: raw Delta → Spark feature jobs → staged Parquet → quality gate → feature Delta tables.

Every table goes through ``pipelines.quality.gate.gate_and_publish`` (the only publisher): Spark writes the
batch to ``data/staging/<table>/<run_id>``, it is read back conformed to the canonical schema, and the gate
either commits it with a predicate replacing exactly the snapshots built (so a re-run replaces, never
duplicates) or quarantines it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from feed.config import FEATURE_TABLES
from pipelines.features.config import FeatureConfig
from pipelines.features.snapshots import SnapshotRange, resolve_snapshots
from pipelines.schemas import FEATURE_KEYS, FEATURE_SCHEMAS

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from feed.config import FeedPaths, SparkConfig
    from pipelines.features.common import RawFrames
    from pipelines.quality.gate import GateResult

log = logging.getLogger(__name__)

# Tables with a row for every snapshot of the range (given a non-empty cohort); the gate checks completeness.
EVERY_SNAPSHOT = ("post_engagement", "author_stats")


class EmptyRawDataError(ValueError):
    """raw_impressions has nothing before the cut-off, so there is no snapshot to build."""


@dataclass(frozen=True)
class TableBuild:
    table: str
    rows: int
    staged: Path
    gate: GateResult
    seconds: float  # compute + stage + gate

    @property
    def passed(self) -> bool:
        return bool(self.gate.passed)


@dataclass(frozen=True)
class BuildReport:
    run_id: str
    snapshots: SnapshotRange
    created: dt.datetime
    tables: list[TableBuild]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tables)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def impression_span(spark: SparkSession, paths: FeedPaths) -> tuple[dt.datetime, dt.datetime]:
    """First and last impression timestamps (UTC)."""
    from pyspark.sql import functions as F

    from pipelines.features.common import read_raw_table

    row = (
        read_raw_table(spark, paths, "raw_impressions")
        .agg(F.min("event_timestamp").alias("lo"), F.max("event_timestamp").alias("hi"))
        .collect()[0]
    )
    if row["lo"] is None:
        raise EmptyRawDataError(
            f"{paths.table('raw_impressions')} has no rows; nothing to build features from"
        )
    # Spark hands back naive datetimes in the session time zone, which SparkConfig pins to UTC.
    return row["lo"].replace(tzinfo=dt.UTC), row["hi"].replace(tzinfo=dt.UTC)


def feature_jobs(
    raw: RawFrames, snaps: SnapshotRange, config: FeatureConfig, created: dt.datetime
) -> dict[str, Callable[[], DataFrame]]:
    """The Spark DataFrame of each feature table (lazily: each is planned when its turn comes)."""
    from pipelines.features import members, posts

    return {
        "member_profile": lambda: members.member_profile(raw, snaps, created),
        "member_history": lambda: members.member_history(raw, snaps, config, created),
        "member_sequence": lambda: members.member_sequence(raw, snaps, config, created),
        "member_affinity": lambda: members.member_affinity(raw, snaps, config, created),
        "post_content": lambda: posts.post_content(raw, snaps, created),
        "post_engagement": lambda: posts.post_engagement(raw, snaps, config, created),
        "author_stats": lambda: posts.author_stats(raw, snaps, config, created),
    }


def stage_table(df: DataFrame, staging: Path, table: str) -> pa.Table:
    """Spark writes the batch as Parquet; read it back conformed to the schema, in (key, event_timestamp)
    order. Sorting here in Arrow rather than in Spark avoids a range-partitioning pass (Spark samples the
    data first) for output that is a few million rows at most per run."""
    from pipelines import delta_io

    delta_io.stage_parquet(df, staging)
    batch = delta_io.read_staged(staging, FEATURE_SCHEMAS[table])
    return batch.sort_by([(FEATURE_KEYS[table], "ascending"), ("event_timestamp", "ascending")])


def build_features(
    paths: FeedPaths,
    spark_cfg: SparkConfig,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    run_id: str | None = None,
    config: FeatureConfig = FeatureConfig(),  # noqa: B008 - frozen dataclass, never mutated
    tables: tuple[str, ...] = FEATURE_TABLES,
) -> BuildReport:
    """Build the feature tables for snapshots ``start``..``end`` (default: the whole impression span).

    ``tables`` picks a subset (default all of ``FEATURE_TABLES``). Returns per table the rows, staged path,
    gate result and seconds; a table the gate refused is quarantined by it and reported, the others are still
    built.
    """
    from pipelines.features.common import load_raw
    from pipelines.quality.gate import gate_and_publish
    from pipelines.spark import get_spark

    unknown = sorted(set(tables) - set(FEATURE_TABLES))
    if unknown:
        raise ValueError(f"unknown feature table(s) {unknown}; expected some of {FEATURE_TABLES}")
    began = time.perf_counter()
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = run_id or f"{created:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    spark = get_spark(spark_cfg)
    snaps = resolve_snapshots(*impression_span(spark, paths), start=start, end=end)
    log.info("features run %s: snapshots %s..%s (full=%s)", run_id, snaps.start, snaps.end, snaps.full)
    raw = load_raw(spark, paths, snaps.cutoff)
    jobs = feature_jobs(raw, snaps, config, created)
    built: list[TableBuild] = []
    try:
        for table in tables:
            t0 = time.perf_counter()
            batch = stage_table(jobs[table](), paths.staging / table / run_id, table)
            gate = gate_and_publish(
                table,
                batch,
                paths=paths,
                run_id=run_id,
                predicate=snaps.predicate(lag_days=1 if table == "post_content" else 0),
                expected_snapshots=snaps.timestamps() if table in EVERY_SNAPSHOT else None,
            )
            built.append(
                TableBuild(
                    table, batch.num_rows, paths.staging / table / run_id, gate, time.perf_counter() - t0
                )
            )
            log.info("%s: %d rows, gate %s", table, batch.num_rows, "passed" if gate.passed else "FAILED")
    finally:
        raw.impressions.unpersist()
    return BuildReport(
        run_id=run_id,
        snapshots=snaps,
        created=created,
        tables=built,
        seconds=time.perf_counter() - began,
    )
