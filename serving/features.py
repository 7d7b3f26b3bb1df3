"""The service's CPU feature stage: Feast online reads of a member and of posts, with a TTL cache for posts.

One :class:`OnlineFeatures` per process, built at start-up (resolving feature references against the
registry costs milliseconds; a read is sub-millisecond per row on SQLite). Post rows are shared by every
member's request, so they are cached for ``post_cache_ttl_s`` and refreshed in the background: at 20
requests/s × 500 candidates the store is read for the posts that changed, not for 10,000 rows a second.

Staleness: Feast's online store returns a row whatever its age. A member view whose served row is older than
the view's TTL at request time is treated as missing (``member_features_stale``), the rule the offline
point-in-time join applies, so serving sees what training would have seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from feed.config import FeedPaths
from serving.types import MemberOnline, PostTable

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

MEMBER_FEATURES: dict[str, tuple[str, ...]] = {
    "member_profile": ("headline", "current_role", "industry", "skills", "education", "work_history"),
    "member_history": ("engaged_post_ids", "history_length"),
    "member_affinity": ("top_author_ids", "top_author_scores", "top_topics", "top_topic_scores"),
    "member_embedding": ("embedding", "model_version"),
    "member_sequence": ("post_ids", "actions", "timestamps"),  # optional: read when the repo defines it
}
POST_FEATURES: dict[str, tuple[str, ...]] = {
    "post_content": ("author_id", "format", "text", "topic", "created_at"),
    "post_engagement": ("view_percentile", "like_percentile", "comment_percentile", "share_percentile"),
    "post_embedding": ("embedding", "model_version"),
}
AUTHOR_FEATURES: dict[str, tuple[str, ...]] = {"author_stats": ("follower_percentile",)}
REFRESH_BATCH = 100  # posts per background refresh read
REFRESH_PAUSE_S = 0.05
READ_LOCK_WAIT_S = 0.25  # longer than any healthy read (ms), shorter than the member stage's budget
PERCENTILES = ("view_percentile", "like_percentile", "comment_percentile", "share_percentile")


class FeatureStoreUnavailable(RuntimeError):
    """The online store could not be read (its file/server is gone, or the read failed)."""


def _refs(views: Mapping[str, Sequence[str]], present: set[str]) -> list[str]:
    return [f"{view}:{name}" for view, names in views.items() if view in present for name in names]


def _epoch(value: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if hasattr(value, "timestamp"):  # pandas Timestamp
        return float(value.timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _float(value: Any) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, float) and np.isnan(value):
        return []
    return list(value)


@dataclass(frozen=True)
class _PostRow:
    author_id: int
    format: str
    topic: str
    text: str
    created_at: float
    percentiles: tuple[float, float, float, float, float]  # view, like, comment, share, follower
    stamps: tuple[
        float, float, float
    ]  # event_timestamp of the post_content, post_engagement, author_stats rows
    embedding: np.ndarray | None
    embedding_version: str | None
    found: bool
    fetched: float


class _TTLCache:
    """A thread-safe LRU with a time limit per entry."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._data: OrderedDict[int, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_many(self, keys: Iterable[int], now: float, max_age: float | None = None) -> dict[int, Any]:
        limit = self.ttl_s if max_age is None else max_age
        out: dict[int, Any] = {}
        with self._lock:
            for key in keys:
                item = self._data.get(key)
                if item is not None and now - item[0] <= limit:
                    self._data.move_to_end(key)
                    out[key] = item[1]
            self.hits += len(out)
        return out

    def put_many(self, values: Mapping[int, Any], now: float) -> None:
        if self.size <= 0:
            return
        with self._lock:
            for key, value in values.items():
                self._data[key] = (now, value)
                self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def discard(self, keys: Iterable[int]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class PostVectors:
    """The promoted encoder's post vectors (``post_embeddings`` Delta snapshot) as one sorted id array and a
    matrix: the ranker reads hundreds of candidate and history vectors per request, a numpy gather instead of
    hundreds of Feast rows of 384 floats each. Posts embedded later by the nearline path are not in the
    snapshot; their vectors come from Feast's ``post_embedding`` view (the nearline push) instead."""

    def __init__(self, paths: FeedPaths, model_version: str) -> None:
        from serving.index.replica import load_post_snapshot

        ids, vecs, _, _ = load_post_snapshot(paths, model_version)
        order = np.argsort(ids, kind="stable")
        self.ids, self.vectors = ids[order], vecs[order].astype(np.float32)
        self.model_version = model_version
        self.dim = int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, post_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (N, D), found (N,)) for ``post_ids``; rows not found are zeros."""
        post_ids = np.asarray(post_ids, np.int64)
        out = np.zeros((len(post_ids), self.dim), np.float32)
        if not len(self.ids) or not len(post_ids):
            return out, np.zeros(len(post_ids), bool)
        pos = np.clip(np.searchsorted(self.ids, post_ids), 0, len(self.ids) - 1)
        found = self.ids[pos] == post_ids
        out[found] = self.vectors[pos[found]]
        return out, found


class OnlineFeatures:
    """Feast online reads for the request path."""

    def __init__(
        self,
        paths: FeedPaths,
        *,
        variant: str = "local",
        redis_connection: str | None = None,
        post_cache_ttl_s: float = 60.0,
        post_cache_size: int = 200_000,
    ) -> None:
        from pipelines import feature_store

        self.paths = paths
        try:
            self.fs: FeatureStore = feature_store.applied_store(
                paths, variant, redis_connection=redis_connection
            )
            views = {v.name: v for v in self.fs.list_feature_views()}
        except Exception as exc:  # the registry/online store itself cannot be opened
            raise FeatureStoreUnavailable(f"cannot open the Feast repo of {paths.home}: {exc}") from exc
        needed = {"member_profile", "member_history", "post_content"}
        missing = sorted(needed - set(views))
        if missing:
            raise FeatureStoreUnavailable(
                f"the Feast registry of {paths.home} has no view(s) {missing}; run `feed feast apply` and "
                "materialize the feature views first"
            )
        self.views = set(views)
        self.ttl_s = {name: v.ttl.total_seconds() if v.ttl else float("inf") for name, v in views.items()}
        ends = [v.most_recent_end_time for v in views.values() if v.most_recent_end_time is not None]
        self.materialized_until: dt.datetime | None = (
            max(e if e.tzinfo else e.replace(tzinfo=dt.UTC) for e in ends) if ends else None
        )
        self._member_refs = _refs(MEMBER_FEATURES, self.views)
        self._post_refs = _refs(POST_FEATURES, self.views)
        self._author_refs = _refs(AUTHOR_FEATURES, self.views)
        self.has_sequence = "member_sequence" in self.views
        self.posts_cache = _TTLCache(post_cache_size, post_cache_ttl_s)
        self.dim: int | None = None
        self.vectors: PostVectors | None = None  # set by the service once the encoder version is known
        self._read_lock = threading.Lock()  # one Feast read at a time (SQLite connection, registry cache)
        self._refresh: set[int] = set()
        self._refresh_lock = threading.Lock()
        self._refresh_wake = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_loop, name="post-refresh", daemon=True)
        self._refresher.start()

    def use_vectors(self, vectors: PostVectors) -> None:
        self.vectors = vectors
        self.dim = vectors.dim

    # --- raw reads

    def _read(self, refs: list[str], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        if not refs or not rows:
            return {}
        # A read stuck on a hung store holds the lock: give up instead of queueing every stage behind it.
        if not self._read_lock.acquire(timeout=READ_LOCK_WAIT_S):
            raise FeatureStoreUnavailable(
                f"Feast online store busy: the previous read has not returned for {READ_LOCK_WAIT_S} s"
            )
        try:
            response = self.fs.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
            return response.to_dict(include_event_timestamps=True)
        except Exception as exc:
            raise FeatureStoreUnavailable(f"Feast online read failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._read_lock.release()

    # --- members

    def member(self, member_id: int, request_ts: float) -> tuple[MemberOnline, list[str]]:
        """The member's features at ``request_ts``; the second value names views dropped as stale."""
        data = self._read(self._member_refs, [{"member_id": int(member_id)}])
        row = {k: v[0] for k, v in data.items()}
        stale: list[str] = []
        present: dict[str, dict[str, Any]] = {}  # view → its values, for the views served and fresh
        feature_ts: dict[str, float] = {}
        for view, names in MEMBER_FEATURES.items():
            if view not in self.views:
                continue
            values = {n: row.get(f"{view}__{n}") for n in names}
            if all(v is None for v in values.values()):
                continue
            ts = _epoch(row.get(f"{view}__{names[0]}__ts"))
            if np.isfinite(ts):
                feature_ts[view] = ts
                if request_ts - ts > self.ttl_s.get(view, float("inf")):
                    stale.append(view)
                    continue
            present[view] = values
        member = MemberOnline(member_id=int(member_id), found=bool(present), raw=row, feature_ts=feature_ts)
        for view, values in present.items():
            _FILL[view](member, values)
        return member, stale

    # --- posts

    def posts(
        self, post_ids: Sequence[int] | np.ndarray, *, request_ts: float | None = None, use_cache: bool = True
    ) -> PostTable:
        """Rows for ``post_ids`` in that order (duplicates allowed); unknown posts have ``found`` False.
        With ``request_ts``, values of rows older than their view's TTL at that time are missing (NaN, or
        not found for post_content), as in the offline point-in-time join.

        Cached rows younger than the TTL are served as they are; older ones are served too (at most ten TTLs
        old) while a background thread re-reads them — a request never waits for a refresh, only for posts
        it has never seen."""
        ids = np.asarray(post_ids, dtype=np.int64)
        now = time.monotonic()
        unique = list(dict.fromkeys(ids.tolist()))
        cached: dict[int, _PostRow] = {}
        if use_cache:
            cached = self.posts_cache.get_many(unique, now, max_age=10 * self.posts_cache.ttl_s)
            old = [p for p, row in cached.items() if now - row.fetched > self.posts_cache.ttl_s]
            if old:
                with self._refresh_lock:
                    self._refresh.update(old)
                self._refresh_wake.set()
        missing = [p for p in unique if p not in cached]
        if missing:
            fetched = self._fetch_posts(missing, now)
            self.posts_cache.put_many(fetched, now)
            self.posts_cache.misses += len(missing)
            cached.update(fetched)
        return self._table(ids, cached, request_ts)

    def _refresh_loop(self) -> None:
        while True:
            self._refresh_wake.wait()
            self._refresh_wake.clear()
            with self._refresh_lock:
                ids, self._refresh = sorted(self._refresh), set()
            # Small batches with a pause between them: a request's own reads (the member, new posts) wait
            # for at most one batch on the store, and the parsing (Python, under the GIL) does not stall the
            # request threads for the whole refresh at once.
            try:
                self._cache_posts(ids, REFRESH_BATCH, REFRESH_PAUSE_S)
            except Exception as exc:  # the store is down: keep serving the cached rows
                log.warning("post feature refresh failed: %s", exc)

    def prewarm(self, post_ids: Sequence[int] | np.ndarray, batch: int = 500) -> int:
        """Read ``post_ids`` into the cache (start-up), in batches; returns the rows cached."""
        ids = list(dict.fromkeys(int(p) for p in post_ids))
        self._cache_posts(ids, batch)
        return len(ids)

    def _cache_posts(self, ids: list[int], batch: int, pause_s: float = 0.0) -> None:
        for s in range(0, len(ids), batch):
            now = time.monotonic()
            self.posts_cache.put_many(self._fetch_posts(ids[s : s + batch], now), now)
            if pause_s:
                time.sleep(pause_s)

    def _fetch_posts(self, post_ids: list[int], now: float) -> dict[int, _PostRow]:
        data = self._read(self._post_refs, [{"post_id": p} for p in post_ids])
        authors = [int(a) if a is not None else 0 for a in data.get("post_content__author_id", [])]
        wanted = sorted({a for a in authors if a > 0})
        followers: dict[int, tuple[float, float]] = {}
        if wanted and self._author_refs:
            adata = self._read(self._author_refs, [{"author_id": a} for a in wanted])
            values = adata.get("author_stats__follower_percentile", [])
            stamps = adata.get("author_stats__follower_percentile__ts", [None] * len(values))
            for a, value, ts in zip(wanted, values, stamps, strict=True):
                followers[a] = (_float(value), _epoch(ts) if value is not None else float("nan"))
        out: dict[int, _PostRow] = {}
        for i, post_id in enumerate(post_ids):

            def col(name: str, i: int = i) -> Any:
                values = data.get(name)
                return values[i] if values is not None else None

            author = authors[i] if i < len(authors) else 0
            emb = col("post_embedding__embedding")
            version = col("post_embedding__model_version")
            vec: np.ndarray | None = None
            served = self.vectors.model_version if self.vectors is not None else None
            if emb is not None and len(emb) and (served is None or version == served):
                vec = np.asarray(emb, np.float32)
                if self.dim is None:
                    self.dim = int(vec.shape[0])
                if vec.shape[0] != self.dim or not np.isfinite(vec).all():
                    vec = None
            out[post_id] = _PostRow(
                author_id=author,
                format=col("post_content__format") or "",
                topic=col("post_content__topic") or "",
                text=col("post_content__text") or "",
                created_at=_epoch(col("post_content__created_at")),
                percentiles=(
                    *(_float(col(f"post_engagement__{p}")) for p in PERCENTILES),
                    followers.get(author, (float("nan"), float("nan")))[0],
                ),  # type: ignore[arg-type]
                stamps=(
                    _epoch(col("post_content__author_id__ts")),
                    _epoch(col("post_engagement__view_percentile__ts")),
                    followers.get(author, (float("nan"), float("nan")))[1],
                ),
                embedding=vec,
                embedding_version=version,
                found=col("post_content__author_id") is not None,
                fetched=now,
            )
        return out

    def _table(self, ids: np.ndarray, rows: Mapping[int, _PostRow], request_ts: float | None) -> PostTable:
        n = len(ids)
        dim = self.dim or 0
        table = PostTable.empty(dim)
        if n == 0:
            return table
        seq = [rows[int(p)] for p in ids]
        emb = np.zeros((n, dim), np.float32)
        has = np.zeros(n, bool)
        if self.vectors is not None and self.vectors.dim == dim:
            emb, has = self.vectors.lookup(ids)
        for i, r in enumerate(seq):  # a vector pushed by the nearline path is newer than the snapshot
            if r.embedding is not None and r.embedding.shape[0] == dim:
                emb[i] = r.embedding
                has[i] = True
        pct = np.array([r.percentiles for r in seq], dtype=np.float64).reshape(n, 5)
        found = np.fromiter((r.found for r in seq), bool, n)
        if request_ts is not None:
            stamps = np.array([r.stamps for r in seq], dtype=np.float64).reshape(n, 3)
            age = request_ts - stamps  # NaN stamps (no row) compare False: nothing to expire
            found &= ~(age[:, 0] > self.ttl_s.get("post_content", np.inf))
            pct[age[:, 1] > self.ttl_s.get("post_engagement", np.inf), :4] = np.nan
            pct[age[:, 2] > self.ttl_s.get("author_stats", np.inf), 4] = np.nan
        return PostTable(
            post_id=ids.copy(),
            author_id=np.fromiter((r.author_id for r in seq), np.int64, n),
            format=np.array([r.format for r in seq], dtype=object),
            topic=np.array([r.topic for r in seq], dtype=object),
            text=np.array([r.text for r in seq], dtype=object),
            created_at=np.fromiter((r.created_at for r in seq), np.float64, n),
            view_percentile=pct[:, 0],
            like_percentile=pct[:, 1],
            comment_percentile=pct[:, 2],
            share_percentile=pct[:, 3],
            follower_percentile=pct[:, 4],
            embedding=emb,
            has_embedding=has,
            found=found,
        )

    def forget_posts(self, post_ids: Iterable[int]) -> None:
        """Drop posts from the cache (an erased or updated post is read from the store next time)."""
        self.posts_cache.discard(int(p) for p in post_ids)

    def check(self) -> None:
        """A cheap read that fails when the online store is gone (readiness)."""
        self._read(self._member_refs[:1], [{"member_id": 1}])


