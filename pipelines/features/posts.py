"""Post-side feature jobs: post_content, post_engagement, author_stats (Spark)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pipelines.features.common import asof_sums, day_of, day_range, snapshot_ts
from pipelines.features.percentile import spark_percentile_buckets
from pipelines.features.text import topic_column
from pipelines.schemas import (
    AUTHOR_STATS,
    POST_CONTENT,
    POST_ENGAGEMENT,
    POST_ENGAGEMENT_COUNTS,
    POST_ENGAGEMENT_PERCENTILES,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from pipelines.features.common import RawFrames
    from pipelines.features.config import FeatureConfig
    from pipelines.features.snapshots import SnapshotRange


def post_content(raw: RawFrames, snaps: SnapshotRange, created: dt.datetime) -> DataFrame:
    """One row per post created in the range's days (all posts before ``end`` for a full build);
    event_timestamp = created_at, the moment the content exists."""
    from pyspark.sql import functions as F

    posts = raw.posts
    if not snaps.full:
        # Posts first seen by snapshots start..end were created on days start − 1 .. end − 1.
        posts = posts.filter(day_of(F.col("created_at")) >= snaps.start_day - 1)
    return posts.select(
        *[c for c in POST_CONTENT.names if c in posts.columns],
        topic_column(F.col("text")).alias("topic"),
        F.col("created_at").alias("event_timestamp"),
        F.lit(created).cast("timestamp").alias("created"),
    ).select(*POST_CONTENT.names)


def post_engagement(
    raw: RawFrames, snaps: SnapshotRange, cfg: FeatureConfig, created: dt.datetime
) -> DataFrame:
    """Per snapshot S and post in S's cohort (created in the ``cohort_days`` before S): cumulative counts up
    to S, windowed counts ending at S, and percentile buckets within the cohort."""
    from pyspark.sql import functions as F

    cday = day_of(F.col("created_at"))
    # created_at in [S − 28 d, S) ⟺ s in [cday + 1, cday + 28] for a midnight S (see snapshots.py).
    lo = F.greatest(cday + 1, F.lit(snaps.start_day))
    hi = F.least(cday + cfg.cohort_days, F.lit(snaps.end_day))
    grid = raw.posts.select("post_id", F.explode(day_range(lo, hi)).alias("sday"))

    imps = raw.impressions
    daily = (
        imps.join(grid.select("post_id").distinct(), "post_id", "left_semi")
        .groupBy("post_id", "day")
        .agg(
            F.count(F.lit(1)).alias("views"),
            F.sum("like").alias("likes"),
            F.sum("comment").alias("comments"),
            F.sum("share").alias("shares"),
        )
    )
    sums: dict[str, tuple[str, int | None]] = {c: (c, None) for c in POST_ENGAGEMENT_COUNTS}
    for count in POST_ENGAGEMENT_COUNTS:
        for days in cfg.engagement_windows_days:
            sums[f"{count}_{days}d"] = (count, days)
    df = asof_sums(daily, grid, keys=["post_id"], sums=sums)
    for count, out in zip(POST_ENGAGEMENT_COUNTS, POST_ENGAGEMENT_PERCENTILES, strict=True):
        df = spark_percentile_buckets(df, partition_by=["sday"], value_col=count, out_col=out)
    return df.select(
        *[c for c in POST_ENGAGEMENT.names if c not in ("event_timestamp", "created")],
        snapshot_ts(F.col("sday")).alias("event_timestamp"),
        F.lit(created).cast("timestamp").alias("created"),
    )


def author_stats(raw: RawFrames, snaps: SnapshotRange, cfg: FeatureConfig, created: dt.datetime) -> DataFrame:
    """Per snapshot S and author with a post created before S: followers (follows created before S), posts
    and engaged impressions on their posts in the ``author_window_days`` before S, and both percentiles among
    them."""
    from pyspark.sql import functions as F

    posts = raw.posts.select("post_id", "author_id", day_of(F.col("created_at")).alias("day"))
    first = posts.groupBy("author_id").agg(F.min("day").alias("first_day"))
    lo = F.greatest(F.col("first_day") + 1, F.lit(snaps.start_day))
    grid = first.select("author_id", F.explode(day_range(lo, F.lit(snaps.end_day))).alias("sday"))

    zero = F.lit(0).cast("long")
    follows = (
        raw.follows.groupBy("author_id", day_of(F.col("created_at")).alias("day"))
        .agg(F.count(F.lit(1)).alias("follows"))
        .select("author_id", "day", "follows", zero.alias("posts"), zero.alias("engagements"))
    )
    new_posts = (
        posts.groupBy("author_id", "day")
        .agg(F.count(F.lit(1)).alias("posts"))
        .select("author_id", "day", zero.alias("follows"), "posts", zero.alias("engagements"))
    )
    engagements = (
        raw.impressions.filter("engaged = 1")
        .join(posts.select("post_id", "author_id"), "post_id")
        .groupBy("author_id", "day")
        .agg(F.count(F.lit(1)).alias("engagements"))
        .select("author_id", "day", zero.alias("follows"), zero.alias("posts"), "engagements")
    )
    window = cfg.author_window_days
    df = asof_sums(
        follows.unionByName(new_posts).unionByName(engagements),
        grid,
        keys=["author_id"],
        sums={
            "followers": ("follows", None),
            "posts_28d": ("posts", window),
            "engagements_28d": ("engagements", window),
        },
    )
    df = spark_percentile_buckets(
        df, partition_by=["sday"], value_col="followers", out_col="follower_percentile"
    )
    df = spark_percentile_buckets(
        df, partition_by=["sday"], value_col="engagements_28d", out_col="engagement_percentile"
    )
    return df.select(
        *[c for c in AUTHOR_STATS.names if c not in ("event_timestamp", "created")],
        snapshot_ts(F.col("sday")).alias("event_timestamp"),
        F.lit(created).cast("timestamp").alias("created"),
    )
