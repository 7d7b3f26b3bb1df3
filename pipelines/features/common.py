"""Spark building blocks shared by the feature jobs: the raw inputs and the as-of window sums."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.schemas import ENGAGED_LABELS, LABELS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from feed.config import FeedPaths

SECONDS_PER_DAY = 86_400


class MissingRawTableError(FileNotFoundError):
    """A raw Delta table the feature build needs is not there."""


@dataclass(frozen=True)
class RawFrames:
    """The raw tables as Spark DataFrames, already cut at the build's last snapshot (nothing later is read).

    ``impressions`` carries an extra ``day`` column (epoch day) and ``engaged`` (0/1), and is cached: every
    post and member job reads it. It keeps ``position`` and all six labels for member_sequence (the action
    code of every impression).
    """

    members: DataFrame
    posts: DataFrame
    follows: DataFrame
    impressions: DataFrame
    profile_updates: DataFrame


def day_of(ts: Column) -> Column:
    """Epoch day of a timestamp, independent of the session time zone."""
    from pyspark.sql import functions as F

    return F.floor(F.unix_seconds(ts) / SECONDS_PER_DAY).cast("int")


def snapshot_ts(sday: Column) -> Column:
    """The snapshot instant (UTC midnight) of epoch day ``sday``."""
    from pyspark.sql import functions as F

    return F.timestamp_seconds(sday.cast("long") * SECONDS_PER_DAY)


def engaged_col() -> Column:
    """DESIGN.md: an impression is engaged when any of click, long_dwell, like, comment, share is 1."""
    from pyspark.sql import functions as F

    return (F.greatest(*[F.col(label) for label in ENGAGED_LABELS]) > 0).cast("int")


def read_raw_table(spark: SparkSession, paths: FeedPaths, name: str) -> DataFrame:
    from pipelines import delta_io

    path = paths.table(name)
    if not delta_io.exists(path):
        raise MissingRawTableError(
            f"raw table {name!r} not found at {path}; generate and ingest data first "
            "(feed data synth / feed data ingest)"
        )
    return delta_io.spark_read(spark, path)


def load_raw(spark: SparkSession, paths: FeedPaths, cutoff: dt.datetime) -> RawFrames:
    """Read the five raw tables, keeping only what happened before ``cutoff`` (the last snapshot)."""
    from pyspark.sql import functions as F

    before = F.lit(cutoff).cast("timestamp")

    def upto(name: str, ts_col: str) -> DataFrame:
        return read_raw_table(spark, paths, name).filter(F.col(ts_col) < before)

    impressions = (
        upto("raw_impressions", "event_timestamp")
        .select(
            "event_id",
            "member_id",
            "post_id",
            "event_timestamp",
            "position",
            *LABELS,
            engaged_col().alias("engaged"),
            day_of(F.col("event_timestamp")).alias("day"),
        )
        .cache()
    )
    return RawFrames(
        members=upto("raw_members", "created_at"),
        posts=upto("raw_posts", "created_at"),
        follows=upto("raw_follows", "created_at"),
        impressions=impressions,
        profile_updates=upto("raw_profile_updates", "event_timestamp"),
    )


def asof_sums(
    events: DataFrame,
    grid: DataFrame,
    *,
    keys: Sequence[str],
    sums: Mapping[str, tuple[str, int | None]],
) -> DataFrame:
    """For every grid row (``keys``, ``sday``) sum event values over days before the snapshot.

    ``events`` has ``keys``, ``day`` and the value columns (aggregate them per day first); ``grid`` has
    ``keys`` and ``sday``. ``sums`` maps an output column to (value column, window in days); ``None`` = all
    days before the snapshot. Implemented as one range window over the union of events and grid rows per key:
    an event on day d gets order key d + 1 (the first snapshot that sees it), so a frame of [s − w + 1, s]
    over that key covers exactly days [s − w, s − 1]. No impression × snapshot join; each key's partition
    holds at most one row per day and grid row.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    value_cols = sorted({value for value, _ in sums.values()})
    zeros = [F.lit(0).cast("long").alias(v) for v in value_cols]
    stacked = events.select(
        *keys,
        (F.col("day") + 1).alias("_k"),
        *[F.col(v).cast("long").alias(v) for v in value_cols],
        F.lit(False).alias("_grid"),
    ).unionByName(grid.select(*keys, F.col("sday").alias("_k"), *zeros, F.lit(True).alias("_grid")))
    by_key = Window.partitionBy(*keys).orderBy("_k")
    outputs = []
    for name, (value, days) in sums.items():
        frame = by_key.rangeBetween(Window.unboundedPreceding if days is None else -(days - 1), 0)
        outputs.append(F.sum(value).over(frame).alias(name))
    return stacked.select(*keys, F.col("_k").alias("sday"), "_grid", *outputs).filter("_grid").drop("_grid")


def day_range(lo: Column, hi: Column) -> Column:
    """``sequence(lo, hi)`` that is empty (not descending) when lo > hi."""
    from pyspark.sql import functions as F

    return F.when(lo <= hi, F.sequence(lo, hi)).otherwise(F.array().cast("array<int>"))
