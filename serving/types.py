"""What the request path's stages hand each other: one member's online features and a table of posts.

Plain dataclasses over numpy (no Feast, no torch): the feature stage fills them from Feast online reads, the
retrieval, ranking and explanation stages read them. Columnar for posts, because a request carries hundreds of
candidates and the ranker wants arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MemberOnline:
    """One member's online features at request time (Feast ``member_*`` views; missing → empty/None)."""

    member_id: int
    found: bool  # any member feature row at all (False: unknown to the feature store)
    headline: str | None = None
    current_role: str | None = None
    industry: str | None = None
    skills: list[str] = field(default_factory=list)
    education: list[str] = field(default_factory=list)
    work_history: list[str] = field(default_factory=list)
    engaged_post_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # newest last
    history_length: int = 0  # uncapped engaged count before the snapshot
    top_author_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    top_author_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    top_topics: list[str] = field(default_factory=list)
    top_topic_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    has_affinity: bool = False  # a member_affinity row was served (else the ranker's affinities are NaN)
    embedding: np.ndarray | None = None  # float32 (E,), unit norm, from the retrieval model below
    embedding_version: str | None = None
    # The GR's interaction sequence (member_sequence view): every impression with its action code,
    # oldest → newest. None when the store has no such row (then the ranker falls back to engaged ids).
    sequence_post_ids: np.ndarray | None = None
    sequence_actions: np.ndarray | None = None  # uint8 action codes (training.ranking.features)
    sequence_ts: np.ndarray | None = None  # epoch seconds
    feature_ts: dict[str, float] = field(default_factory=dict)  # view → event_timestamp (epoch s) served
    raw: dict[str, Any] = field(default_factory=dict)  # the Feast row as read (``view__feature`` names)


@dataclass
class PostTable:
    """Posts as columns, one row per post, in the order the caller asked for. Missing values: NaN (floats),
    0 (author_id), "" (strings), and ``has_embedding`` False with a zero row in ``embedding``."""

    post_id: np.ndarray  # int64 (N,)
    author_id: np.ndarray  # int64 (N,), 0 = unknown
    format: np.ndarray  # object (N,) str
    topic: np.ndarray  # object (N,) str
    text: np.ndarray  # object (N,) str (may be long; the UI cuts it)
    created_at: np.ndarray  # float64 epoch seconds, NaN unknown
    view_percentile: np.ndarray  # float64 1..100 (Feast's bucket), NaN unknown
    like_percentile: np.ndarray
    comment_percentile: np.ndarray
    share_percentile: np.ndarray
    follower_percentile: np.ndarray
    embedding: np.ndarray  # float32 (N, E)
    has_embedding: np.ndarray  # bool (N,)
    found: np.ndarray  # bool (N,): the store had a post_content row

    def __len__(self) -> int:
        return int(self.post_id.shape[0])

    def take(self, idx: np.ndarray) -> PostTable:
        idx = np.asarray(idx, dtype=np.int64)
        return PostTable(**{name: getattr(self, name)[idx] for name in POST_COLUMNS})

    @classmethod
    def empty(cls, dim: int) -> PostTable:
        return cls(
            post_id=np.zeros(0, np.int64),
            author_id=np.zeros(0, np.int64),
            format=np.zeros(0, object),
            topic=np.zeros(0, object),
            text=np.zeros(0, object),
            created_at=np.zeros(0, np.float64),
            view_percentile=np.zeros(0, np.float64),
            like_percentile=np.zeros(0, np.float64),
            comment_percentile=np.zeros(0, np.float64),
            share_percentile=np.zeros(0, np.float64),
            follower_percentile=np.zeros(0, np.float64),
            embedding=np.zeros((0, dim), np.float32),
            has_embedding=np.zeros(0, bool),
            found=np.zeros(0, bool),
        )


POST_COLUMNS: tuple[str, ...] = (
    "post_id",
    "author_id",
    "format",
    "topic",
    "text",
    "created_at",
    "view_percentile",
    "like_percentile",
    "comment_percentile",
    "share_percentile",
    "follower_percentile",
    "embedding",
    "has_embedding",
    "found",
)


@dataclass
class ScoreRequest:
    """One member's ranking job: its features, the candidates, and the posts of its history."""

    member: MemberOnline
    candidates: PostTable
    history_posts: PostTable  # rows for the ids of the member's sequence/engaged history (any order)
    device_type: str
    request_ts: float  # epoch seconds


@dataclass
class ScoreResult:
    probs: np.ndarray  # float32 (N, 6) task probabilities in training.ranking.features.TASKS order
    why_post_id: np.ndarray  # int64 (N,): the history post the candidate attended to most; -1 none
    why_weight: np.ndarray  # float32 (N,): that post's attention share (0..1)
    history_used: int  # history tokens the model saw
