"""The inputs of the prompt templates: one post / one member as of some time, built from Feast rows.

Feast rows name features ``view__feature`` (``post_engagement__view_percentile``); the training set's
``posts.parquet`` uses the bare field names of :class:`PostFeatures`. ``from_feast_row`` accepts both (the
``view__feature`` name wins) so one constructor serves the offline set, Feast online reads and nearline.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from training.prompts.text import clean_text, is_missing

PERCENTILE_MIN, PERCENTILE_MAX = 1, 100  # DESIGN.md: buckets are 1 + floor(99 × percent_rank) ∈ 1..100

COUNT_FIELDS: tuple[str, ...] = ("views", "likes", "comments", "shares", "followers")
PERCENTILE_FIELDS: tuple[str, ...] = (
    "view_percentile",
    "like_percentile",
    "comment_percentile",
    "share_percentile",
    "follower_percentile",
)

# PostFeatures field → the Feast feature that carries it (author_* come from the author's member_profile).
POST_FEAST_NAMES: Mapping[str, str] = {
    "format": "post_content__format",
    "text": "post_content__text",
    "article_title": "post_content__article_title",
    "article_domain": "post_content__article_domain",
    "topic": "post_content__topic",
    **{c: f"post_engagement__{c}" for c in ("views", "likes", "comments", "shares")},
    **{p: f"post_engagement__{p}" for p in PERCENTILE_FIELDS[:4]},
    "followers": "author_stats__followers",
    "follower_percentile": "author_stats__follower_percentile",
}
MEMBER_PROFILE_FIELDS: tuple[str, ...] = (
    "headline",
    "current_role",
    "industry",
    "skills",
    "education",
    "work_history",
)
CURRENT_MARK = "– present"  # pipelines/features/text.py renders an open position's end as "present"


@dataclass(frozen=True)
class PostFeatures:
    """One post as the prompt sees it. Every feature may be missing (None) except ``post_id``; counts are
    ints ≥ 0 and percentiles ints in 1..100 (checked here, so a bad row fails with its post id)."""

    post_id: int
    format: str | None = None
    text: str | None = None
    article_title: str | None = None
    article_domain: str | None = None
    topic: str | None = None
    author_headline: str | None = None
    author_current_role: str | None = None
    author_company: str | None = None
    author_industry: str | None = None
    views: int | None = None
    likes: int | None = None
    comments: int | None = None
    shares: int | None = None
    view_percentile: int | None = None
    like_percentile: int | None = None
    comment_percentile: int | None = None
    share_percentile: int | None = None
    followers: int | None = None
    follower_percentile: int | None = None

    def __post_init__(self) -> None:
        # Frozen: normalise numpy ints to int once here so templates and equality see plain values.
        post_id = _as_int(self.post_id, "post_id", self)
        if post_id is None:
            raise ValueError("PostFeatures.post_id is required")
        object.__setattr__(self, "post_id", post_id)
        for name in COUNT_FIELDS:
            value = _as_int(getattr(self, name), name, self)
            if value is not None and value < 0:
                raise ValueError(f"post {self.post_id}: {name}={value} is negative")
            object.__setattr__(self, name, value)
        for name in PERCENTILE_FIELDS:
            value = _as_int(getattr(self, name), name, self)
            if value is not None and not PERCENTILE_MIN <= value <= PERCENTILE_MAX:
                raise ValueError(
                    f"post {self.post_id}: {name}={value} outside {PERCENTILE_MIN}..{PERCENTILE_MAX}"
                )
            object.__setattr__(self, name, value)

    @classmethod
    def from_feast_row(cls, row: Mapping[str, Any], author: Mapping[str, Any] | None = None) -> PostFeatures:
        """A post from a retrieval_post_v1 row (``post_id`` + ``view__feature`` columns, or the bare field
        names) and, optionally, the author's member_profile row (``member_profile__*`` or bare names):
        author headline, current role and industry as they are, the company parsed from the author's
        current position in work_history. Text fields are cleaned (:func:`clean_text`)."""
        post_id = _lookup(row, "post_id")
        if post_id is None:
            raise ValueError(f"post row without post_id: columns {sorted(row)[:12]}")
        values: dict[str, Any] = {"post_id": post_id}
        for f in fields(cls):
            if f.name == "post_id":
                continue
            feast_name = POST_FEAST_NAMES.get(f.name)
            values[f.name] = _lookup(row, feast_name, f.name) if feast_name else _lookup(row, f.name)
        if author is not None:
            work_history = _str_list(_lookup(author, "member_profile__work_history", "work_history"), "")
            values["author_headline"] = _lookup(author, "member_profile__headline", "headline")
            values["author_current_role"] = _lookup(author, "member_profile__current_role", "current_role")
            values["author_industry"] = _lookup(author, "member_profile__industry", "industry")
            values["author_company"] = current_company(work_history)
        for name in ("format", "text", "article_title", "article_domain", "topic", *_AUTHOR_TEXT):
            values[name] = clean_text(values[name], field=f"post {post_id}: {name}")
        return cls(**values)


_AUTHOR_TEXT = ("author_headline", "author_current_role", "author_company", "author_industry")


@dataclass(frozen=True)
class MemberFeatures:
    """One member's profile as the prompt sees it (member_profile as of some time). Lists are in the
    feature table's order: work_history newest first, skills/education as entered."""

    member_id: int
    headline: str | None = None
    current_role: str | None = None
    industry: str | None = None
    skills: list[str] = field(default_factory=list)
    education: list[str] = field(default_factory=list)
    work_history: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        member_id = _as_int(self.member_id, "member_id", self)
        if member_id is None:
            raise ValueError("MemberFeatures.member_id is required")
        object.__setattr__(self, "member_id", member_id)

    @property
    def is_empty(self) -> bool:
        """No profile field at all (a member row that exists but was never filled in)."""
        return not (
            self.headline
            or self.current_role
            or self.industry
            or self.skills
            or self.education
            or self.work_history
        )

    @classmethod
    def from_feast_row(cls, row: Mapping[str, Any]) -> MemberFeatures:
        """A member from a retrieval_member_v1 / member_profile row (``member_profile__*`` or bare names).
        Text is cleaned; list features may arrive as lists, tuples or numpy arrays (pandas), or be missing."""
        member_id = _lookup(row, "member_id")
        if member_id is None:
            raise ValueError(f"member row without member_id: columns {sorted(row)[:12]}")
        values: dict[str, Any] = {"member_id": member_id}
        for name in MEMBER_PROFILE_FIELDS:
            value = _lookup(row, f"member_profile__{name}", name)
            where = f"member {member_id}: {name}"
            is_list = name in _MEMBER_LISTS
            values[name] = _str_list(value, where) if is_list else clean_text(value, field=where)
        return cls(**values)


