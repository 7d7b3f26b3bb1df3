"""Member-side feature jobs: member_profile, member_history, member_sequence, member_affinity (Spark).

These change rarely compared with the number of snapshots, so they emit a row only at the snapshots where the
value changed; Feast's point-in-time join takes the latest row at or before t, which makes that exact.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pipelines.features.common import day_of, day_range, snapshot_ts
from pipelines.features.text import topic_column, work_history_column
from pipelines.schemas import MEMBER_AFFINITY, MEMBER_HISTORY, MEMBER_PROFILE, MEMBER_SEQUENCE

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from pipelines.features.common import RawFrames
    from pipelines.features.config import FeatureConfig
    from pipelines.features.snapshots import SnapshotRange

# Fields a profile update may change; education only comes from raw_members.
UPDATABLE = ("headline", "current_role", "industry", "skills", "work_history")


def _stamps(created: dt.datetime) -> list[Column]:
    from pyspark.sql import functions as F

    return [
        snapshot_ts(F.col("sday")).alias("event_timestamp"),
        F.lit(created).cast("timestamp").alias("created"),
    ]


def _in_range(snaps: SnapshotRange) -> Column:
    from pyspark.sql import functions as F

    return F.col("sday").between(snaps.start_day, snaps.end_day)


def member_profile(raw: RawFrames, snaps: SnapshotRange, created: dt.datetime) -> DataFrame:
    """Profile as of S: the raw_members row overlaid with every update before S (non-null fields only).

    Rows: one at the member's first snapshot (the day after created_at, but not before the data's ``origin``)
    and one at each later snapshot following a day with updates.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    members = raw.members.select(
        "member_id",
        *[F.col(f).alias(f"base_{f}") for f in (*UPDATABLE, "education")],
        F.greatest(day_of(F.col("created_at")) + 1, F.lit(snaps.origin_day)).alias("first_sday"),
    )
    # Overlay in time order: at each update, the last non-null value so far of each field.
    running = (
        Window.partitionBy("member_id").orderBy("event_timestamp").rowsBetween(Window.unboundedPreceding, 0)
    )
    updates = raw.profile_updates.join(members.select("member_id", "first_sday"), "member_id").select(
        "member_id",
        "event_timestamp",
        # An update is first visible the day after it; updates before the first row fold into it.
        F.greatest(day_of(F.col("event_timestamp")) + 1, F.col("first_sday")).alias("sday"),
        *[F.last(f, ignorenulls=True).over(running).alias(f"upd_{f}") for f in UPDATABLE],
    )
    # The state after the day's last update is the snapshot's.
    latest = Window.partitionBy("member_id", "sday").orderBy(F.col("event_timestamp").desc())
    changes = (
        updates.withColumn("_n", F.row_number().over(latest)).filter("_n = 1").drop("_n", "event_timestamp")
    )
    firsts = members.select("member_id", F.col("first_sday").alias("sday"))
    rows = firsts.join(changes, ["member_id", "sday"], "full_outer").filter(_in_range(snaps))
    # A member with no update before the snapshot keeps base values; so do fields never updated.
    state = rows.join(members.drop("first_sday"), "member_id")
    overlaid = {f: F.coalesce(F.col(f"upd_{f}"), F.col(f"base_{f}")) for f in UPDATABLE}
    return state.select(
        "member_id",
        overlaid["headline"].alias("headline"),
        overlaid["current_role"].alias("current_role"),
        overlaid["industry"].alias("industry"),
        overlaid["skills"].alias("skills"),
        F.col("base_education").alias("education"),
        work_history_column(overlaid["work_history"]).alias("work_history"),
        *_stamps(created),
    ).select(*MEMBER_PROFILE.names)


def _engaged(raw: RawFrames) -> DataFrame:
    return raw.impressions.filter("engaged = 1").select(
        "member_id", "post_id", "event_timestamp", "event_id", "day"
    )


