"""Index worker: ``nearline_embeddings`` → Milvus (``posts_<model_version>``) and Feast's online store.

Per batch of embedding commits:

1. post vectors are upserted into the collection of their model version (Milvus upsert by primary key);
2. member and post vectors go to the Feast push sources ``member_embedding_push`` / ``post_embedding_push``
   and stats rows (fresh counts + percentiles) to ``post_engagement_push`` (``PushMode.ONLINE``: overwrite by
   entity key);
3. then one Delta commit appends a row per input row to ``nearline_indexed`` (outcome, done time) and records
   the offset (app transaction ``APP_ID``).

Exactly-once effect: delivery is at-least-once (a crash after 1–2 and before 3 replays the batch) and both
sinks are idempotent (same key, same value), so the effect is exactly once; the commit log holds each row
once.

Rejection rules (row counted in ``nearline_indexed`` with ``outcome = "rejected"`` and a reason, logged;
the offset moves on): a post/member row without an embedding; a model version with no Milvus collection
``posts_<version>`` (run ``feed index backfill --version <v>`` first: a member vector without its post index
would be queried against another model's space); a vector of the wrong dimension, non-finite or zero.

Milvus or Feast unreachable: the batch is retried with exponential backoff (``retry_initial_s`` doubling up
to ``retry_max_s``) and the offset is not moved, so nothing is lost; ``--once`` gives up after
``retry_attempts`` with a non-zero exit.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from feed.config import FeedPaths
from serving.nearline import log as nlog
from serving.nearline.config import NearlineConfig
from serving.nearline.schemas import (
    EMBEDDINGS_TABLE,
    INDEXED_TABLE,
    MEMBER,
    NEARLINE_EMBEDDINGS,
    NEARLINE_INDEXED,
    POST,
    STATS,
    STATS_COUNTS,
    STATS_PERCENTILES,
)

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore
    from pymilvus import MilvusClient

log = logging.getLogger(__name__)

APP_ID = "feed.nearline.index"
STAGE = "index"
INDEXED, PUSHED, REJECTED, SKIPPED = "indexed", "pushed", "rejected", "skipped"
T = TypeVar("T")


class SinkUnavailableError(ConnectionError):
    """Milvus or Feast stayed unreachable for all the retries allowed; the offset was not moved."""


def _retryable() -> tuple[type[BaseException], ...]:
    from serving.index.milvus import MilvusUnavailableError

    return (MilvusUnavailableError, ConnectionError, TimeoutError, sqlite3.OperationalError)


class IndexWorker:
    stage = STAGE

    def __init__(self, paths: FeedPaths, cfg: NearlineConfig) -> None:
        self.paths, self.cfg = paths, cfg
        self.input = paths.table(EMBEDDINGS_TABLE)
        self.output = paths.table(INDEXED_TABLE)
        self.offset = nlog.committed_offset(self.output, APP_ID)
        self._client: MilvusClient | None = None
        self._indexes: dict[str, Any] = {}  # model_version -> MilvusPostIndex
        self._store: FeatureStore | None = None
        self.counts: Counter[str] = Counter()
        self.last_timings: dict[str, float] = {}  # seconds per sink step of the last batch (logged)
        self._warm_up()

    def _warm_up(self) -> None:
        """Open the sinks before the first event arrives: importing Feast and loading its registry take
        10–20 s on a busy 2-core machine, which would otherwise land on the first event's freshness. A Feast
        repo that was never applied fails here, with the fix in the message; Milvus may come later."""
        if self.cfg.push_to_feast:
            self._feast()
        try:
            self._milvus()
        except _retryable() as exc:
            log.warning("index: Milvus not reachable yet (%s); the first batch will retry", exc)

    def pending(self) -> int:
        head = nlog.head_version(self.input)
        return 0 if head is None else max(0, head - self.offset)

    # --- sinks ----------------------------------------------------------------------------------------

    def _milvus(self) -> MilvusClient:
        from serving.index.milvus import IndexConfig, connect, resolve_uri

        if self._client is None:
            config = IndexConfig(uri=self.cfg.milvus_uri, timeout_s=10.0)
            self._client = connect(resolve_uri(config, self.paths), timeout_s=10.0)
        return self._client

    def _index(self, model_version: str) -> Any | None:
        """The collection writers of ``model_version`` upsert into (None when there is none): the served one
        when it holds that version, else the newest ``posts_<version>[_r<n>]`` — resolved once per batch, so
        a backfill that swaps the alias is followed at the next batch."""
        from serving.index.milvus import IndexConfig, MilvusPostIndex, _call, collection_for

        if model_version in self._indexes:
            return self._indexes[model_version]
        client = self._milvus()
        name = collection_for(client, model_version)
        if name is None:
            return None
        _call("load_collection", client.load_collection, name)
        index = MilvusPostIndex(client, name, IndexConfig(uri=self.cfg.milvus_uri, timeout_s=10.0))
        self._indexes[model_version] = index
        return index

    def _feast(self) -> FeatureStore:
        from pipelines.feature_store import applied_store

        if self._store is None:
            self._store = applied_store(self.paths, self.cfg.feast_variant)
        return self._store

    def _with_retry(self, what: str, fn: Callable[[], T]) -> T:
        delay, attempt = self.cfg.retry_initial_s, 0
        retryable = _retryable()
        while True:
            try:
                return fn()
            except retryable as exc:
                attempt += 1
                self._client, self._indexes, self._store = None, {}, None  # reconnect on the next try
                if self.cfg.retry_attempts is not None and attempt >= self.cfg.retry_attempts:
                    raise SinkUnavailableError(
                        f"{what}: still failing after {attempt} attempts ({exc}); "
                        f"offset kept at {self.offset}"
                    ) from exc
                log.warning(
                    "index: %s failed (%s); retry %d in %.1f s, offset kept at %d",
                    what,
                    exc,
                    attempt,
                    delay,
                    self.offset,
                )
                time.sleep(delay)
                delay = min(max(delay * 2, 0.05), self.cfg.retry_max_s)

    # --- one batch --------------------------------------------------------------------------------------

    def step(self, *, drain: bool = False) -> int:
        commits = nlog.read_commits(
            self.input,
            NEARLINE_EMBEDDINGS,
            self.offset,
            max_versions=self.cfg.max_versions,
            max_rows=self.cfg.max_rows,
        )
        if not commits:
            return 0
        self.cfg.maybe_crash(STAGE, "after_read")
        parts = [
            c.rows.append_column("embeddings_version", pa.array([c.version] * c.rows.num_rows, pa.int64()))
            for c in commits
        ]
        rows = pa.concat_tables(parts).to_pylist()
        outcomes = self._with_retry("sinks", lambda: self._sink(rows))
        self.cfg.maybe_crash(STAGE, "after_sink")
        now = dt.datetime.now(dt.UTC)
        done = [
            {**row, "outcome": outcome, "reason": reason, "indexed_at": now}
            for row, (outcome, reason) in zip(rows, outcomes, strict=True)
        ]
        last = commits[-1].version
        nlog.commit_with_offset(
            self.output, pa.Table.from_pylist(done, schema=NEARLINE_INDEXED), NEARLINE_INDEXED, APP_ID, last
        )
        self.offset = last
        for outcome, _ in outcomes:
            self.counts[outcome] += 1
        log.info(
            "index: embeddings ≤ v%d → %s (%s)",
            last,
            dict(Counter(o for o, _ in outcomes)),
            ", ".join(f"{k} {v:.2f} s" for k, v in self.last_timings.items()),
        )
        self.cfg.maybe_crash(STAGE, "after_commit")
        return len(commits)

    def _sink(self, rows: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
        """Send ``rows`` to Milvus and Feast; returns (outcome, reason) per row."""
        self._indexes = {}  # re-resolve each version's collection (an alias may have moved)
        t0 = time.perf_counter()
        outcomes: list[tuple[str, str | None]] = []
        # The newest row per key wins within the batch: ordered by the versions it came through (explicit, so
        # correctness never rests on row order inside a data file), then by position.
        newest: dict[tuple[str, int, str], tuple[int, int, int]] = {}
        for i, row in enumerate(rows):
            outcome, reason = self._check(row)
            outcomes.append((outcome, reason))
            if outcome == REJECTED:
                continue
            key = (row["kind"], row["entity_id"], row["model_version"])
            rank = (row["embeddings_version"], row["prompts_version"], i)
            if key not in newest or rank > newest[key]:
                newest[key] = rank
        keep = sorted(rank[2] for rank in newest.values())
        posts = [rows[i] for i in keep if rows[i]["kind"] == POST]
        by_version: dict[str, list[dict[str, Any]]] = {}
        for row in posts:
            by_version.setdefault(row["model_version"], []).append(row)
        t1 = time.perf_counter()
        for version, group in by_version.items():
            self._upsert(version, group)
        t2 = time.perf_counter()
        if self.cfg.push_to_feast:
            self._push([rows[i] for i in keep])
        self.last_timings = {"check": t1 - t0, "milvus": t2 - t1, "feast": time.perf_counter() - t2}
        return outcomes

    def _check(self, row: dict[str, Any]) -> tuple[str, str | None]:
        if row["kind"] == STATS:
            return (PUSHED, None) if self.cfg.push_to_feast else (SKIPPED, "Feast pushes disabled")
        version = row["model_version"]
        if row["embedding"] is None:
            return self._reject(row, "no embedding")
        index = self._index(version)
        if index is None:
            from serving.index.milvus import collection_name

            return self._reject(
                row,
                f"no Milvus collection {collection_name(version)}[_r<n>]; "
                f"run `feed index backfill --version {version}`",
            )
        vec = np.asarray(row["embedding"], dtype=np.float32)
        if vec.shape != (index.dim,):
            return self._reject(row, f"embedding has {vec.size} dims, the collection {index.dim}")
        if not np.isfinite(vec).all() or not np.linalg.norm(vec) > 0:
            return self._reject(row, "embedding is non-finite or zero")
        return INDEXED, None

    def _reject(self, row: dict[str, Any], reason: str) -> tuple[str, str]:
        log.warning(
            "index: rejected %s %s (%s): %s", row["kind"], row["entity_id"], row["model_version"], reason
        )
        return REJECTED, reason

    def _upsert(self, version: str, rows: list[dict[str, Any]]) -> None:
        from serving.index.base import PostMeta
        from serving.index.milvus import _call

        index = self._index(version)
        assert index is not None
        ids = np.array([r["entity_id"] for r in rows], dtype=np.int64)
        vecs = np.array([r["embedding"] for r in rows], dtype=np.float32)
        meta = PostMeta.of(
            [r["author_id"] for r in rows],
            [int(r["created_at"].timestamp()) for r in rows],
            [r["format"] for r in rows],
        )
        index.upsert(ids, vecs, meta)
        # Milvus Lite searches unflushed (growing-segment) rows by brute force in Python, ≈1 s a query at 20k
        # rows; a flush per batch keeps searches on the indexed path (small batches flush fast).
        _call("flush", index.client.flush, index.name)

    def _push(self, rows: list[dict[str, Any]]) -> None:
        import pandas as pd
        from feast.data_source import PushMode

        now = pd.Timestamp.now(tz="UTC")
        frames: dict[str, pd.DataFrame] = {}
        members = [r for r in rows if r["kind"] == MEMBER]
        posts = [r for r in rows if r["kind"] == POST]
        stats = [r for r in rows if r["kind"] == STATS]
        if members:
            frames["member_embedding_push"] = _embedding_frame(members, "member_id", now)
        if posts:
            frames["post_embedding_push"] = _embedding_frame(posts, "post_id", now)
        if stats:
            frames["post_engagement_push"] = pd.DataFrame(
                {
                    "post_id": [r["entity_id"] for r in stats],
                    **{c: [r[c] for r in stats] for c in (*STATS_COUNTS, *STATS_PERCENTILES)},
                    "event_timestamp": [pd.Timestamp(r["event_time"]) for r in stats],
                    "created": now,
                }
            )
        if not frames:
            return
        store = self._feast()
        for source, frame in frames.items():
            store.push(source, frame, to=PushMode.ONLINE)


def _embedding_frame(rows: list[dict[str, Any]], key: str, now: Any) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            key: [r["entity_id"] for r in rows],
            "embedding": [list(r["embedding"]) for r in rows],
            "model_version": [r["model_version"] for r in rows],
            "event_timestamp": [pd.Timestamp(r["event_time"]) for r in rows],
            "created": now,
        }
    )
