"""Prompt worker: ``nearline_events`` → ``nearline_prompts``.

* new post → post prompt (counts start at 0, bucketed with the snapshot's cut points) + a stats row;
* engagement → the post's running counts grow; the post is re-prompted only when one of its percentile
  buckets moves, and a stats row carries the fresh counts/percentiles to the Feast push; an engagement
  (any action but "view") appends the post to the member's engaged history and re-prompts the member;
* profile change → member prompt.

Within one batch an entity is rendered once, from its state after the whole batch (the last event that
touched it is the row's source): the effect equals rendering after every event, with fewer rows.

Exactly-once: output rows and the input offset (last events version read) are one Delta commit (app
transaction ``APP_ID``). The worker's state — running counts and histories — is rebuilt on start by replaying
the events up to the committed offset over the batch snapshot, without emitting anything: state after the
restart equals state before the crash, so decisions (bucket moved or not) are the same. A scale-out
deployment keeps this keyed state in Flink/Spark checkpoints instead of replaying (docs/nearline.md).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from feed.config import FeedPaths
from pipelines.features.text import topic_of
from pipelines.schemas import POST_ENGAGEMENT_COUNTS, POST_ENGAGEMENT_WINDOWS
from serving.nearline import log as nlog
from serving.nearline.config import NearlineConfig
from serving.nearline.encoder import Renderer, current_version, load_renderer
from serving.nearline.schemas import (
    ACTION_COUNTS,
    ENGAGED_ACTIONS,
    ENGAGEMENT,
    EVENTS_TABLE,
    MEMBER,
    NEARLINE_EVENTS,
    NEARLINE_PROMPTS,
    NEW_POST,
    POST,
    PROFILE,
    PROFILE_FIELDS,
    PROMPTS_TABLE,
    STATS,
    STATS_COUNTS,
)
from serving.nearline.snapshot import Snapshot, load_snapshot

log = logging.getLogger(__name__)

APP_ID = "feed.nearline.prompts"
STAGE = "prompts"


@dataclass
class PostState:
    """One post as the prompt worker tracks it."""

    post_id: int
    author_id: int
    created_at: dt.datetime
    content: dict[str, Any]  # format, text, article_title, article_domain, topic
    counts: dict[str, int] | None  # STATS_COUNTS; None: not in the snapshot's percentile cohort (too old)
    buckets: dict[str, int] | None


class PromptState:
    """Snapshot + the nearline events folded in so far."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.posts: dict[int, PostState] = {}  # touched or new posts (others are read from the snapshot)
        self.profile_updates: dict[int, dict[str, Any]] = {}
        self.histories: dict[int, list[int]] = {}  # touched members' engaged histories (newest last)
        self.events_applied = 0

    def post(self, post_id: int) -> PostState | None:
        state = self.posts.get(post_id)
        if state is not None:
            return state
        row = self.snapshot.posts.get(post_id)
        if row is None:
            return None
        counts = self.snapshot.engagement.get(post_id)
        state = PostState(
            post_id=post_id,
            author_id=int(row["author_id"]),
            created_at=row["created_at"],
            content={k: row[k] for k in ("format", "text", "article_title", "article_domain", "topic")},
            counts=dict(counts) if counts is not None else None,
            buckets=self.snapshot.percentiles(counts) if counts is not None else None,
        )
        self.posts[post_id] = state
        return state

    def profile(self, member_id: int) -> dict[str, Any]:
        row = dict(self.snapshot.profiles.get(member_id) or {"member_id": member_id})
        row.update(self.profile_updates.get(member_id, {}))
        return row

    def history(self, member_id: int) -> list[int]:
        if member_id not in self.histories:
            self.histories[member_id] = list(self.snapshot.histories.get(member_id, []))
        return self.histories[member_id]

    def apply(self, event: dict[str, Any]) -> list[tuple[str, int]]:
        """Fold one event in; returns the (kind, entity id) rows it calls for."""
        self.events_applied += 1
        kind = event["kind"]
        if kind == NEW_POST:
            zero = dict.fromkeys(STATS_COUNTS, 0)
            post_id = int(event["post_id"])
            self.posts[post_id] = PostState(
                post_id=post_id,
                author_id=int(event["member_id"]),
                created_at=event["event_time"],
                content={
                    "format": event["format"],
                    "text": event["text"],
                    "article_title": event["article_title"],
                    "article_domain": event["article_domain"],
                    "topic": topic_of(event["text"]),
                },
                counts=zero,
                buckets=self.snapshot.percentiles(zero),
            )
            return [(POST, post_id), (STATS, post_id)]
        if kind == ENGAGEMENT:
            return self._engagement(int(event["member_id"]), int(event["post_id"]), event["action"])
        if kind == PROFILE:
            member_id = int(event["member_id"])
            update = self.profile_updates.setdefault(member_id, {})
            update.update({f: event[f] for f in PROFILE_FIELDS if event[f] is not None})
            return [(MEMBER, member_id)]
        raise ValueError(f"event {event['event_id']}: unknown kind {kind!r}")

    def _engagement(self, member_id: int, post_id: int, action: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        post = self.post(post_id)
        if post is not None and post.counts is not None:
            bumped = ["views", *([ACTION_COUNTS[action]] if action in ACTION_COUNTS else [])]
            for count in bumped:
                post.counts[count] += 1
                for window in POST_ENGAGEMENT_WINDOWS:  # a new event falls in every window ending now
                    post.counts[f"{count}_{window}"] += 1
            buckets = self.snapshot.percentiles(post.counts)
            if buckets != post.buckets:
                post.buckets = buckets
                out.append((POST, post_id))
            out.append((STATS, post_id))
        # else: a post outside the snapshot's 28-day cohort has no percentiles; its counts are not tracked
        if action in ENGAGED_ACTIONS:
            history = self.history(member_id)
            if post_id in history:
                history.remove(post_id)
            history.append(post_id)
            out.append((MEMBER, member_id))
        return out

    # --- rendering --------------------------------------------------------------------------------------

    def post_features(self, post_id: int) -> Any:
        from training.prompts import PostFeatures

        post = self.post(post_id)
        if post is None:
            return None
        row: dict[str, Any] = {"post_id": post_id, **post.content}
        if post.counts is not None and post.buckets is not None:
            row |= {c: post.counts[c] for c in POST_ENGAGEMENT_COUNTS} | post.buckets
        author = self.snapshot.authors.get(post.author_id) or {}
        row |= {
            "followers": author.get("followers"),
            "follower_percentile": author.get("follower_percentile"),
        }
        return PostFeatures.from_feast_row(row, author=self.profile(post.author_id))

    def render(self, kind: str, entity_id: int, renderer: Renderer) -> str | None:
        from training.prompts import MemberFeatures, render_member, render_post

        if kind == POST:
            features = self.post_features(entity_id)
            return render_post(features, renderer.prompt, tokenizer=renderer.tokenizer)
        member = MemberFeatures.from_feast_row(self.profile(entity_id))
        ids = (
            self.history(entity_id)[-renderer.prompt.history_max_items :]
            if renderer.prompt.history_max_items
            else []
        )
        history = [p for p in (self.post_features(i) for i in ids) if p is not None]
        return render_member(member, history, renderer.tokenizer, renderer.prompt)


def _prompt_rows(
    state: PromptState,
    wanted: dict[tuple[str, int], tuple[dict[str, Any], int]],
    renderer: Renderer,
    now: dt.datetime,
) -> pa.Table:
    rows = []
    for (kind, entity_id), (event, version) in wanted.items():
        row: dict[str, Any] = {
            "prompt_id": f"{event['event_id']}/{kind}/{entity_id}",
            "kind": kind,
            "entity_id": entity_id,
            "model_version": renderer.model_version,
            "prompt": None,
            "source_event_id": event["event_id"],
            "event_time": event["event_time"],
            "published_at": event["published_at"],
            "events_version": version,
            "prompted_at": now,
        }
        if kind in (POST, STATS):
            post = state.post(entity_id)
            assert post is not None, f"post {entity_id} vanished"
            row |= {
                "author_id": post.author_id,
                "created_at": post.created_at,
                "format": post.content["format"],
            }
            if kind == STATS:
                assert post.counts is not None
                assert post.buckets is not None
                row |= post.counts | post.buckets
        if kind != STATS:
            row["prompt"] = state.render(kind, entity_id, renderer)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=NEARLINE_PROMPTS)