_MEMBER_LISTS = ("skills", "education", "work_history")


def current_company(work_history: Sequence[str]) -> str | None:
    """The company of the first open position ("Title @ Company (Industry), 2019-03 – present") in a
    member_profile work_history; None when no position is open — a former employer is not the company."""
    for line in work_history:
        if line.rstrip().endswith(CURRENT_MARK):
            return parse_work_item(line)[1]
    return None


def parse_work_item(line: str) -> tuple[str | None, str | None, str | None]:
    """(title, company, industry) of one rendered work_history line; parts that cannot be found are None.
    The inverse of ``pipelines.features.text.render_work_item``."""
    head, comma, _dates = line.rpartition(", ")
    if not comma:
        head = line
    title, at, rest = head.partition(" @ ")
    if not at:
        return (title.strip() or None, None, None)
    industry = None
    if rest.endswith(")") and " (" in rest:
        rest, industry = rest[:-1].rsplit(" (", 1)
    return (title.strip() or None, rest.strip() or None, (industry or "").strip() or None)


def _lookup(row: Mapping[str, Any], *keys: str) -> Any:
    """The first non-missing value among ``keys`` (a Feast name before the bare field name)."""
    for key in keys:
        if key in row:
            value = row[key]
            if not _missing_scalar(value):
                return value
    return None


def _missing_scalar(value: Any) -> bool:
    # A list-valued feature (numpy array) must not reach is_missing's scalar checks as "missing".
    return not hasattr(value, "__len__") and is_missing(value)


def _str_list(value: Any, where: str) -> list[str]:
    if value is None or _missing_scalar(value):
        return []
    if isinstance(value, str | bytes):
        value = [value]
    out = [clean_text(item, field=f"{where}[{i}]") for i, item in enumerate(value)]
    return [item for item in out if item]


def _as_int(value: Any, name: str, owner: object) -> int | None:
    if value is None or _missing_scalar(value):
        return None
    if isinstance(value, bool):
        raise TypeError(f"{_who(owner)}: {name} must be an integer, got bool")
    if isinstance(value, float) and value.is_integer():
        return int(value)  # pandas turns an int column with gaps into float64
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{_who(owner)}: {name} must be an integer, got {type(value).__name__}") from None


def _who(owner: object) -> str:
    if isinstance(owner, PostFeatures):
        return f"post {owner.post_id}"
    if isinstance(owner, MemberFeatures):
        return f"member {owner.member_id}"
    return type(owner).__name__
