"""The publish API: validated events appended to ``nearline_events`` (one Delta commit per call).

All-or-nothing: every event of a call is checked first, and one bad event refuses the whole call with an
:class:`EventError` naming each bad event (position, event id, problem) — nothing is appended. Rules:

* ids are positive integers; the member must exist (snapshot profiles or raw members); an engaged post must
  exist (snapshot, raw posts, an earlier new-post event, or a new post earlier in the same call);
* a new post's id must be new (not in the snapshot, raw posts or the log), its format one of
  ``POST_FORMATS``, its text non-empty, valid Unicode and at most ``MAX_TEXT_CHARS``;
* an engagement's action is one of ``ACTIONS``; a profile change sets at least one field;
* ``event_time`` is timezone-aware and not in the future (more than ``MAX_CLOCK_SKEW`` ahead);
* an ``event_id`` is unique in the log and the call (publishing the same event twice is refused, so a
  producer that retries after an unclear failure cannot duplicate it).

Known ids are loaded once per :class:`EventPublisher` and kept current by reading only the commits appended
since (another publisher's new posts included).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.schemas import POST_FORMATS
from serving.nearline import log
from serving.nearline.schemas import (
    ACTIONS,
    ENGAGEMENT,
    EVENTS_TABLE,
    NEARLINE_EVENTS,
    NEW_POST,
    PROFILE,
    PROFILE_FIELDS,
)

MAX_TEXT_CHARS = 20_000
MAX_FIELD_CHARS = 1_000
MAX_CLOCK_SKEW = dt.timedelta(minutes=1)
MAX_ERRORS_SHOWN = 10


class EventError(ValueError):
    """Events refused by the publish API; ``problems`` lists (position, event_id, message)."""

    def __init__(self, problems: list[tuple[int, str | None, str]]) -> None:
        self.problems = problems
        shown = "; ".join(
            f"event {i} ({eid or 'no id'}): {msg}" for i, eid, msg in problems[:MAX_ERRORS_SHOWN]
        )
        more = f"; … {len(problems) - MAX_ERRORS_SHOWN} more" if len(problems) > MAX_ERRORS_SHOWN else ""
        super().__init__(f"{len(problems)} bad event(s), nothing published: {shown}{more}")


@dataclass(frozen=True)
class NewPost:
    post_id: int
    author_id: int
    format: str
    text: str
    article_title: str | None = None
    article_domain: str | None = None
    event_time: dt.datetime | None = None  # None: now
    event_id: str | None = None  # None: a fresh UUID


@dataclass(frozen=True)
class Engagement:
    member_id: int
    post_id: int
    action: str
    event_time: dt.datetime | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class ProfileChange:
    member_id: int
    headline: str | None = None
    current_role: str | None = None
    industry: str | None = None
    skills: list[str] | None = None
    event_time: dt.datetime | None = None
    event_id: str | None = None


Event = NewPost | Engagement | ProfileChange


@dataclass(frozen=True)
class PublishResult:
    version: int  # the nearline_events version the events landed in
    event_ids: list[str]
    published_at: dt.datetime


@dataclass
class KnownIds:
    """Ids the validation checks against; ``log_version`` = the last events commit folded in."""

    members: set[int] = field(default_factory=set)
    posts: set[int] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    log_version: int = -1


def _ids(paths: FeedPaths, table: str, column: str) -> set[int]:
    path = paths.table(table)
    if not delta_io.exists(path):
        return set()
    return set(delta_io.read(path, columns=[column]).column(column).to_pylist())


def load_known_ids(paths: FeedPaths) -> KnownIds:
    known = KnownIds(
        members=_ids(paths, "member_profile", "member_id") | _ids(paths, "raw_members", "member_id"),
        posts=_ids(paths, "post_content", "post_id") | _ids(paths, "raw_posts", "post_id"),
    )
    if not known.members:
        raise EventError([(0, None, f"no members known under {paths.lake}: build the feature tables first")])
    return known


def _fold(known: KnownIds, rows: pa.Table) -> None:
    known.event_ids.update(rows.column("event_id").to_pylist())
    posts = rows.filter(pc.field("kind") == NEW_POST)
    known.posts.update(posts.column("post_id").to_pylist())


class EventPublisher:
    """Validates and appends events for one home. Not thread-safe; one per producer."""

    def __init__(self, paths: FeedPaths, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.paths = paths
        self.path = paths.table(EVENTS_TABLE)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.known = load_known_ids(paths)
        self._catch_up()

    def _catch_up(self) -> None:
        head = log.head_version(self.path)
        if head is None or head <= self.known.log_version:
            return
        if self.known.log_version < 0:  # first look: the whole log in one read
            rows = delta_io.read(self.path, columns=["event_id", "kind", "post_id"])
            _fold(self.known, rows)
        else:
            for version in range(self.known.log_version + 1, head + 1):
                _fold(self.known, log.read_commit(self.path, version, NEARLINE_EVENTS).rows)
        self.known.log_version = head

    def publish(self, events: Sequence[Event]) -> PublishResult:
        """Validate all of ``events`` and append them in one commit; :class:`EventError` otherwise."""
        if not events:
            raise EventError([(0, None, "no events given")])
        self._catch_up()
        now = self.clock()
        rows, problems = [], []
        batch_posts: set[int] = set()
        batch_ids: set[str] = set()
        for i, event in enumerate(events):
            event_id = getattr(event, "event_id", None)
            try:
                row = self._row(event, now, batch_posts, batch_ids)
            except ValueError as exc:
                problems.append((i, event_id, str(exc)))
                continue
            rows.append(row)
        if problems:
            raise EventError(problems)
        table = pa.Table.from_pylist(rows, schema=NEARLINE_EVENTS)
        version = log.append(self.path, table, NEARLINE_EVENTS)
        return PublishResult(version=version, event_ids=[r["event_id"] for r in rows], published_at=now)

    # --- validation ---------------------------------------------------------------------------------------

    def _row(self, event: Event, now: dt.datetime, batch_posts: set[int], batch_ids: set[str]) -> dict:
        if not isinstance(event, NewPost | Engagement | ProfileChange):
            raise ValueError(f"not an event: {type(event).__name__}")
        event_id = self._event_id(event.event_id, batch_ids)
        when = event.event_time if event.event_time is not None else now
        if not isinstance(when, dt.datetime) or when.tzinfo is None:
            raise ValueError(f"event_time {when!r} must be a timezone-aware datetime (UTC)")
        if when > now + MAX_CLOCK_SKEW:
            raise ValueError(f"event_time {when.isoformat()} is in the future (now {now.isoformat()})")
        member_id = _positive_id(event.author_id if isinstance(event, NewPost) else event.member_id, "member")
        if member_id not in self.known.members:
            raise ValueError(f"unknown member {member_id}")
        row: dict = {"event_id": event_id, "event_time": when, "published_at": now, "member_id": member_id}
        if isinstance(event, NewPost):
            row |= self._new_post(event, batch_posts)
        elif isinstance(event, Engagement):
            row |= self._engagement(event, batch_posts)
        else:
            row |= _profile_change(event, member_id)
        batch_ids.add(event_id)
        return row

    def _event_id(self, event_id: object, batch_ids: set[str]) -> str:
        event_id = event_id if event_id is not None else uuid.uuid4().hex
        if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 128:
            raise ValueError(
                f"event_id must be a non-empty string of at most 128 characters, got {event_id!r}"
            )
        if event_id in self.known.event_ids or event_id in batch_ids:
            raise ValueError(f"event_id {event_id!r} was already published")
        return event_id

    def _new_post(self, event: NewPost, batch_posts: set[int]) -> dict:
        post_id = _positive_id(event.post_id, "post")
        if post_id in self.known.posts or post_id in batch_posts:
            raise ValueError(f"post {post_id} already exists: a new post needs a new post_id")
        if event.format not in POST_FORMATS:
            raise ValueError(f"format {event.format!r} is not one of {POST_FORMATS}")
        row = {
            "kind": NEW_POST,
            "post_id": post_id,
            "format": event.format,
            "text": _text(event.text, "text", MAX_TEXT_CHARS, required=True),
            "article_title": _text(event.article_title, "article_title", MAX_FIELD_CHARS),
            "article_domain": _text(event.article_domain, "article_domain", MAX_FIELD_CHARS),
        }
        batch_posts.add(post_id)
        return row

    def _engagement(self, event: Engagement, batch_posts: set[int]) -> dict:
        post_id = _positive_id(event.post_id, "post")
        if post_id not in self.known.posts and post_id not in batch_posts:
            raise ValueError(f"engagement with unknown post {post_id}")
        if event.action not in ACTIONS:
            raise ValueError(f"action {event.action!r} is not one of {ACTIONS}")
        return {"kind": ENGAGEMENT, "post_id": post_id, "action": event.action}


def _profile_change(event: ProfileChange, member_id: int) -> dict:
    values = {
        "headline": _text(event.headline, "headline", MAX_FIELD_CHARS),
        "current_role": _text(event.current_role, "current_role", MAX_FIELD_CHARS),
        "industry": _text(event.industry, "industry", MAX_FIELD_CHARS),
        "skills": _skills(event.skills),
    }
    if all(values[f] is None for f in PROFILE_FIELDS):
        raise ValueError(f"profile change of member {member_id} changes nothing")
    return {"kind": PROFILE, **values}


def _positive_id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what}_id must be a positive integer, got {value!r}")
    return int(value)


def _text(value: object, name: str, max_chars: int, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not valid Unicode (lone surrogate at {exc.start})") from None
    if not value.strip():
        if required:
            raise ValueError(f"{name} is empty")
        return None
    if len(value) > max_chars:
        raise ValueError(f"{name} has {len(value):,} characters; at most {max_chars:,}")
    return value


def _skills(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"skills must be a list of strings, got {type(value).__name__}")
    out = [_text(s, f"skills[{i}]", MAX_FIELD_CHARS, required=True) for i, s in enumerate(value)]
    return [s for s in out if s]