class PromptWorker:
    """One prompt worker process: rebuild state, then turn event batches into prompt batches."""

    stage = STAGE

    def __init__(self, paths: FeedPaths, cfg: NearlineConfig) -> None:
        self.paths, self.cfg = paths, cfg
        self.input = paths.table(EVENTS_TABLE)
        self.output = paths.table(PROMPTS_TABLE)
        self.state = PromptState(load_snapshot(paths))
        self.offset = nlog.committed_offset(self.output, APP_ID)
        self.renderer: Renderer | None = None
        self._replay()
        self._renderer()  # tokenizer now, not on the first event; no promoted model → a clear error here

    def _replay(self) -> None:
        """Fold events 0..offset into the state (already processed: no output)."""
        for version in range(self.offset + 1):
            for event in nlog.read_commit(self.input, version, NEARLINE_EVENTS).rows.to_pylist():
                self.state.apply(event)
        if self.offset >= 0:
            log.info(
                "prompts: state rebuilt from %d events up to version %d",
                self.state.events_applied,
                self.offset,
            )

    def _renderer(self) -> Renderer:
        version = current_version(self.paths)
        if self.renderer is None or self.renderer.model_version != version:
            self.renderer = load_renderer(self.paths, version)
        return self.renderer

    def pending(self) -> int:
        head = nlog.head_version(self.input)
        return 0 if head is None else max(0, head - self.offset)

    def step(self, *, drain: bool = False) -> int:
        """Process one batch; returns the number of input commits consumed (0: nothing new)."""
        commits = nlog.read_commits(
            self.input,
            NEARLINE_EVENTS,
            self.offset,
            max_versions=self.cfg.max_versions,
            max_rows=self.cfg.max_rows,
        )
        if not commits:
            return 0
        self.cfg.maybe_crash(STAGE, "after_read")
        renderer = self._renderer()
        wanted: dict[tuple[str, int], tuple[dict[str, Any], int]] = {}
        for commit in commits:
            for event in commit.rows.to_pylist():
                for key in self.state.apply(event):
                    wanted.pop(key, None)  # re-insert: rows come out in order of their last cause
                    wanted[key] = (event, commit.version)
        rows = _prompt_rows(self.state, wanted, renderer, dt.datetime.now(dt.UTC))
        last = commits[-1].version
        nlog.commit_with_offset(self.output, rows, NEARLINE_PROMPTS, APP_ID, last)
        self.offset = last
        log.info("prompts: events ≤ v%d → %d prompt rows", last, rows.num_rows)
        self.cfg.maybe_crash(STAGE, "after_commit")
        return len(commits)