def member_history(
    raw: RawFrames, snaps: SnapshotRange, cfg: FeatureConfig, created: dt.datetime
) -> DataFrame:
    """Engaged post ids before S, oldest first / newest last, the last ``history_cap`` of them; a row at each
    snapshot following a day with engagements. Impressions at the same instant order by event_id."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    in_order = Window.partitionBy("member_id").orderBy("event_timestamp", "event_id")
    engaged = _engaged(raw).withColumn("idx", F.row_number().over(in_order))
    # history_length at s = d + 1 is the index of the day's last engagement (indices count from 1).
    changes = (
        engaged.groupBy("member_id", "day")
        .agg(F.max("idx").alias("history_length"))
        .select("member_id", (F.col("day") + 1).alias("sday"), F.col("history_length").cast("long"))
        .filter(_in_range(snaps))
    )
    timelines = engaged.groupBy("member_id").agg(
        F.transform(F.array_sort(F.collect_list(F.struct("idx", "post_id"))), lambda x: x["post_id"]).alias(
            "timeline"
        )
    )
    length = F.col("history_length")
    cap = F.lit(cfg.history_cap)
    return (
        changes.join(timelines, "member_id")
        .select(
            "member_id",
            F.slice("timeline", F.greatest(length - cap + 1, F.lit(1)), F.least(length, cap)).alias(
                "engaged_post_ids"
            ),
            "history_length",
            *_stamps(created),
        )
        .select(*MEMBER_HISTORY.names)
    )


def member_sequence(
    raw: RawFrames, snaps: SnapshotRange, cfg: FeatureConfig, created: dt.datetime
) -> DataFrame:
    """Every impression before S as the GR ranker's history: the newest ``sequence_max_len``, oldest first /
    newest last, with each one's action code and epoch second; a row at each snapshot following a day with
    impressions (the first such row is the member's first snapshot with any impression).

    Order, action code and seconds are the ranking set's (``pipelines/ranking_set.py``: ``ts`` = the
    impression time floored to the second, ties by position, then event_id; ``action_code()``), so the
    history served online is the one the model was trained on."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pipelines.ranking_set import action_code

    imps = raw.impressions.select(
        "member_id",
        "post_id",
        "event_id",
        "day",
        F.unix_seconds(F.col("event_timestamp")).alias("ts"),  # floor to the second
        F.col("position").cast("int").alias("position"),
        action_code().cast("long").alias("action"),
    )
    in_order = Window.partitionBy("member_id").orderBy("ts", "position", "event_id")
    numbered = imps.withColumn("idx", F.row_number().over(in_order))
    # sequence_length at s = d + 1 is the index of the day's last impression (indices count from 1): a day
    # holds whole seconds, so every impression before S has a smaller index than the day's last one.
    changes = (
        numbered.groupBy("member_id", "day")
        .agg(F.max("idx").alias("sequence_length"))
        .select("member_id", (F.col("day") + 1).alias("sday"), F.col("sequence_length").cast("long"))
        .filter(_in_range(snaps))
    )
    timelines = numbered.groupBy("member_id").agg(
        F.array_sort(F.collect_list(F.struct("idx", "post_id", "action", "ts"))).alias("timeline")
    )
    length = F.col("sequence_length")
    cap = F.lit(cfg.sequence_max_len)
    newest = F.slice("timeline", F.greatest(length - cap + 1, F.lit(1)), F.least(length, cap))
    return (
        changes.join(timelines, "member_id")
        .select("member_id", "sequence_length", "sday", newest.alias("window"))
        .select(
            "member_id",
            F.transform("window", lambda x: x["post_id"]).alias("post_ids"),
            F.transform("window", lambda x: x["action"]).alias("actions"),
            F.transform("window", lambda x: x["ts"]).alias("timestamps"),
            "sequence_length",
            *_stamps(created),
        )
        .select(*MEMBER_SEQUENCE.names)
    )


def _top_k(
    daily: DataFrame, changes: DataFrame, item: str, window_days: int, k: int, prefix: str
) -> DataFrame:
    """Per change snapshot (member_id, sday): the ``k`` items with the largest share of the member's engaged
    impressions in the window (ties by item ascending), and the window's total."""
    from pyspark.sql import functions as F

    # Each day's counts count towards the snapshots d + 1 .. d + window; the join keeps the change snapshots.
    spread = daily.select(
        "member_id",
        item,
        "n",
        F.explode(day_range(F.col("day") + 1, F.col("day") + window_days)).alias("sday"),
    ).join(changes, ["member_id", "sday"])
    per_item = spread.groupBy("member_id", "sday", item).agg(F.sum("n").alias("n"))
    ranked = per_item.groupBy("member_id", "sday").agg(
        F.sum("n").alias("total"),
        F.slice(
            F.array_sort(F.collect_list(F.struct((-F.col("n")).alias("neg"), F.col(item).alias("item")))),
            1,
            k,
        ).alias("top"),
    )
    total = F.col("total").cast("double")
    return ranked.select(
        "member_id",
        "sday",
        F.transform("top", lambda x: x["item"]).alias(f"{prefix}_ids"),
        F.transform("top", lambda x: -x["neg"] / total).alias(f"{prefix}_scores"),
    )


def member_affinity(
    raw: RawFrames, snaps: SnapshotRange, cfg: FeatureConfig, created: dt.datetime
) -> DataFrame:
    """Top authors and topics by share of the member's engaged impressions in the ``affinity_window_days``
    before S. Rows at each snapshot where the window's contents changed: the day after an engagement, and
    the day it leaves the window (then the lists may be empty, which must overwrite the older row)."""
    from pyspark.sql import functions as F

    window = cfg.affinity_window_days
    posts = raw.posts.select("post_id", "author_id", topic_column(F.col("text")).alias("topic"))
    engaged = _engaged(raw).join(posts, "post_id")
    changes = (
        engaged.select("member_id", "day")
        .distinct()
        .select("member_id", F.explode(F.array(F.col("day") + 1, F.col("day") + window + 1)).alias("sday"))
        .filter(_in_range(snaps))
        .distinct()
    )
    by_author = engaged.groupBy("member_id", "author_id", "day").agg(F.count(F.lit(1)).alias("n"))
    by_topic = engaged.groupBy("member_id", "topic", "day").agg(F.count(F.lit(1)).alias("n"))
    authors = _top_k(by_author, changes, "author_id", window, cfg.top_k_authors, "author")
    topics = _top_k(by_topic, changes, "topic", window, cfg.top_k_topics, "topic")

    def listed(name: str, dtype: str) -> Column:
        return F.coalesce(F.col(name), F.array().cast(f"array<{dtype}>"))

    return (
        changes.join(authors, ["member_id", "sday"], "left")
        .join(topics, ["member_id", "sday"], "left")
        .select(
            "member_id",
            listed("author_ids", "bigint").alias("top_author_ids"),
            listed("author_scores", "double").alias("top_author_scores"),
            listed("topic_ids", "string").alias("top_topics"),
            listed("topic_scores", "double").alias("top_topic_scores"),
            *_stamps(created),
        )
        .select(*MEMBER_AFFINITY.names)
    )
