"""The dual encoder's training set: (member, time) anchors with a positive, hard and easy negatives, the
member's features as of the anchor (Feast point-in-time joins) and every post the anchors mention as of their
snapshot.

Layout under ``<home>/data/training/retrieval/<name>/``::

    train/anchors.parquet  validation/anchors.parquet  test/anchors.parquet
    posts.parquet          one row per (post_id, as_of): PostFeatures fields, author_id, created_at
    post_catalog.parquet   every known post (post_id, author_id, created_at): the live-post candidate sets
    build_report.json      config, split windows, counts per skip reason, anchors per split, seconds

Rules (DESIGN.md):

* An anchor is an engaged impression (click, long_dwell, like, comment or share) of post p by member m at t.
  Only the member's first engagement with p counts (a repeat would be in the member's own history), and at
  most ``max_anchors_per_member_day`` per (member, UTC day), chosen at random by seed, so heavy users do not
  dominate the set. ``anchor_id`` is the positive impression's ``event_id`` (stable across builds).
* ``as_of`` is the feature snapshot an anchor sees: the UTC midnight before ``anchor_time``. Member features
  are Feast point-in-time rows at ``anchor_time``; member_history's rows sit at snapshots, so its engaged post
  ids are those before ``as_of``. ``all_history_post_ids`` (the ablation) is every impression before the same
  ``as_of``, newest last, capped.
* Hard negatives: posts impressed to m in the same session as p (when the session has none: the same day),
  live at t, never engaged by m up to t, never p. Easy negatives: random posts live at t (created in the
  ``live_days`` before t), never engaged by m up to t, not p and not a hard negative.
* Splits by anchor day: the last ``test_days`` days of the data (ending at the last impression's day, so the
  window is a property of the data set, not of the run) are test, the ``validation_days`` before validation,
  the rest train.

Everything is pandas/numpy over whole columns (no Python loop over impressions); Feast (DuckDB offline store)
does the point-in-time joins.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.schemas import ENGAGED_LABELS, TS

if TYPE_CHECKING:
    import pandas as pd

    from feed.config import FeedPaths
    from training.prompts import MemberFeatures, PostFeatures

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
DAY = dt.timedelta(days=1)
US_PER_DAY = 86_400_000_000

MEMBER_PROFILE_FEATURES: tuple[str, ...] = (
    "headline",
    "current_role",
    "industry",
    "skills",
    "education",
    "work_history",
)
MEMBER_COLUMNS: tuple[str, ...] = tuple(f"member_profile__{f}" for f in MEMBER_PROFILE_FEATURES)

# posts.parquet column (a PostFeatures field) → the retrieval_post_v1 feature that carries it.
POST_FEATURE_COLUMNS: Mapping[str, str] = {
    "format": "post_content__format",
    "text": "post_content__text",
    "article_title": "post_content__article_title",
    "article_domain": "post_content__article_domain",
    "topic": "post_content__topic",
    "views": "post_engagement__views",
    "likes": "post_engagement__likes",
    "comments": "post_engagement__comments",
    "shares": "post_engagement__shares",
    "view_percentile": "post_engagement__view_percentile",
    "like_percentile": "post_engagement__like_percentile",
    "comment_percentile": "post_engagement__comment_percentile",
    "share_percentile": "post_engagement__share_percentile",
    "followers": "author_stats__followers",
    "follower_percentile": "author_stats__follower_percentile",
}
AUTHOR_COLUMNS: tuple[str, ...] = (
    "author_headline",
    "author_current_role",
    "author_company",
    "author_industry",
)
TEXT_POST_COLUMNS: tuple[str, ...] = ("format", "text", "article_title", "article_domain", "topic")
INT_POST_COLUMNS: tuple[str, ...] = tuple(c for c in POST_FEATURE_COLUMNS if c not in TEXT_POST_COLUMNS)

ID_LIST = pa.list_(pa.int64())
ANCHOR_SCHEMA = pa.schema(
    [
        pa.field("anchor_id", pa.int64(), nullable=False),
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("anchor_time", TS, nullable=False),
        pa.field("as_of", TS, nullable=False),  # snapshot the anchor's features come from (midnight before)
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("positive_post_id", pa.int64(), nullable=False),
        pa.field("hard_negative_post_ids", ID_LIST),
        pa.field("hard_negative_source", pa.string()),  # "session" | "day" | "none"
        pa.field("easy_negative_post_ids", ID_LIST),
        pa.field("member_profile__headline", pa.string()),
        pa.field("member_profile__current_role", pa.string()),
        pa.field("member_profile__industry", pa.string()),
        pa.field("member_profile__skills", pa.list_(pa.string())),
        pa.field("member_profile__education", pa.list_(pa.string())),
        pa.field("member_profile__work_history", pa.list_(pa.string())),
        pa.field("engaged_history_post_ids", ID_LIST),
        pa.field("all_history_post_ids", ID_LIST),
        pa.field("is_cold_start", pa.bool_(), nullable=False),
    ]
)
POST_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("as_of", TS, nullable=False),
        pa.field("author_id", pa.int64(), nullable=False),
        pa.field("created_at", TS, nullable=False),
        *[pa.field(c, pa.string()) for c in TEXT_POST_COLUMNS],
        *[pa.field(c, pa.string()) for c in AUTHOR_COLUMNS],
        *[pa.field(c, pa.int64()) for c in INT_POST_COLUMNS],
    ]
)
CATALOG_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("author_id", pa.int64(), nullable=False),
        pa.field("created_at", TS, nullable=False),
    ]
)


class RetrievalSetError(ValueError):
    """The set cannot be built (missing tables, no anchors) or read (missing files, unknown ids)."""


@dataclass(frozen=True)
class RetrievalSetConfig:
    """How anchors and negatives are drawn. Everything random is drawn from ``seed``."""

    name: str = "default"
    k_hard: int = 2  # hard negatives per anchor, at most (DESIGN.md rule; fewer when the session has fewer)
    n_easy: int = 4  # random easy negatives per anchor
    seed: int = 0
    test_days: int = 7
    validation_days: int = 7
    # Heavy users log 10-100x the sessions of the median member (synthetic activity is lognormal, sd 1.8):
    # without a cap they would dominate the loss.
    max_anchors_per_member_day: int = 4
    live_days: int = 28  # a post is live for 28 days after creation (= the percentile cohort)
    # The all-impressions ablation list; long enough that it keeps every engaged item of the (256-capped)
    # engaged list for all but the heaviest users — the prompt's token budget does the real truncation.
    all_history_cap: int = 512
    # Also drop, as a hard negative, a post the member engaged later in the same session/day window: by the
    # rule's letter it is a negative at t, but a post engaged minutes later is a positive that came late.
    exclude_window_engaged: bool = True
    # Eval candidates: validation/test days get every post live during the day in posts.parquet.
    eval_candidates: bool = True
    feast_variant: str = "local"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise RetrievalSetError(f"set name must be a plain folder name, got {self.name!r}")
        for name in ("k_hard", "n_easy"):
            if getattr(self, name) < 0:
                raise RetrievalSetError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("test_days", "validation_days", "max_anchors_per_member_day", "live_days"):
            if getattr(self, name) < 1:
                raise RetrievalSetError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.all_history_cap < 0:
            raise RetrievalSetError(f"all_history_cap must be >= 0, got {self.all_history_cap}")


@dataclass(frozen=True)
class SplitWindows:
    """Day boundaries of the splits (UTC midnights): train < validation_start <= validation < test_start."""

    first_snapshot: dt.datetime  # the day after the first impression: the first time features exist
    validation_start: dt.datetime
    test_start: dt.datetime
    end: dt.datetime  # the midnight after the last impression

    def split_of(self, as_of: pd.Series) -> pd.Series:
        import pandas as pd

        out = pd.Series("train", index=as_of.index, dtype=object)
        out[as_of >= self.validation_start] = "validation"
        out[as_of >= self.test_start] = "test"
        return out


def set_dir(paths: FeedPaths, name: str) -> Path:
    """Where the set ``name`` lives."""
    return paths.data / "training" / "retrieval" / name


class SplitDays(Protocol):
    """What the split rule reads from a set's config (the retrieval and the ranking sets share the rule)."""

    test_days: int
    validation_days: int


