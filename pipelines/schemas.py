"""The canonical tables: one Arrow schema per Delta table (DESIGN.md "Canonical data").

Every producer (generator, MovieLens/MIND loaders, Spark jobs, nearline) writes exactly these columns and
types, and every consumer (Feast definitions, training, serving) reads them by these names. Timestamps are
UTC microseconds. Feature tables carry ``event_timestamp`` (the snapshot time the row is valid from) and
``created`` (when the row was computed); a snapshot at time S only uses events with timestamp < S.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

LABELS: tuple[str, ...] = ("click", "skip", "long_dwell", "like", "comment", "share")
PASSIVE_LABELS: tuple[str, ...] = ("click", "skip", "long_dwell")
ACTIVE_LABELS: tuple[str, ...] = ("like", "comment", "share")
# DESIGN.md: an impression is engaged when any of these is 1 (skip is not engagement).
ENGAGED_LABELS: tuple[str, ...] = ("click", "long_dwell", "like", "comment", "share")
POST_FORMATS: tuple[str, ...] = ("text", "article", "image", "video", "poll", "document")
DEVICE_TYPES: tuple[str, ...] = ("mobile_app", "desktop_web", "mobile_web", "tablet")

WORK_HISTORY_ITEM = pa.struct(
    [
        pa.field("title", pa.string()),
        pa.field("company", pa.string()),
        pa.field("industry", pa.string()),
        pa.field("start", pa.date32()),
        pa.field("end", pa.date32()),  # null = current position
    ]
)

# --- raw tables -------------------------------------------------------------------------------------------

RAW_MEMBERS = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("headline", pa.string()),
        pa.field("current_role", pa.string()),
        pa.field("industry", pa.string()),
        pa.field("skills", pa.list_(pa.string())),
        pa.field("education", pa.list_(pa.string())),
        pa.field("work_history", pa.list_(WORK_HISTORY_ITEM)),
        pa.field("created_at", TS, nullable=False),
    ]
)

RAW_POSTS = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("author_id", pa.int64(), nullable=False),  # a member_id
        pa.field("format", pa.string(), nullable=False),  # one of POST_FORMATS
        pa.field("text", pa.string()),  # hashtags in the text are the observable topics
        pa.field("article_title", pa.string()),
        pa.field("article_domain", pa.string()),
        pa.field("created_at", TS, nullable=False),
    ]
)

RAW_FOLLOWS = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("author_id", pa.int64(), nullable=False),
        pa.field("created_at", TS, nullable=False),
    ]
)

RAW_IMPRESSIONS = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("device_type", pa.string(), nullable=False),  # one of DEVICE_TYPES
        pa.field("position", pa.int32(), nullable=False),  # 0-based feed position
        pa.field("request_id", pa.string()),  # null for historical data; set by the online service
    ]
    + [pa.field(label, pa.int8(), nullable=False) for label in LABELS]
)

# One row per change; only the changed fields are non-null (a member's profile as of t = the base row in
# raw_members overlaid with every update at or before t, in order).
RAW_PROFILE_UPDATES = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
        pa.field("headline", pa.string()),
        pa.field("current_role", pa.string()),
        pa.field("industry", pa.string()),
        pa.field("skills", pa.list_(pa.string())),
        pa.field("work_history", pa.list_(WORK_HISTORY_ITEM)),
    ]
)

# Sensitive attributes: never in a feature view, prompt or model input.
AUDIT_ATTRIBUTES = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("attribute", pa.string(), nullable=False),  # e.g. "group", "gender", "age"
        pa.field("value", pa.string()),
    ]
)

# Generator truth, for evaluation only.
TRUTH_MEMBERS = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("interests", pa.list_(pa.float32())),  # latent interest weights over TOPICS
        pa.field("activity", pa.float64()),  # expected sessions per day
    ]
)
TRUTH_POSTS = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("topic", pa.string()),  # the latent topic the text was generated from
        pa.field("quality", pa.float64()),
    ]
)

RAW_SCHEMAS: dict[str, pa.Schema] = {
    "raw_members": RAW_MEMBERS,
    "raw_posts": RAW_POSTS,
    "raw_follows": RAW_FOLLOWS,
    "raw_impressions": RAW_IMPRESSIONS,
    "raw_profile_updates": RAW_PROFILE_UPDATES,
}
SIDE_SCHEMAS: dict[str, pa.Schema] = {
    "audit_attributes": AUDIT_ATTRIBUTES,
    "truth_members": TRUTH_MEMBERS,
    "truth_posts": TRUTH_POSTS,
}

# Primary keys of raw tables (unique per table); profile updates are keyed by (member_id, event_timestamp).
RAW_KEYS: dict[str, tuple[str, ...]] = {
    "raw_members": ("member_id",),
    "raw_posts": ("post_id",),
    "raw_follows": ("member_id", "author_id"),
    "raw_impressions": ("event_id",),
    "raw_profile_updates": ("member_id", "event_timestamp"),
}

# --- feature tables (written by the Spark pipeline, read by Feast) -----------------------------------------

_STAMPS = [pa.field("event_timestamp", TS, nullable=False), pa.field("created", TS, nullable=False)]

MEMBER_PROFILE = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("headline", pa.string()),
        pa.field("current_role", pa.string()),
        pa.field("industry", pa.string()),
        pa.field("skills", pa.list_(pa.string())),
        pa.field("education", pa.list_(pa.string())),
        # "Title @ Company (Industry), 2019-03 – present", newest first: Feast has no struct type.
        pa.field("work_history", pa.list_(pa.string())),
        *_STAMPS,
    ]
)

MEMBER_HISTORY = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("engaged_post_ids", pa.list_(pa.int64())),  # engaged only, newest last, capped
        pa.field("history_length", pa.int64()),  # engaged impressions before the snapshot (uncapped)
        *_STAMPS,
    ]
)

# Every impression (not only engaged ones), as the GR ranker's history tokens: the newest ``sequence_max_len``
# before the snapshot, oldest first / newest last, in (timestamps, position, event_id) order, i.e. the ranking
# set's sequence order (pipelines/ranking_set.py). The three lists are parallel.
MEMBER_SEQUENCE = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("post_ids", pa.list_(pa.int64())),
        pa.field("actions", pa.list_(pa.int64())),  # action code: sum(label_i << i) in LABELS order, 0..63
        pa.field("timestamps", pa.list_(pa.int64())),  # epoch seconds (impression time floored)
        pa.field("sequence_length", pa.int64()),  # impressions before the snapshot (uncapped)
        *_STAMPS,
    ]
)

MEMBER_AFFINITY = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("top_author_ids", pa.list_(pa.int64())),  # by affinity, highest first
        pa.field("top_author_scores", pa.list_(pa.float64())),  # share of the member's engagements
        pa.field("top_topics", pa.list_(pa.string())),
        pa.field("top_topic_scores", pa.list_(pa.float64())),
        *_STAMPS,
    ]
)

POST_CONTENT = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("author_id", pa.int64(), nullable=False),
        pa.field("format", pa.string()),
        pa.field("text", pa.string()),
        pa.field("article_title", pa.string()),
        pa.field("article_domain", pa.string()),
        pa.field("topic", pa.string()),  # first hashtag of the text, lower-case; "general" if none
        pa.field("created_at", TS),
        *_STAMPS,  # event_timestamp = created_at
    ]
)

# Counts are cumulative up to the snapshot; *_1d/_7d/_28d are windows ending at the snapshot.
# Percentiles: DESIGN.md's rule among posts created in the 28 days before the snapshot.
POST_ENGAGEMENT_COUNTS: tuple[str, ...] = ("views", "likes", "comments", "shares")
POST_ENGAGEMENT_WINDOWS: tuple[str, ...] = ("1d", "7d", "28d")
POST_ENGAGEMENT_PERCENTILES: tuple[str, ...] = (
    "view_percentile",
    "like_percentile",
    "comment_percentile",
    "share_percentile",
)
POST_ENGAGEMENT = pa.schema(
    [pa.field("post_id", pa.int64(), nullable=False)]
    + [pa.field(c, pa.int64()) for c in POST_ENGAGEMENT_COUNTS]
    + [pa.field(f"{c}_{w}", pa.int64()) for c in POST_ENGAGEMENT_COUNTS for w in POST_ENGAGEMENT_WINDOWS]
    + [pa.field(p, pa.int64()) for p in POST_ENGAGEMENT_PERCENTILES]
    + _STAMPS
)

AUTHOR_STATS = pa.schema(
    [
        pa.field("author_id", pa.int64(), nullable=False),
        pa.field("followers", pa.int64()),
        pa.field("posts_28d", pa.int64()),
        pa.field("engagements_28d", pa.int64()),
        pa.field("follower_percentile", pa.int64()),  # among all authors with a post before the snapshot
        pa.field("engagement_percentile", pa.int64()),
        *_STAMPS,
    ]
)

EMBEDDING_MEMBER = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32())),
        *_STAMPS,
    ]
)
EMBEDDING_POST = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32())),
        *_STAMPS,
    ]
)

FEATURE_SCHEMAS: dict[str, pa.Schema] = {
    "member_profile": MEMBER_PROFILE,
    "member_history": MEMBER_HISTORY,
    "member_sequence": MEMBER_SEQUENCE,
    "member_affinity": MEMBER_AFFINITY,
    "post_content": POST_CONTENT,
    "post_engagement": POST_ENGAGEMENT,
    "author_stats": AUTHOR_STATS,
    "member_embeddings": EMBEDDING_MEMBER,
    "post_embeddings": EMBEDDING_POST,
}
# Entity key of each feature table; (key, event_timestamp) is unique.
FEATURE_KEYS: dict[str, str] = {
    "member_profile": "member_id",
    "member_history": "member_id",
    "member_sequence": "member_id",
    "member_affinity": "member_id",
    "post_content": "post_id",
    "post_engagement": "post_id",
    "author_stats": "author_id",
    "member_embeddings": "member_id",
    "post_embeddings": "post_id",
}
