"""The feeds an audit measures, as one row per served item (:data:`pipelines.audit.exposure.FEED_COLUMNS`).

- ``served``: feeds produced now by the real service, in-process (``serving.pipeline.FeedService``: Feast
  online reads, Milvus retrieval, the promoted GR, the diversity guard), for a seeded sample of members —
  deterministic for ``(members, seed)`` and the same home;
- ``logged``: the served impressions already in ``raw_impressions`` (rows with a non-null ``request_id``),
  optionally limited to a time window.

Served audit feeds are never logged back as impressions when the service lets that be switched off (an
audit must not feed training with feeds nobody saw); :func:`serve_feeds` says which in its notes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from pipelines.audit.exposure import FEED_COLUMNS

if TYPE_CHECKING:
    from feed.config import FeedPaths

Source = Literal["served", "logged"]
NO_LOGGING = {"log_impressions": False}  # ServingSettings field(s) that switch impression logging off
# Per-stage budget of the audit's requests: the audit measures the model's feed, not how a busy machine
# degrades (a stage over the service's own budget would take its fallback); fallbacks taken are reported.
AUDIT_STAGE_BUDGET_MS = 60_000.0
STAGES = ("member_features", "cold_start", "retrieval", "post_features", "ranking")
# Fallbacks after which the candidates are the recent popular posts, not the member's retrieval: the feed's
# "path" is then "popular" (else "personalized"), so exposure can be read per path.
POPULAR_FALLBACKS = frozenset({"member_unknown", "no_member_vector", "retrieval_unavailable"})


class NoLoggedFeedsError(RuntimeError):
    """``--source logged`` but raw_impressions holds no served impression (in the window)."""


@dataclass(frozen=True)
class FeedSampleConfig:
    members: int = 200  # members sampled (all when the lake has fewer)
    seed: int = 0
    k: int = 50  # feed length asked of the service
    device_type: str = "mobile_app"

    def __post_init__(self) -> None:
        if self.members < 1 or self.k < 1:
            raise ValueError(f"members and k must be >= 1, got members={self.members}, k={self.k}")


@dataclass
class AuditFeeds:
    """Audited items plus what the audit should say about how they were obtained."""

    items: pd.DataFrame  # FEED_COLUMNS (+ score, path for served feeds)
    source: Source
    requests: int
    fallbacks: dict[str, int] = field(default_factory=dict)  # FeedResponse.fallbacks counted over requests
    cold_start: int = 0
    empty_feeds: int = 0
    model_versions: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "requests": self.requests,
            "items": len(self.items),
            "fallbacks": dict(self.fallbacks),
            "cold_start": self.cold_start,
            "empty_feeds": self.empty_feeds,
            "model_versions": {k: sorted(v) for k, v in self.model_versions.items()},
        }


def sample_members(member_ids: Sequence[int] | np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` distinct members drawn uniformly by ``seed`` from ``member_ids`` (sorted; every member when
    there are at most ``n``). The same ids and seed always give the same sample."""
    ids = np.unique(np.asarray(member_ids, dtype=np.int64))
    if n >= len(ids):
        return [int(m) for m in ids]
    picked = np.random.default_rng(seed).choice(ids, size=n, replace=False)
    return [int(m) for m in np.sort(picked)]


def feed_path(fallbacks: Sequence[str], retrieval_version: str | None) -> str:
    """ "popular" when the candidates came from the recent-popular fallback, else "personalized"."""
    if retrieval_version is None or POPULAR_FALLBACKS & set(fallbacks):
        return "popular"
    return "personalized"


