"""Feast definitions for the feed: entities → sources → feature views → feature services (DESIGN.md names).

Sources are the feature Delta tables the Spark pipeline writes (``pipelines/schemas.py`` holds their
columns). Their location comes from ONE constant, ``LAKE_DIR``. It is read from the environment because
``feast apply`` imports this file in its own process, where our typed settings are not available:
``pipelines/feature_store.py`` (and anyone running the ``feast`` CLI for another home) sets
``FEED_LAKE_DIR`` to ``FeedPaths.lake`` first.
The default is the project's own ``data/lake``, so ``cd feature_repo && feast apply`` works as is.

``FEED_SOURCE_FORMAT=parquet`` switches every batch source to a ``SparkSource`` over Parquet exports under
``FEED_EXPORT_DIR`` for the Spark offline-store variant (``variants/spark.yaml``): Feast's Spark store reads
only SparkSources, and Spark cannot read Delta here without the delta-spark jars.

No sensitive attribute (DESIGN.md: ``audit_attributes``) appears in any view; keep it that way.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.data_format import DeltaFormat
from feast.data_source import DataSource
from feast.types import Array, Float32, Float64, Int64, String, UnixTimestamp
from feast.value_type import ValueType

CURRENT_DIR = Path(__file__).parent
LAKE_DIR = Path(os.environ.get("FEED_LAKE_DIR", CURRENT_DIR.parent / "data" / "lake"))
SOURCE_FORMAT = os.environ.get("FEED_SOURCE_FORMAT", "delta")  # "delta" (default) | "parquet" (Spark store)
EXPORT_DIR = Path(os.environ.get("FEED_EXPORT_DIR", LAKE_DIR.parent / "feast" / "parquet"))


def _table_source(name: str, table: str) -> DataSource:
    """Batch source over feature table ``table``: Delta for DuckDB, an exported Parquet folder for Spark."""
    if SOURCE_FORMAT == "parquet":
        # imported here: it pulls in pyspark, which the embedded default never needs
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(
            name=name,
            path=str(EXPORT_DIR / table),
            file_format="parquet",
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )
    if SOURCE_FORMAT != "delta":
        raise ValueError(f"FEED_SOURCE_FORMAT must be 'delta' or 'parquet', got {SOURCE_FORMAT!r}")
    return FileSource(
        name=name,
        path=str(LAKE_DIR / table),
        file_format=DeltaFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


# --- entities

member = Entity(name="member", join_keys=["member_id"], value_type=ValueType.INT64, description="a member")
post = Entity(name="post", join_keys=["post_id"], value_type=ValueType.INT64, description="a post")
# Authors are members; a separate entity because post-side views join on the post's author_id.
author = Entity(
    name="author", join_keys=["author_id"], value_type=ValueType.INT64, description="a post author"
)

# --- sources

member_profile_source = _table_source("member_profile_source", "member_profile")
member_history_source = _table_source("member_history_source", "member_history")
member_sequence_source = _table_source("member_sequence_source", "member_sequence")
member_affinity_source = _table_source("member_affinity_source", "member_affinity")
post_content_source = _table_source("post_content_source", "post_content")
post_engagement_source = _table_source("post_engagement_source", "post_engagement")
author_stats_source = _table_source("author_stats_source", "author_stats")
member_embeddings_source = _table_source("member_embeddings_source", "member_embeddings")
post_embeddings_source = _table_source("post_embeddings_source", "post_embeddings")

# Push sources: the nearline path writes fresh rows straight to the online store (and, with
# PushMode.ONLINE_AND_OFFLINE, to the batch table) without waiting for the next materialization.
post_engagement_push = PushSource(name="post_engagement_push", batch_source=post_engagement_source)
member_embedding_push = PushSource(name="member_embedding_push", batch_source=member_embeddings_source)
post_embedding_push = PushSource(name="post_embedding_push", batch_source=post_embeddings_source)

# --- feature views

member_profile_fv = FeatureView(
    name="member_profile",
    entities=[member],
    ttl=timedelta(days=365),  # profiles change rarely; a snapshot stays valid for a year
    schema=[
        Field(name="headline", dtype=String),
        Field(name="current_role", dtype=String),
        Field(name="industry", dtype=String),
        Field(name="skills", dtype=Array(String)),
        Field(name="education", dtype=Array(String)),
        # "Title @ Company (Industry), 2019-03 – present", newest first: Feast has no struct list type
        Field(name="work_history", dtype=Array(String)),
    ],
    online=True,
    source=member_profile_source,
    tags={"team": "member"},
)

member_history_fv = FeatureView(
    name="member_history",
    entities=[member],
    ttl=timedelta(days=30),  # older than a month, the engaged-post sequence no longer describes the member
    schema=[
        Field(name="engaged_post_ids", dtype=Array(Int64)),  # engaged only, newest last, capped
        Field(name="history_length", dtype=Int64),  # uncapped count before the snapshot
    ],
    online=True,
    source=member_history_source,
    tags={"team": "member"},
)

member_sequence_fv = FeatureView(
    name="member_sequence",
    entities=[member],
    ttl=timedelta(days=30),  # as member_history: a month-old history no longer describes the member
    schema=[
        # every impression (not only engaged), oldest first / newest last, the newest sequence_max_len before
        # the snapshot, in the GR ranking set's order (ts, position, event_id); three parallel lists
        Field(name="post_ids", dtype=Array(Int64)),
        Field(name="actions", dtype=Array(Int64)),  # action code sum(label_i << i), TASKS order, 0..63
        Field(name="timestamps", dtype=Array(Int64)),  # epoch seconds
        Field(name="sequence_length", dtype=Int64),  # uncapped count before the snapshot
    ],
    online=True,
    source=member_sequence_source,
    tags={"team": "member"},
)

member_affinity_fv = FeatureView(
    name="member_affinity",
    entities=[member],
    ttl=timedelta(days=30),
    schema=[
        Field(name="top_author_ids", dtype=Array(Int64)),
        Field(name="top_author_scores", dtype=Array(Float64)),
        Field(name="top_topics", dtype=Array(String)),
        Field(name="top_topic_scores", dtype=Array(Float64)),
    ],
    online=True,
    source=member_affinity_source,
    tags={"team": "member"},
)

post_content_fv = FeatureView(
    name="post_content",
    entities=[post],
    # event_timestamp = created_at, so this is also the age limit of a post the feed can show
    ttl=timedelta(days=365),
    schema=[
        Field(name="author_id", dtype=Int64),
        Field(name="format", dtype=String),
        Field(name="text", dtype=String),
        Field(name="article_title", dtype=String),
        Field(name="article_domain", dtype=String),
        Field(name="topic", dtype=String),
        Field(name="created_at", dtype=UnixTimestamp),
    ],
    online=True,
    source=post_content_source,
    tags={"team": "content"},
)

post_engagement_fv = FeatureView(
    name="post_engagement",
    entities=[post],
    ttl=timedelta(days=2),  # daily snapshots (or fresher pushes); older counts would mislead the ranker
    schema=[
        Field(name="views", dtype=Int64),
        Field(name="likes", dtype=Int64),
        Field(name="comments", dtype=Int64),
        Field(name="shares", dtype=Int64),
        Field(name="views_1d", dtype=Int64),
        Field(name="views_7d", dtype=Int64),
        Field(name="views_28d", dtype=Int64),
        Field(name="likes_1d", dtype=Int64),
        Field(name="likes_7d", dtype=Int64),
        Field(name="likes_28d", dtype=Int64),
        Field(name="comments_1d", dtype=Int64),
        Field(name="comments_7d", dtype=Int64),
        Field(name="comments_28d", dtype=Int64),
        Field(name="shares_1d", dtype=Int64),
        Field(name="shares_7d", dtype=Int64),
        Field(name="shares_28d", dtype=Int64),
        Field(name="view_percentile", dtype=Int64),  # 1..100 among posts of the last 28 days
        Field(name="like_percentile", dtype=Int64),
        Field(name="comment_percentile", dtype=Int64),
        Field(name="share_percentile", dtype=Int64),
    ],
    online=True,
    source=post_engagement_push,  # batch rows from Delta, fresh counts pushed by the nearline path
    tags={"team": "content"},
)

author_stats_fv = FeatureView(
    name="author_stats",
    entities=[author],
    ttl=timedelta(days=7),
    schema=[
        Field(name="followers", dtype=Int64),
        Field(name="posts_28d", dtype=Int64),
        Field(name="engagements_28d", dtype=Int64),
        Field(name="follower_percentile", dtype=Int64),
        Field(name="engagement_percentile", dtype=Int64),
    ],
    online=True,
    source=author_stats_source,
    tags={"team": "content"},
)

member_embedding_fv = FeatureView(
    name="member_embedding",
    entities=[member],
    ttl=timedelta(days=30),  # older: re-encode the member (cold-start path) rather than serve stale interests
    schema=[
        Field(name="embedding", dtype=Array(Float32)),
        Field(name="model_version", dtype=String),  # the encoder that produced it; must match the index
    ],
    online=True,
    source=member_embedding_push,
    tags={"team": "retrieval"},
)

post_embedding_fv = FeatureView(
    name="post_embedding",
    entities=[post],
    ttl=timedelta(days=365),  # same age limit as post_content
    schema=[
        Field(name="embedding", dtype=Array(Float32)),
        Field(name="model_version", dtype=String),
    ],
    online=True,
    source=post_embedding_push,
    tags={"team": "retrieval"},
)

# --- feature services: versioned model contracts; a model reads only through its service

retrieval_member_v1 = FeatureService(
    name="retrieval_member_v1",
    features=[member_profile_fv, member_history_fv, member_embedding_fv],
    description="Member tower of the dual encoder: profile prompt, engaged history, cached embedding.",
    tags={"team": "retrieval"},
)

retrieval_post_v1 = FeatureService(
    name="retrieval_post_v1",
    features=[
        post_content_fv,
        # raw counts beside the buckets: the prompt library renders either (percentile tokens by default,
        # raw counts for the ablation)
        post_engagement_fv[
            [
                "views",
                "likes",
                "comments",
                "shares",
                "view_percentile",
                "like_percentile",
                "comment_percentile",
                "share_percentile",
            ]
        ],
        author_stats_fv[["followers", "follower_percentile"]],
    ],
    description="Post tower and index metadata: content, engagement percentiles, author popularity.",
    tags={"team": "retrieval"},
)

ranking_v1 = FeatureService(
    name="ranking_v1",
    features=[
        member_profile_fv[["industry", "current_role"]],
        member_history_fv[["engaged_post_ids", "history_length"]],
        member_sequence_fv,  # the GR's history tokens: post, action, time of every recent impression
        member_affinity_fv,
        post_content_fv[["author_id", "format", "topic", "created_at"]],
        post_engagement_fv,
        author_stats_fv,
        member_embedding_fv[["embedding"]],
        post_embedding_fv[["embedding"]],
    ],
    description="GR ranker inputs per (member, candidate post, its author).",
    tags={"team": "ranking"},
)
