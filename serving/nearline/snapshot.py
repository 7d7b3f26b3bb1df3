"""The batch world the nearline path starts from: the newest feature snapshot, read once per worker start.

Nearline state = this snapshot + every nearline event since (replayed on start up to the committed offset).
What is read, for the latest ``post_engagement`` snapshot time S:

* member profiles and engaged histories (latest row per member at or before S: those tables are change-only),
* post content (every post) and author stats (latest row per author),
* the cohort's engagement counts at S and, per count, the cohort's percentile cut points
  (:func:`pipelines.features.percentile.cut_points`): a nearline count is bucketed against the snapshot's
  cohort exactly as the batch job would have bucketed an equal count.

A later batch snapshot is picked up by restarting the worker (the batch counts then include what happened up
to that snapshot; nearline increments only ever cover events published after the snapshot that was read).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.features.percentile import CutPoints, cut_points
from pipelines.schemas import POST_ENGAGEMENT_COUNTS, POST_ENGAGEMENT_PERCENTILES
from serving.nearline.schemas import STATS_COUNTS

SNAPSHOT_TABLES: tuple[str, ...] = (
    "member_profile",
    "member_history",
    "post_content",
    "post_engagement",
    "author_stats",
)


class SnapshotMissingError(ValueError):
    """The feature tables the nearline path starts from are not in the lake."""


@dataclass
class Snapshot:
    """Feature values as of ``at`` (plain Python rows keyed by id)."""

    at: dt.datetime
    profiles: dict[int, dict[str, Any]]  # member_id -> member_profile row
    histories: dict[int, list[int]]  # member_id -> engaged post ids, newest last
    posts: dict[int, dict[str, Any]]  # post_id -> post_content row
    engagement: dict[int, dict[str, int]]  # post_id -> counts (STATS_COUNTS) of the cohort at `at`
    cuts: dict[str, CutPoints]  # count ("views", ...) -> the cohort's cut points
    authors: dict[int, dict[str, Any]]  # author_id -> author_stats row

    def percentiles(self, counts: dict[str, int]) -> dict[str, int]:
        """Percentile buckets of cumulative ``counts`` against the snapshot's cohort."""
        return {
            pct: self.cuts[count].bucket(counts[count])
            for count, pct in zip(POST_ENGAGEMENT_COUNTS, POST_ENGAGEMENT_PERCENTILES, strict=True)
        }


def _latest_per_key(table: pa.Table, key: str) -> pa.Table:
    if not table.num_rows:
        return table
    ordered = table.sort_by([(key, "ascending"), ("event_timestamp", "ascending"), ("created", "ascending")])
    keys = ordered.column(key).to_numpy()
    last = np.r_[keys[1:] != keys[:-1], True]
    return ordered.filter(pa.array(last))


def _rows(table: pa.Table, key: str) -> dict[int, dict[str, Any]]:
    return {int(row[key]): row for row in table.to_pylist()}


def load_snapshot(paths: FeedPaths) -> Snapshot:
    """Read the latest snapshot; :class:`SnapshotMissingError` names the missing tables."""
    missing = [t for t in SNAPSHOT_TABLES if not delta_io.exists(paths.table(t))]
    if missing:
        raise SnapshotMissingError(
            f"nearline needs the feature tables {missing} under {paths.lake}; run `feed features build` first"
        )
    engagement = delta_io.read(paths.table("post_engagement"))
    at = pc.max(engagement.column("event_timestamp")).as_py()
    if at is None:
        raise SnapshotMissingError(f"{paths.table('post_engagement')} has no rows; run `feed features build`")
    cohort = engagement.filter(pc.field("event_timestamp") == at)
    upto = pc.field("event_timestamp") <= at

    def latest(name: str, key: str) -> pa.Table:
        return _latest_per_key(delta_io.read(paths.table(name), filter=upto), key)

    profiles = _rows(latest("member_profile", "member_id"), "member_id")
    history_table = latest("member_history", "member_id").select(["member_id", "engaged_post_ids"])
    histories = {
        int(m): [int(p) for p in (ids or [])]
        for m, ids in zip(
            history_table.column("member_id").to_pylist(),
            history_table.column("engaged_post_ids").to_pylist(),
            strict=True,
        )
    }
    content = delta_io.read(
        paths.table("post_content"),
        columns=[
            "post_id",
            "author_id",
            "format",
            "text",
            "article_title",
            "article_domain",
            "topic",
            "created_at",
        ],
    )
    counts_table = cohort.select(["post_id", *STATS_COUNTS])
    engagement_rows = {
        int(r["post_id"]): {c: int(r[c] or 0) for c in STATS_COUNTS} for r in counts_table.to_pylist()
    }
    cuts = {c: cut_points(cohort.column(c).fill_null(0).to_pylist()) for c in POST_ENGAGEMENT_COUNTS}
    authors = _rows(
        latest("author_stats", "author_id").select(["author_id", "followers", "follower_percentile"]),
        "author_id",
    )
    return Snapshot(
        at=at.astimezone(dt.UTC),
        profiles=profiles,
        histories=histories,
        posts=_rows(content, "post_id"),
        engagement=engagement_rows,
        cuts=cuts,
        authors=authors,
    )