# --- one filler per member view: its Feast values → MemberOnline fields


def _fill_profile(m: MemberOnline, v: Mapping[str, Any]) -> None:
    m.headline, m.current_role, m.industry = v["headline"], v["current_role"], v["industry"]
    m.skills = [str(s) for s in _list(v["skills"])]
    m.education = [str(s) for s in _list(v["education"])]
    m.work_history = [str(s) for s in _list(v["work_history"])]


def _fill_history(m: MemberOnline, v: Mapping[str, Any]) -> None:
    m.engaged_post_ids = np.asarray(_list(v["engaged_post_ids"]), np.int64)
    m.history_length = int(v["history_length"] or 0)


def _fill_affinity(m: MemberOnline, v: Mapping[str, Any]) -> None:
    m.has_affinity = True
    m.top_author_ids = np.asarray(_list(v["top_author_ids"]), np.int64)
    m.top_author_scores = np.asarray(_list(v["top_author_scores"]), np.float64)
    m.top_topics = [str(t) for t in _list(v["top_topics"])]
    m.top_topic_scores = np.asarray(_list(v["top_topic_scores"]), np.float64)


def _fill_embedding(m: MemberOnline, v: Mapping[str, Any]) -> None:
    vec = np.asarray(_list(v["embedding"]), np.float32)
    norm = float(np.linalg.norm(vec)) if vec.size else 0.0
    if np.isfinite(norm) and norm > 0:
        m.embedding = vec / norm
        m.embedding_version = v["model_version"]


def _fill_sequence(m: MemberOnline, v: Mapping[str, Any]) -> None:
    ids = np.asarray(_list(v["post_ids"]), np.int64)
    actions = np.asarray(_list(v["actions"]), np.int64)
    ts = np.asarray(_list(v["timestamps"]), np.float64)
    if len(ids) == len(actions) == len(ts):  # a malformed row is ignored: the engaged history stands in
        m.sequence_post_ids, m.sequence_actions, m.sequence_ts = ids, actions.astype(np.uint8), ts


_FILL = {
    "member_profile": _fill_profile,
    "member_history": _fill_history,
    "member_affinity": _fill_affinity,
    "member_embedding": _fill_embedding,
    "member_sequence": _fill_sequence,
}
