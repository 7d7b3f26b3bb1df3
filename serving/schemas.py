"""The HTTP contract of the feed service (pydantic models → the OpenAPI document at /docs, /openapi.json).

Malformed input is refused by these models with a 422 naming the field; nothing here can raise a 500.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.schemas import DEVICE_TYPES
from training.ranking.features import TASKS

DeviceType = Literal[tuple(DEVICE_TYPES)]  # type: ignore[valid-type]
MAX_EXCLUDE = 1000
POSITIVE_ID = Field(gt=0, le=2**62)

# Why a feed was served the way it was (``FeedResponse.fallbacks``; counted in feed_fallbacks_total).
FALLBACKS: tuple[str, ...] = (
    "cold_start",  # the member has no embedding: the profile prompt was encoded now
    "feature_store_unavailable",  # Feast read failed or timed out: profile-only/cold-start path
    "member_features_stale",  # the member's rows were older than the configured limit
    "member_unknown",  # no feature row at all: popular candidates
    "no_member_vector",  # feature rows but neither an embedding nor a profile to encode: popular candidates
    "retrieval_unavailable",  # Milvus down or too slow: recent popular posts instead
    "post_features_unavailable",  # candidate features missing: ranked without them
    "ranker_unavailable",  # no promoted ranker, or it failed: retrieval order
    "short_feed",  # fewer candidates than k survived the filters
)


class FeedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: int = Field(gt=0, le=2**62, description="the member asking for a feed")
    k: int = Field(default=50, ge=1, le=500, description="number of posts to return")
    device_type: DeviceType = Field(default="mobile_app", description="the device the feed is shown on")
    exclude_post_ids: list[Annotated[int, Field(gt=0, le=2**62)]] = Field(
        default_factory=list,
        max_length=MAX_EXCLUDE,
        description="posts the client has already shown (never returned); the member's engaged history "
        "and own posts are excluded as well",
    )


class TaskProbabilities(BaseModel):
    click: float
    skip: float
    long_dwell: float
    like: float
    comment: float
    share: float


assert tuple(TaskProbabilities.model_fields) == TASKS


class Why(BaseModel):
    """A short reason per item: the history post it attended to most and/or what it shares with the
    member."""

    text: str
    history_post_id: int | None = None
    attention: float | None = None
    topic: str | None = None
    followed_author: bool = False


class FeedItem(BaseModel):
    position: int
    post_id: int
    author_id: int
    score: float
    retrieval_score: float | None
    tasks: TaskProbabilities | None
    topic: str | None = None
    format: str | None = None
    text: str | None = None
    why: Why


class FeedResponse(BaseModel):
    request_id: str
    member_id: int
    items: list[FeedItem]
    fallbacks: list[str] = Field(description=f"degraded paths taken, any of {', '.join(FALLBACKS)}")
    cold_start: bool
    model_versions: dict[str, str | None]
    candidates: int = Field(description="candidates retrieved before ranking")
    timings_ms: dict[str, float]


class HistoryItem(BaseModel):
    post_id: int
    author_id: int | None = None
    topic: str | None = None
    text: str | None = None


class MemberView(BaseModel):
    member_id: int
    found: bool
    headline: str | None = None
    current_role: str | None = None
    industry: str | None = None
    skills: list[str] = []
    has_embedding: bool
    embedding_version: str | None = None
    history_length: int
    history: list[HistoryItem]
    top_topics: list[str] = []


class MemberList(BaseModel):
    member_ids: list[int]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