def _settings(paths: FeedPaths, overrides: dict[str, Any]) -> tuple[Any, list[str]]:
    from serving.settings import ServingSettings

    notes = []
    known = set(ServingSettings.model_fields)
    wanted: dict[str, Any] = {k: v for k, v in NO_LOGGING.items() if k in known}
    if "timeouts_ms" in known:
        wanted["timeouts_ms"] = dict.fromkeys(STAGES, AUDIT_STAGE_BUDGET_MS)
        notes.append(
            f"every stage budget raised to {AUDIT_STAGE_BUDGET_MS / 1000:.0f} s for the audit: the feeds are "
            "the model's, not a busy machine's timeouts (fallbacks taken are counted in details.feeds)"
        )
    wanted |= overrides
    if not set(NO_LOGGING) & known:
        notes.append(
            "the service has no switch for impression logging: the audit's served feeds were logged to "
            "raw_impressions like any other feed"
        )
    else:
        notes.append("impression logging switched off for the audit's requests (nobody saw these feeds)")
    return ServingSettings(home=paths.home, **wanted), notes


def serve_feeds(
    paths: FeedPaths,
    members: Sequence[int],
    cfg: FeedSampleConfig,
    *,
    settings_overrides: dict[str, Any] | None = None,
) -> AuditFeeds:
    """Ask the real service (in-process) for a feed of ``cfg.k`` posts for each of ``members``."""
    from serving.pipeline import FeedService
    from serving.schemas import FeedRequest

    settings, notes = _settings(paths, dict(settings_overrides or {}))
    rows: list[tuple[str, int, int, int, int, float, str]] = []
    fallbacks: Counter[str] = Counter()
    versions: dict[str, set[str]] = {}
    cold = empty = 0
    with FeedService.open(settings) as svc:
        for member_id in members:
            resp = svc.feed(FeedRequest(member_id=member_id, k=cfg.k, device_type=cfg.device_type))
            fallbacks.update(resp.fallbacks)
            cold += int(resp.cold_start)
            empty += int(not resp.items)
            for name, version in resp.model_versions.items():
                versions.setdefault(name, set()).add(str(version))
            path = feed_path(resp.fallbacks, resp.model_versions.get("retrieval"))
            # positions from the response order (0-based, as raw_impressions.position)
            rows += [
                (resp.request_id, member_id, i, item.post_id, item.author_id, item.score, path)
                for i, item in enumerate(resp.items)
            ]
    items = pd.DataFrame(rows, columns=[*FEED_COLUMNS, "score", "path"])
    items = items.astype(
        {"member_id": "int64", "position": "int64", "post_id": "int64", "author_id": "int64"}
    )
    return AuditFeeds(
        items=items,
        source="served",
        requests=len(members),
        fallbacks=dict(sorted(fallbacks.items())),
        cold_start=cold,
        empty_feeds=empty,
        model_versions={k: sorted(v) for k, v in versions.items()},
        notes=notes,
    )


def logged_feeds(
    paths: FeedPaths, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> AuditFeeds:
    """Served impressions already logged to raw_impressions (non-null request_id), in [since, until)."""
    from pipelines import delta_io
    from pipelines.audit.lake import posts as read_posts

    cols = ["request_id", "member_id", "post_id", "position", "event_timestamp"]
    imp = delta_io.read(paths.table("raw_impressions"), columns=cols).to_pandas()
    imp = imp[imp["request_id"].notna()]
    if since is not None:
        imp = imp[imp["event_timestamp"] >= pd.Timestamp(since)]
    if until is not None:
        imp = imp[imp["event_timestamp"] < pd.Timestamp(until)]
    if imp.empty:
        window = f" in [{since}, {until})" if since or until else ""
        raise NoLoggedFeedsError(
            f"raw_impressions has no served impressions (non-null request_id){window}: serve feeds first, "
            "or audit with --source served"
        )
    authors = read_posts(paths).drop_duplicates("post_id").set_index("post_id")["author_id"]
    imp = imp.assign(author_id=imp["post_id"].map(authors))
    unknown = int(imp["author_id"].isna().sum())
    imp = imp[imp["author_id"].notna()].astype({"author_id": "int64", "position": "int64"})
    notes = [f"logged served impressions from raw_impressions ({len(imp)} rows)"]
    if unknown:
        notes.append(f"{unknown} logged impressions of posts missing from raw_posts were left out")
    return AuditFeeds(
        items=imp[list(FEED_COLUMNS)].reset_index(drop=True),
        source="logged",
        requests=int(imp["request_id"].nunique()),
        notes=notes,
    )
