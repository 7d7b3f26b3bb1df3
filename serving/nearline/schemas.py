"""The nearline tables: three append-only Delta logs (events → prompts → embeddings) and the index worker's
commit log. Kept beside the nearline code (not in ``pipelines/schemas.py``) because only the nearline path
writes them; names and types follow the canonical tables (``member_id``/``post_id``, UTC microseconds).

Every row carries the original ``event_time`` (when it happened at the producer) and ``published_at`` (when
its event was appended to ``nearline_events``), plus the done time of each stage it went through
(``prompted_at``, ``embedded_at``, ``indexed_at``): freshness per stage is a difference of two columns.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.schemas import POST_ENGAGEMENT_COUNTS, POST_ENGAGEMENT_PERCENTILES, POST_ENGAGEMENT_WINDOWS, TS

EVENTS_TABLE = "nearline_events"
PROMPTS_TABLE = "nearline_prompts"
EMBEDDINGS_TABLE = "nearline_embeddings"
INDEXED_TABLE = "nearline_indexed"
TABLES: tuple[str, ...] = (EVENTS_TABLE, PROMPTS_TABLE, EMBEDDINGS_TABLE, INDEXED_TABLE)

# Event kinds.
NEW_POST = "post"
ENGAGEMENT = "engagement"
PROFILE = "profile"
EVENT_KINDS: tuple[str, ...] = (NEW_POST, ENGAGEMENT, PROFILE)

# Engagement actions: one impression of the post by the member. Every action counts a view; like / comment /
# share also count their own total; every action but "view" is an engagement (pipelines.schemas
# ENGAGED_LABELS) and grows the member's engaged history.
ACTIONS: tuple[str, ...] = ("view", "click", "long_dwell", "like", "comment", "share")
ENGAGED_ACTIONS: frozenset[str] = frozenset(ACTIONS) - {"view"}
ACTION_COUNTS: dict[str, str] = {"like": "likes", "comment": "comments", "share": "shares"}

# Profile fields a profile-change event may carry (null = unchanged); education and work history only change
# through the batch pipeline.
PROFILE_FIELDS: tuple[str, ...] = ("headline", "current_role", "industry", "skills")

# Prompt / embedding row kinds. "stats" rows carry fresh engagement counts and percentiles for the Feast push
# only: the embed worker passes them through without inference.
POST = "post"
MEMBER = "member"
STATS = "stats"
ROW_KINDS: tuple[str, ...] = (POST, MEMBER, STATS)

# Every count column of post_engagement (cumulative and windowed): a stats row carries all of them because a
# Feast push writes whole feature rows.
STATS_COUNTS: tuple[str, ...] = POST_ENGAGEMENT_COUNTS + tuple(
    f"{c}_{w}" for c in POST_ENGAGEMENT_COUNTS for w in POST_ENGAGEMENT_WINDOWS
)
STATS_PERCENTILES: tuple[str, ...] = POST_ENGAGEMENT_PERCENTILES

NEARLINE_EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),  # unique; publishing an id twice is refused
        pa.field("kind", pa.string(), nullable=False),  # one of EVENT_KINDS
        pa.field("event_time", TS, nullable=False),  # when it happened (producer clock, UTC)
        pa.field("published_at", TS, nullable=False),  # when the publish API appended it
        pa.field("member_id", pa.int64(), nullable=False),  # author / engaging member / profile owner
        pa.field("post_id", pa.int64()),  # new post, engaged post; null for profile changes
        pa.field("action", pa.string()),  # engagement: one of ACTIONS
        # new post
        pa.field("format", pa.string()),
        pa.field("text", pa.string()),
        pa.field("article_title", pa.string()),
        pa.field("article_domain", pa.string()),
        # profile change (null = field unchanged)
        pa.field("headline", pa.string()),
        pa.field("current_role", pa.string()),
        pa.field("industry", pa.string()),
        pa.field("skills", pa.list_(pa.string())),
    ]
)

_TIMES = [
    pa.field("source_event_id", pa.string(), nullable=False),  # the (last) event that caused the row
    pa.field("event_time", TS, nullable=False),
    pa.field("published_at", TS, nullable=False),
]
_POST_META = [
    pa.field("author_id", pa.int64()),  # posts: what serving filters on
    pa.field("created_at", TS),
    pa.field("format", pa.string()),
]
_STATS = [pa.field(c, pa.int64()) for c in STATS_COUNTS] + [
    pa.field(p, pa.int64()) for p in STATS_PERCENTILES
]

NEARLINE_PROMPTS = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),  # "<source_event_id>/<kind>/<entity_id>"
        pa.field("kind", pa.string(), nullable=False),  # one of ROW_KINDS
        pa.field("entity_id", pa.int64(), nullable=False),  # post_id (post, stats) or member_id (member)
        pa.field("model_version", pa.string(), nullable=False),  # the encoder the prompt was rendered for
        pa.field("prompt", pa.string()),  # null for stats rows
        *_POST_META,
        *_STATS,
        *_TIMES,
        pa.field("events_version", pa.int64(), nullable=False),  # nearline_events version of the source event
        pa.field("prompted_at", TS, nullable=False),
    ]
)

NEARLINE_EMBEDDINGS = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("entity_id", pa.int64(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32())),  # L2-normalised; null for stats rows
        *_POST_META,
        *_STATS,
        *_TIMES,
        pa.field("prompted_at", TS, nullable=False),
        pa.field("prompts_version", pa.int64(), nullable=False),
        pa.field("embedded_at", TS, nullable=False),
    ]
)

# One row per embedding row the index worker handled: indexed (Milvus upsert + Feast push), pushed (stats
# rows: Feast only) or rejected (with the reason). Committed after the sinks, with the worker's offset.
NEARLINE_INDEXED = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("entity_id", pa.int64(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # indexed | pushed | rejected | skipped
        pa.field("reason", pa.string()),  # rejected: why
        pa.field("event_time", TS, nullable=False),
        pa.field("published_at", TS, nullable=False),
        pa.field("prompted_at", TS, nullable=False),
        pa.field("embedded_at", TS, nullable=False),
        pa.field("embeddings_version", pa.int64(), nullable=False),
        pa.field("indexed_at", TS, nullable=False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    EVENTS_TABLE: NEARLINE_EVENTS,
    PROMPTS_TABLE: NEARLINE_PROMPTS,
    EMBEDDINGS_TABLE: NEARLINE_EMBEDDINGS,
    INDEXED_TABLE: NEARLINE_INDEXED,
}