def split_windows(first: dt.datetime, last: dt.datetime, cfg: SplitDays) -> SplitWindows:
    """Windows from the data's first and last impression: the test window is fixed per data set."""
    end = _midnight(last) + DAY
    test_start = end - cfg.test_days * DAY
    validation_start = test_start - cfg.validation_days * DAY
    return SplitWindows(_midnight(first) + DAY, validation_start, test_start, end)


def _midnight(ts: dt.datetime) -> dt.datetime:
    ts = ts.astimezone(dt.UTC)
    return dt.datetime(ts.year, ts.month, ts.day, tzinfo=dt.UTC)


# --- build


@dataclass
class BuildState:
    """Mutable state of one build (local to :func:`build_retrieval_set`, never module level)."""

    cfg: RetrievalSetConfig
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)


def build_retrieval_set(paths: FeedPaths, cfg: RetrievalSetConfig) -> Path:
    """Build the set ``cfg.name`` from raw_impressions, the feature tables and Feast (applied for ``paths``);
    replace any previous set of that name. Returns the set's folder."""
    from pipelines.feature_store import apply

    began = time.perf_counter()
    state = BuildState(cfg)
    # Register the checked-out definitions first (idempotent): a registry applied by an older checkout would
    # lack features the services read now, and Feast would fail deep inside the join.
    apply(paths, cfg.feast_variant)
    impressions, catalog = load_events(paths, state.skipped)
    state.seconds["load"] = time.perf_counter() - began
    t0 = time.perf_counter()
    anchors, windows = draw_anchors(impressions, catalog, cfg, state.skipped)
    state.seconds["negatives"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    anchors = _attach_member_features(paths, anchors, catalog, state)
    anchors["all_history_post_ids"] = _all_history(anchors, impressions, cfg.all_history_cap)
    state.seconds["member_features"] = time.perf_counter() - t0
    if anchors.empty:
        raise RetrievalSetError(f"no anchors left after skipping: {dict(state.skipped)}")

    t0 = time.perf_counter()
    anchors["split"] = windows.split_of(anchors["as_of"])
    posts = post_features(paths, _needed_posts(anchors, catalog, cfg), catalog, state)
    state.seconds["post_features"] = time.perf_counter() - t0

    out = set_dir(paths, cfg.name)
    _write(out, anchors, posts, catalog)
    state.seconds["total"] = time.perf_counter() - began
    _write_report(out, anchors, posts, windows, state)
    log.info("retrieval set %s: %d anchors, %d posts", out, len(anchors), len(posts))
    return out


def load_events(paths: FeedPaths, skipped: Counter[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """raw_impressions (see :func:`prepare_impressions`) and the post catalog from post_content."""
    from pipelines import delta_io

    for table in ("raw_impressions", "post_content"):
        if not delta_io.exists(paths.table(table)):
            raise RetrievalSetError(
                f"Delta table {paths.table(table)} is missing; "
                "run `feed data ingest` and `feed features build` first"
            )
    columns = ["event_id", "member_id", "post_id", "event_timestamp", "session_id", *ENGAGED_LABELS]
    imp = delta_io.read(paths.table("raw_impressions"), columns=columns).to_pandas()
    if imp.empty:
        raise RetrievalSetError(f"{paths.table('raw_impressions')} has no rows")
    catalog = delta_io.read(paths.table("post_content"), columns=["post_id", "author_id", "created_at"])
    catalog = post_catalog(catalog.to_pandas())
    return prepare_impressions(imp, catalog, skipped), catalog


def post_catalog(posts: pd.DataFrame) -> pd.DataFrame:
    """(post_id, author_id, created_at), one row per post, sorted by creation (binary search by time)."""
    return (
        posts[["post_id", "author_id", "created_at"]]
        .drop_duplicates("post_id")
        .sort_values(["created_at", "post_id"], kind="stable")
        .reset_index(drop=True)
    )


IMPRESSION_COLUMNS: tuple[str, ...] = (
    "event_id",
    "member_id",
    "post_id",
    "event_timestamp",
    "session_id",
    *ENGAGED_LABELS,
)


def prepare_impressions(imp: pd.DataFrame, catalog: pd.DataFrame, skipped: Counter[str]) -> pd.DataFrame:
    """Impressions with ``engaged`` (DESIGN.md labels) and ``as_of`` (their UTC day); those of posts not in
    the catalog are dropped (counted as ``impression_unknown_post``); ordered by member, time, event_id."""
    missing = [c for c in IMPRESSION_COLUMNS if c not in imp.columns]
    if missing:
        raise RetrievalSetError(f"impressions lack column(s) {missing}")
    imp = imp.copy()
    imp["engaged"] = imp[list(ENGAGED_LABELS)].max(axis=1).astype("int8")
    imp = imp.drop(columns=list(ENGAGED_LABELS))
    imp["as_of"] = imp["event_timestamp"].dt.floor("D")
    known = imp["post_id"].isin(catalog["post_id"])
    skipped["impression_unknown_post"] += int((~known).sum())
    imp = imp[known].sort_values(["member_id", "event_timestamp", "event_id"], kind="stable")
    return imp.reset_index(drop=True)


def draw_anchors(
    imp: pd.DataFrame, catalog: pd.DataFrame, cfg: RetrievalSetConfig, skipped: Counter[str]
) -> tuple[pd.DataFrame, SplitWindows]:
    """Anchors with their hard and easy negatives (no features yet) and the split windows of the data.
    ``imp`` comes from :func:`prepare_impressions`; deterministic given ``cfg.seed``."""
    if imp.empty:
        raise RetrievalSetError("no impressions of known posts")
    windows = split_windows(
        imp["event_timestamp"].min().to_pydatetime(), imp["event_timestamp"].max().to_pydatetime(), cfg
    )
    anchors = _anchors(imp, windows, cfg, skipped)
    first_engaged = _first_engaged(imp)
    anchors = _attach_hard_negatives(anchors, imp, catalog, first_engaged, cfg)
    anchors["easy_negative_post_ids"] = _easy_negatives(anchors, catalog, first_engaged, cfg)
    return anchors, windows


def _anchors(
    imp: pd.DataFrame, windows: SplitWindows, cfg: RetrievalSetConfig, skipped: Counter[str]
) -> pd.DataFrame:
    """First engagements of (member, post) at or after the first snapshot, capped per member-day."""
    engaged = imp[imp["engaged"] == 1]
    # Only the first engagement of each (member, post): a repeat's post is already in the member's history.
    first = ~engaged.duplicated(["member_id", "post_id"], keep="first")
    skipped["repeat_engagement"] += int((~first).sum())
    engaged = engaged[first]
    early = engaged["event_timestamp"] < windows.first_snapshot
    skipped["before_first_snapshot"] += int(early.sum())
    anchors = engaged[~early].rename(
        columns={"event_id": "anchor_id", "event_timestamp": "anchor_time", "post_id": "positive_post_id"}
    )
    anchors = anchors.sort_values("anchor_id", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng([cfg.seed, 1])
    rank = (
        anchors.assign(_key=rng.random(len(anchors)))
        .groupby(["member_id", "as_of"])["_key"]
        .rank(method="first")
    )
    over = rank > cfg.max_anchors_per_member_day
    skipped["over_member_day_cap"] += int(over.sum())
    return anchors[~over].drop(columns="engaged").reset_index(drop=True)


def _first_engaged(imp: pd.DataFrame) -> pd.DataFrame:
    """(member_id, post_id, first_engaged): when the member first engaged the post."""
    engaged = imp[imp["engaged"] == 1]
    return (
        engaged.groupby(["member_id", "post_id"], as_index=False)["event_timestamp"]
        .min()
        .rename(columns={"event_timestamp": "first_engaged"})
    )


def _eligible(cand: pd.DataFrame, catalog: pd.DataFrame, first_engaged: pd.DataFrame) -> pd.DataFrame:
    """Keep candidate negatives (anchor_id, member_id, anchor_time, positive_post_id, post_id) that are not
    the positive, were live at the anchor (created at or before it) and not engaged by the member up to it."""
    cand = cand[cand["post_id"] != cand["positive_post_id"]]
    cand = cand.merge(catalog[["post_id", "created_at"]], on="post_id", how="inner")
    cand = cand[cand["created_at"] <= cand["anchor_time"]]
    cand = cand.merge(first_engaged, on=["member_id", "post_id"], how="left")
    engaged_before = cand["first_engaged"] <= cand["anchor_time"]  # NaT compares False: never engaged
    return cand[~engaged_before].drop(columns=["created_at", "first_engaged"])


def _window_candidates(
    anchors: pd.DataFrame,
    imp: pd.DataFrame,
    keys: list[str],
    catalog: pd.DataFrame,
    first_engaged: pd.DataFrame,
    exclude_window_engaged: bool,
) -> pd.DataFrame:
    """(anchor_id, post_id) hard-negative candidates among the member's impressions in the same ``keys``
    window (session, or day) as the anchor."""
    base = anchors[["anchor_id", "member_id", "anchor_time", "positive_post_id", *keys]]
    cand = base.merge(imp[["member_id", *keys, "post_id", "engaged"]], on=["member_id", *keys])
    if exclude_window_engaged:
        cand = cand[cand.groupby(["anchor_id", "post_id"])["engaged"].transform("max") == 0]
    cand = cand.drop_duplicates(["anchor_id", "post_id"]).drop(columns=["engaged", *keys])
    return _eligible(cand, catalog, first_engaged)[["anchor_id", "post_id"]]


def _attach_hard_negatives(
    anchors: pd.DataFrame,
    imp: pd.DataFrame,
    catalog: pd.DataFrame,
    first_engaged: pd.DataFrame,
    cfg: RetrievalSetConfig,
) -> pd.DataFrame:
    """``hard_negative_post_ids`` (up to k_hard, random by seed) and ``hard_negative_source``."""
    import pandas as pd

    anchors = anchors.copy()
    anchors["hard_negative_source"] = "none"
    if cfg.k_hard == 0:
        anchors["hard_negative_post_ids"] = [[] for _ in range(len(anchors))]
        return anchors
    session = _window_candidates(
        anchors, imp, ["session_id"], catalog, first_engaged, cfg.exclude_window_engaged
    )
    has_session = anchors["anchor_id"].isin(session["anchor_id"])
    day = _window_candidates(
        anchors[~has_session], imp, ["as_of"], catalog, first_engaged, cfg.exclude_window_engaged
    )
    anchors.loc[has_session, "hard_negative_source"] = "session"
    anchors.loc[anchors["anchor_id"].isin(day["anchor_id"]), "hard_negative_source"] = "day"
    cand = pd.concat([session, day], ignore_index=True).sort_values(["anchor_id", "post_id"], kind="stable")
    chosen = _take_random(cand, cfg.k_hard, np.random.default_rng([cfg.seed, 2]))
    anchors["hard_negative_post_ids"] = _lists_by_anchor(anchors["anchor_id"], chosen)
    return anchors


def _take_random(cand: pd.DataFrame, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """Up to ``k`` rows per anchor, uniformly at random (deterministic: input sorted by anchor, post)."""
    cand = cand.assign(_key=rng.random(len(cand))).sort_values(["anchor_id", "_key"], kind="stable")
    return cand[cand.groupby("anchor_id").cumcount() < k]


def _lists_by_anchor(anchor_ids: pd.Series, rows: pd.DataFrame) -> list[list[int]]:
    """The post_ids of ``rows`` grouped per anchor, in row order, aligned with ``anchor_ids``."""
    grouped = rows.groupby("anchor_id", sort=False)["post_id"].agg(list)
    return [list(map(int, v)) for v in grouped.reindex(anchor_ids.to_numpy()).apply(_as_list)]


def _as_list(value: Any) -> list[int]:
    return value if isinstance(value, list) else []


def _easy_negatives(
    anchors: pd.DataFrame, catalog: pd.DataFrame, first_engaged: pd.DataFrame, cfg: RetrievalSetConfig
) -> list[list[int]]:
    """``n_easy`` random posts live at each anchor (created in [t - live_days, t)), never engaged by the
    member up to t, not the positive, not a hard negative. Oversampled in one vectorised draw; an anchor
    whose live window is too small keeps fewer."""

    if cfg.n_easy == 0 or anchors.empty:
        return [[] for _ in range(len(anchors))]
    created = catalog["created_at"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    post_ids = catalog["post_id"].to_numpy()
    t = anchors["anchor_time"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    lo = np.searchsorted(created, t - cfg.live_days * US_PER_DAY, side="left")
    hi = np.searchsorted(created, t, side="left")  # created strictly before t
    draws = max(4 * cfg.n_easy, cfg.n_easy + 16)
    rng = np.random.default_rng([cfg.seed, 3])
    pick = lo[:, None] + np.floor(rng.random((len(anchors), draws)) * (hi - lo)[:, None]).astype(np.int64)
    valid = (hi > lo)[:, None] & np.ones((1, draws), dtype=bool)
    rows = np.repeat(np.arange(len(anchors)), draws)[valid.ravel()]
    cand = anchors.iloc[rows][["anchor_id", "member_id", "anchor_time", "positive_post_id"]].reset_index(
        drop=True
    )
    cand["post_id"] = post_ids[pick.ravel()[valid.ravel()]]
    cand["_draw"] = np.tile(np.arange(draws), len(anchors))[valid.ravel()]
    hard = anchors[["anchor_id", "hard_negative_post_ids"]].explode("hard_negative_post_ids").dropna()
    hard = hard.rename(columns={"hard_negative_post_ids": "post_id"}).astype({"post_id": "int64"})
    cand = cand.merge(hard.assign(_hard=True), on=["anchor_id", "post_id"], how="left")
    cand = cand[cand["_hard"].isna()].drop(columns="_hard")
    cand = _eligible(cand, catalog, first_engaged)
    cand = cand.drop_duplicates(["anchor_id", "post_id"]).sort_values(["anchor_id", "_draw"], kind="stable")
    chosen = cand[cand.groupby("anchor_id").cumcount() < cfg.n_easy]
    return _lists_by_anchor(anchors["anchor_id"], chosen)


def _attach_member_features(
    paths: FeedPaths, anchors: pd.DataFrame, catalog: pd.DataFrame, state: BuildState
) -> pd.DataFrame:
    """member_profile__* and engaged history as of each anchor (Feast PIT at anchor_time). Anchors of members
    without a profile row by then are skipped, history ids of unknown posts dropped (both counted)."""
    from pipelines import delta_io
    from pipelines.feature_store import historical_features

    first_profile = (
        delta_io.read(paths.table("member_profile"), columns=["member_id", "event_timestamp"])
        .to_pandas()
        .groupby("member_id")["event_timestamp"]
        .min()
    )
    since = anchors["member_id"].map(first_profile)
    unknown = since.isna()
    late = ~unknown & (since > anchors["anchor_time"])
    state.skipped["unknown_member"] += int(unknown.sum())
    state.skipped["member_without_profile_at_anchor"] += int(late.sum())
    anchors = anchors[~unknown & ~late].reset_index(drop=True)
    if anchors.empty:
        return anchors
    entity = (
        anchors[["member_id", "anchor_time"]]
        .drop_duplicates()
        .rename(columns={"anchor_time": "event_timestamp"})
    )
    features = [f"member_profile:{f}" for f in MEMBER_PROFILE_FEATURES] + ["member_history:engaged_post_ids"]
    rows = historical_features(paths, entity, features, variant=state.cfg.feast_variant)
    rows = rows.rename(columns={"event_timestamp": "anchor_time"})
    anchors = anchors.merge(rows, on=["member_id", "anchor_time"], how="left", validate="many_to_one")
    for column in MEMBER_COLUMNS[3:]:  # list features: None → []
        anchors[column] = anchors[column].apply(id_or_str_list)
    known = set(catalog["post_id"].tolist())
    history = anchors.pop("member_history__engaged_post_ids").apply(id_or_str_list)
    kept = history.apply(lambda ids: [i for i in ids if i in known])
    state.skipped["history_item_unknown_post"] += int((history.str.len() - kept.str.len()).sum())
    anchors["engaged_history_post_ids"] = kept
    anchors["is_cold_start"] = kept.str.len() == 0
    return anchors


def id_or_str_list(value: Any) -> list[Any]:
    """A Feast list feature (list, numpy array, or missing) as a plain list of Python values."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [v.item() if isinstance(v, np.generic) else v for v in value]


def _all_history(anchors: pd.DataFrame, imp: pd.DataFrame, cap: int) -> list[list[int]]:
    """Per anchor: the post ids of the member's last ``cap`` impressions before ``as_of``, oldest first.

    ``imp`` is sorted by (member_id, event_timestamp, event_id); a composite (member rank, time) key makes
    "the member's impressions before as_of" one binary search in the flat arrays."""
    if anchors.empty:
        return []
    ts = imp["event_timestamp"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    origin = int(ts.min())
    span = int(ts.max()) - origin + 2 * US_PER_DAY  # room for an as_of a day past the last impression
    members, codes = np.unique(imp["member_id"].to_numpy(), return_inverse=True)
    keys = codes.astype(np.int64) * span + (ts - origin)
    post_ids = imp["post_id"].to_numpy()
    code = np.searchsorted(members, anchors["member_id"].to_numpy())
    as_of = anchors["as_of"].to_numpy(dtype="datetime64[us]").astype(np.int64) - origin
    end = np.searchsorted(keys, code * span + np.maximum(as_of, 0), side="left")
    begin = np.maximum(np.searchsorted(keys, code * span, side="left"), end - cap)
    return [post_ids[b:e].tolist() for b, e in zip(begin, end, strict=True)]


def _needed_posts(anchors: pd.DataFrame, catalog: pd.DataFrame, cfg: RetrievalSetConfig) -> pd.DataFrame:
    """Distinct (post_id, as_of) the anchors mention, plus, for validation/test days, every post live at some
    moment of the day (the evaluation candidates)."""
    import pandas as pd

    parts = [anchors[["positive_post_id", "as_of"]].rename(columns={"positive_post_id": "post_id"})]
    for column in (
        "hard_negative_post_ids",
        "easy_negative_post_ids",
        "engaged_history_post_ids",
        "all_history_post_ids",
    ):
        lists = pa.array(anchors[column].tolist(), type=ID_LIST)
        parents = pc.list_parent_indices(lists).to_numpy()
        parts.append(
            pd.DataFrame(
                {"post_id": lists.flatten().to_numpy(), "as_of": anchors["as_of"].to_numpy()[parents]}
            )
        )
    if cfg.eval_candidates:
        created = catalog["created_at"]
        for as_of in sorted(anchors.loc[anchors["split"] != "train", "as_of"].unique()):
            live = catalog.loc[(created >= as_of - cfg.live_days * DAY) & (created < as_of + DAY), "post_id"]
            parts.append(pd.DataFrame({"post_id": live.to_numpy(), "as_of": as_of}))
    needed = pd.concat(parts, ignore_index=True)
    needed["as_of"] = pd.to_datetime(needed["as_of"], utc=True)
    return needed.drop_duplicates().sort_values(["as_of", "post_id"], kind="stable").reset_index(drop=True)


def post_features(
    paths: FeedPaths, needed: pd.DataFrame, catalog: pd.DataFrame, state: BuildState
) -> pd.DataFrame:
    """retrieval_post_v1 + the author's member_profile for each (post_id, as_of).

    The lookup time is max(as_of, created_at): a post created during the anchor's day has no snapshot row yet
    (no engagement percentiles: they stay missing) but its content exists from created_at on. Snapshot tables
    only change at midnights, so for every other feature this is the same as looking up at as_of."""
    from pipelines.feature_store import historical_features
    from training.prompts.features import current_company

    entity = needed.merge(catalog, on="post_id", how="inner")
    entity["event_timestamp"] = entity[["as_of", "created_at"]].max(axis=1)
    rows = historical_features(
        paths,
        entity[["post_id", "author_id", "event_timestamp", "as_of"]],
        "retrieval_post_v1",
        variant=state.cfg.feast_variant,
    )
    author_entity = entity[["post_id", "as_of", "author_id", "event_timestamp"]].rename(
        columns={"author_id": "member_id"}
    )
    author_features = [
        f"member_profile:{f}" for f in ("headline", "current_role", "industry", "work_history")
    ]
    authors = historical_features(paths, author_entity, author_features, variant=state.cfg.feast_variant)
    authors["author_company"] = authors["member_profile__work_history"].apply(
        lambda wh: current_company(id_or_str_list(wh))
    )
    authors = authors.rename(
        columns={
            "member_profile__headline": "author_headline",
            "member_profile__current_role": "author_current_role",
            "member_profile__industry": "author_industry",
        }
    )[["post_id", "as_of", *AUTHOR_COLUMNS]]
    posts = rows.rename(columns={v: k for k, v in POST_FEATURE_COLUMNS.items()})
    posts = posts.merge(catalog[["post_id", "created_at"]], on="post_id").merge(
        authors, on=["post_id", "as_of"], how="left", validate="one_to_one"
    )
    missing = posts["text"].isna() & posts["format"].isna()
    state.skipped["post_without_content"] += int(missing.sum())
    columns = [f.name for f in POST_SCHEMA]
    return posts[~missing][columns].sort_values(["as_of", "post_id"], kind="stable").reset_index(drop=True)


def _write(out: Path, anchors: pd.DataFrame, posts: pd.DataFrame, catalog: pd.DataFrame) -> None:
    import shutil

    import pyarrow.parquet as pq

    if out.exists():
        shutil.rmtree(out)
    for split in SPLITS:
        part = anchors[anchors["split"] == split].sort_values(["anchor_time", "anchor_id"], kind="stable")
        (out / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(to_arrow(part, ANCHOR_SCHEMA), out / split / "anchors.parquet")
    pq.write_table(to_arrow(posts, POST_SCHEMA), out / "posts.parquet")
    pq.write_table(to_arrow(catalog, CATALOG_SCHEMA), out / "post_catalog.parquet")


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    from pipelines.delta_io import conform

    table = pa.Table.from_pandas(frame[schema.names], preserve_index=False)
    return conform(table, schema, name="retrieval set")


def _write_report(
    out: Path, anchors: pd.DataFrame, posts: pd.DataFrame, windows: SplitWindows, state: BuildState
) -> None:
    hard_counts = anchors["hard_negative_post_ids"].str.len()
    easy_counts = anchors["easy_negative_post_ids"].str.len()
    report = {
        "config": asdict(state.cfg),
        "windows": {k: v.isoformat() for k, v in asdict(windows).items()},
        "anchors_per_split": {s: int((anchors["split"] == s).sum()) for s in SPLITS},
        "cold_start_per_split": {
            s: int(anchors.loc[anchors["split"] == s, "is_cold_start"].sum()) for s in SPLITS
        },
        "members": int(anchors["member_id"].nunique()),
        "skipped": dict(sorted(state.skipped.items())),
        "hard_negatives_per_anchor": {str(k): int(v) for k, v in sorted(Counter(hard_counts).items())},
        "hard_negative_source": {
            k: int(v) for k, v in anchors["hard_negative_source"].value_counts().items()
        },
        "easy_negatives_per_anchor": {str(k): int(v) for k, v in sorted(Counter(easy_counts).items())},
        "history_length_mean": {
            "engaged": float(anchors["engaged_history_post_ids"].str.len().mean()),
            "all": float(anchors["all_history_post_ids"].str.len().mean()),
        },
        "post_rows": len(posts),
        "seconds": {k: round(v, 2) for k, v in state.seconds.items()},
    }
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")


# --- read


class RetrievalSet:
    """A built set: anchors per split, and posts/members as the prompt library's dataclasses."""

    def __init__(self, path: Path, report: Mapping[str, Any], posts: pa.Table, catalog: pd.DataFrame) -> None:
        self.path = path
        self.report = report
        self._posts = posts
        self._catalog = catalog
        as_of = posts.column("as_of").cast(pa.int64()).to_numpy()
        ids = posts.column("post_id").to_numpy()
        self._index = {(int(p), int(a)): i for i, (p, a) in enumerate(zip(ids, as_of, strict=True))}
        self._anchors: dict[str, pd.DataFrame] = {}
        self.live_days = int(report["config"]["live_days"])

    @classmethod
    def load(cls, path: Path | str) -> RetrievalSet:
        import pyarrow.parquet as pq

        path = Path(path)
        files = [path / "build_report.json", path / "posts.parquet", path / "post_catalog.parquet"]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise RetrievalSetError(f"{path} is not a retrieval set: missing {missing}")
        report = json.loads(files[0].read_text())
        # Text repeats once per as_of; dictionary-encoded columns keep one copy in memory.
        posts = pq.read_table(files[1], read_dictionary=["text", "article_title", "author_headline"])
        catalog = pq.read_table(files[2]).to_pandas()
        return cls(path, report, posts, catalog)

    def anchors(self, split: str) -> pd.DataFrame:
        """The split's anchors (cached), ordered by anchor_time."""
        import pyarrow.parquet as pq

        if split not in SPLITS:
            raise RetrievalSetError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split not in self._anchors:
            self._anchors[split] = pq.read_table(self.path / split / "anchors.parquet").to_pandas()
        return self._anchors[split]

    def post(self, post_id: int, as_of: dt.datetime | pd.Timestamp) -> PostFeatures:
        """The post's features as of the snapshot ``as_of`` (an anchor's ``as_of``)."""
        from training.prompts import PostFeatures

        key = (int(post_id), _to_us(as_of))
        i = self._index.get(key)
        if i is None:
            raise RetrievalSetError(f"post {post_id} as of {as_of} is not in {self.path / 'posts.parquet'}")
        row = {k: v[0] for k, v in self._posts.slice(i, 1).to_pydict().items()}
        return PostFeatures.from_feast_row(row)

    def member(self, anchor_row: Mapping[str, Any]) -> MemberFeatures:
        """The anchor's member profile as of its anchor_time."""
        from training.prompts import MemberFeatures

        return MemberFeatures.from_feast_row(dict(anchor_row))

    def history(
        self, anchor_row: Mapping[str, Any], variant: Literal["engaged", "all"] = "engaged"
    ) -> list[PostFeatures]:
        """The member's history as of the anchor's snapshot, oldest first (newest last)."""
        if variant not in ("engaged", "all"):
            raise RetrievalSetError(f"history variant must be 'engaged' or 'all', got {variant!r}")
        ids = anchor_row[f"{variant}_history_post_ids"]
        return [self.post(int(p), anchor_row["as_of"]) for p in ids]

    def live_posts(self, as_of: dt.datetime | pd.Timestamp) -> list[int]:
        """Posts live at ``as_of``: created before it, within ``live_days`` — the evaluation candidates.
        ``as_of`` may be a snapshot or an anchor_time; posts.parquet holds every post live at any moment of a
        validation/test day as of that day's snapshot (look them up with the anchor's ``as_of``)."""
        import pandas as pd

        at = pd.Timestamp(_to_us(as_of), unit="us", tz="UTC")
        created = self._catalog["created_at"]
        live = (created < at) & (created >= at - pd.Timedelta(days=self.live_days))
        return sorted(int(p) for p in self._catalog.loc[live, "post_id"])


def _to_us(ts: dt.datetime | pd.Timestamp | np.datetime64) -> int:
    """Microseconds since the epoch (UTC; a naive time is taken as UTC)."""
    import pandas as pd

    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1000)


def anchor_rows(frame: pd.DataFrame) -> Sequence[Mapping[str, Any]]:
    """The anchors as plain dicts (what :meth:`RetrievalSet.member` / :meth:`RetrievalSet.history` take)."""
    return frame.to_dict("records")
