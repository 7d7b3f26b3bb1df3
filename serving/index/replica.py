"""The default serving path: an in-process FAISS HNSW replica of the post index.

Why a replica and not Milvus Lite: Milvus Lite 3.x spends ≈0.45 µs per stored row per query in Python loops
(STACK.md), ≈0.5 s a query at 1M posts, while FAISS HNSW answers in well under a millisecond. Milvus stays the
system of record and the scale-out index; this replica bootstraps from the same Delta tables Milvus is built
from (``post_embeddings`` ⋈ ``raw_posts``) and then tails the nearline embedding log (``nearline_embeddings``,
append-only) by Delta table version — the same log the Milvus index worker consumes — so both converge on the
same rows.

Layout. FAISS ``IndexHNSWFlat`` (inner product on L2-normalised vectors = cosine) whose labels are *slots*
0..n-1 in insertion order. Per slot we keep the post id, an alive flag and the filter metadata (author id,
created_at, format as a small integer code). HNSW cannot remove a vector, so an upsert of a known post id or a
delete tombstones the old slot (search excludes it with a FAISS ``IDSelectorBitmap``) and an upsert appends a
new slot; once tombstones exceed ``rebuild_tombstone_fraction`` of the slots the graph is rebuilt from the
live vectors (read back from the flat storage, no second copy kept).

Filters (:class:`~serving.index.base.SearchFilter`) become one boolean mask over slots, passed to HNSW as a
bitmap selector, so every returned post passes the filter and HNSW still fills ``k`` when enough posts pass.
Graph search with a selector loses recall as the filter tightens (most nodes visited are rejected), so the
replica raises efSearch by 1/(share of posts allowed); and when scoring just the allowed rows with a flat
scan is cheaper than that raised ef (few rows allowed), it answers exactly instead (``exact_cost_ratio``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import faiss
import numpy as np

from serving.index.base import (
    IndexConfigError,
    IndexInputError,
    ModelVersionMismatchError,
    PostMeta,
    SearchFilter,
    SearchResult,
    check_k,
    normalize_filters,
    normalize_queries,
    validate_ids,
    validate_vectors,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from feed.config import FeedPaths

log = logging.getLogger(__name__)

POST_EMBEDDINGS_TABLE = "post_embeddings"
RAW_POSTS_TABLE = "raw_posts"
NEARLINE_EMBEDDINGS_TABLE = "nearline_embeddings"  # written by serving/nearline (helper B's embed worker)
# Columns the replica needs from the nearline embedding log; an optional boolean ``deleted`` column removes.
NEARLINE_COLUMNS: tuple[str, ...] = (
    "kind",
    "entity_id",
    "model_version",
    "embedding",
    "author_id",
    "created_at",
    "format",
)


SNAPSHOT_INDEX = "hnsw.faiss"
SNAPSHOT_ARRAYS = "slots.npz"
SNAPSHOT_STATE = "state.json"


class ReplicaSourceError(ValueError):
    """A Delta source the replica reads is missing, empty for the model version, or lacks a column."""


@dataclass(frozen=True)
class HnswConfig:
    """FAISS HNSW settings. Defaults reach recall@100 ≥ 0.95 on clustered 384-d data (bench/index.py)."""

    M: int = 32  # graph degree; 32 trades ≈2× memory of the graph vs 16 for better recall at high k
    # 100, not 200: half the build time (≈3k vs ≈1.4k rows/s on 2 busy cores at 20k × 384) for recall@100
    # 0.9993 vs 0.9997 at ef_search 256 on clustered data
    ef_construction: int = 100
    ef_search: int = 256  # raised to k when k is larger (HNSW returns at most ef results)
    rebuild_tombstone_fraction: float = 0.25  # rebuild the graph when this share of slots is dead
    background_rebuild: bool = True  # rebuild in a thread (serving goes on); False = inside the write call
    # Filtered queries pick the cheaper exact plan: a flat scan of just the allowed rows costs ∝ allowed rows
    # (≈0.24 µs per 384-d row here), HNSW with a selector costs ∝ its raised ef (≈3.7 µs per ef unit), so
    # exact when allowed ≤ exact_cost_ratio × ef (measured 50k × 384: 10% allowed → flat 1.2 ms at recall 1.0
    # vs HNSW ef 2560 9.5 ms at 0.993). At most exact_below_rows allowed → always exact.
    exact_cost_ratio: float = 15.0
    exact_below_rows: int = 2048
    ef_max: int = 4096  # cap on the filter-scaled efSearch

    def __post_init__(self) -> None:
        if self.M < 2 or self.ef_construction < 1 or self.ef_search < 1:
            raise IndexConfigError(
                f"HNSW needs M >= 2, ef_construction >= 1, ef_search >= 1; got M={self.M}, "
                f"ef_construction={self.ef_construction}, ef_search={self.ef_search}"
            )
        if not 0.0 < self.rebuild_tombstone_fraction <= 1.0:
            raise IndexConfigError(
                f"rebuild_tombstone_fraction must be in (0, 1], got {self.rebuild_tombstone_fraction}"
            )
        if self.exact_cost_ratio < 0 or self.exact_below_rows < 0 or self.ef_max < 1:
            raise IndexConfigError("exact_cost_ratio and exact_below_rows must be >= 0, ef_max >= 1")


class _ReadWriteLock:
    """Many readers or one writer; writers are preferred (a waiting writer holds back new readers) and
    re-entrant, and the writing thread may also read."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None  # thread id holding the write lock
        self._depth = 0  # re-entrant write depth
        self._waiting_writers = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._writer == me:  # reading inside our own write section
            yield
            return
        with self._cond:
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                self._waiting_writers += 1
                while self._writer is not None or self._readers:
                    self._cond.wait()
                self._waiting_writers -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._cond.notify_all()


@dataclass
class _Follow:
    """Where :meth:`HnswReplica.refresh` resumes in the nearline log."""

    table: Path
    applied_version: int = -1  # last Delta version of the log applied; -1 = none yet
    rows_applied: int = 0
    last_refresh_s: float = 0.0


class HnswReplica:
    """In-process cosine top-k over post embeddings of one model version (implements ``PostIndex``).

    Thread-safety: a readers-writer lock. Searches share it (FAISS releases the GIL, so concurrent searches
    use every core); writes (upsert/delete/refresh, a rebuild's snapshot and swap) hold it alone, so a search
    sees the state before or after a write batch, never half of it.
    """

    def __init__(self, dim: int, model_version: str, config: HnswConfig | None = None) -> None:
        if dim < 1:
            raise IndexConfigError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.model_version = model_version
        self.config = config or HnswConfig()
        self._lock = _ReadWriteLock()
        self._formats: dict[str, int] = {}  # format string -> small code (filters compare ints)
        self._follow: _Follow | None = None
        self._journal: list[tuple[str, np.ndarray, Any, Any]] | None = None  # writes during a rebuild
        self._rebuild_thread: threading.Thread | None = None
        self.skipped: dict[str, int] = {}  # rows a Delta bootstrap skipped, by reason
        self._reset(0)

    # --- storage -------------------------------------------------------------------------------------

    def _new_faiss(self) -> faiss.IndexHNSWFlat:
        index = faiss.IndexHNSWFlat(self.dim, self.config.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.config.ef_construction
        index.hnsw.efSearch = self.config.ef_search
        return index

    def _reset(self, capacity: int) -> None:
        self._index = self._new_faiss()
        self._slot_post = np.empty(capacity, dtype=np.int64)
        self._alive = np.zeros(capacity, dtype=bool)
        self._author = np.empty(capacity, dtype=np.int64)
        self._created = np.empty(capacity, dtype=np.int64)
        self._fmt = np.empty(capacity, dtype=np.int16)
        self._n = 0  # slots used
        self._slot_of: dict[int, int] = {}  # live post id -> slot
        self._alive_bitmap: np.ndarray | None = None  # cached packed bitmap of live slots

    def _grow(self, need: int) -> None:
        cap = len(self._slot_post)
        if need <= cap:
            return
        new_cap = max(need, int(cap * 1.5) + 1024)
        for name in ("_slot_post", "_alive", "_author", "_created", "_fmt"):
            old = getattr(self, name)
            arr = np.zeros(new_cap, dtype=old.dtype) if name == "_alive" else np.empty(new_cap, old.dtype)
            arr[: self._n] = old[: self._n]
            setattr(self, name, arr)

    def _vectors(self) -> np.ndarray:
        """Zero-copy (n, dim) view of the flat storage (valid until the next add)."""
        if self._n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        storage = faiss.downcast_index(self._index.storage)
        flat = faiss.rev_swig_ptr(storage.get_xb(), self._n * self.dim)
        return np.asarray(flat).reshape(self._n, self.dim)

    def _format_codes(self, formats: np.ndarray) -> np.ndarray:
        codes = np.empty(len(formats), dtype=np.int16)
        for i, f in enumerate(formats):
            code = self._formats.get(f)
            if code is None:
                code = self._formats[f] = len(self._formats)
            codes[i] = code
        return codes

    # --- PostIndex -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def tombstones(self) -> int:
        return self._n - len(self._slot_of)

    def upsert(self, post_ids: np.ndarray, vectors: np.ndarray, meta: PostMeta) -> int:
        """Insert new posts, replace known ones (vector and metadata). Returns rows written."""
        ids, vecs = validate_vectors(post_ids, vectors, self.dim)
        meta = meta.validate(len(ids), ids)
        if not len(ids):
            return 0
        with self._lock.write():
            self._apply_upsert(ids, vecs, meta)
            if self._journal is not None:  # a rebuild is running: replay this write onto the new graph
                self._journal.append(("upsert", ids, vecs, meta))
            self._maybe_rebuild()
        return len(ids)

    def delete(self, post_ids: np.ndarray) -> int:
        """Remove posts; unknown ids are ignored. Returns how many were present."""
        ids = validate_ids(post_ids)
        with self._lock.write():
            removed = self._tombstone(ids)
            self._alive_bitmap = None
            if self._journal is not None:
                self._journal.append(("delete", ids, None, None))
            self._maybe_rebuild()
        return removed

    def _apply_upsert(self, ids: np.ndarray, vecs: np.ndarray, meta: PostMeta) -> None:
        self._tombstone(ids)
        start = self._n
        self._grow(start + len(ids))
        end = start + len(ids)
        self._index.add(vecs)
        self._slot_post[start:end] = ids
        self._alive[start:end] = True
        self._author[start:end] = meta.author_id
        self._created[start:end] = meta.created_at
        self._fmt[start:end] = self._format_codes(meta.format)
        self._n = end
        self._slot_of.update(zip(ids.tolist(), range(start, end), strict=True))
        self._alive_bitmap = None

    def _tombstone(self, ids: np.ndarray) -> int:
        removed = 0
        for pid in ids.tolist():
            slot = self._slot_of.pop(pid, None)
            if slot is not None:
                self._alive[slot] = False
                removed += 1
        return removed

    def _maybe_rebuild(self) -> None:
        dead = self.tombstones
        running = self._journal is not None or (
            self._rebuild_thread is not None and self._rebuild_thread.is_alive()
        )
        if not running and dead and dead > self.config.rebuild_tombstone_fraction * self._n:
            if self.config.background_rebuild:
                self._rebuild_thread = threading.Thread(
                    target=self.rebuild, name="replica-rebuild", daemon=True
                )
                self._rebuild_thread.start()
            else:
                self.rebuild()

    def rebuild(self) -> None:
        """Rebuild the graph from the live slots (drops tombstones; slots are renumbered).

        The expensive part (HNSW insertion of every live vector: minutes per 100k rows on 2 cores) runs
        without the lock, so searches and writes go on against the old graph meanwhile; writes made during
        the build are journaled and replayed onto the new graph before it is swapped in.
        """
        snap = self._rebuild_begin()
        if snap is None:
            return
        self._rebuild_finish(snap, self._rebuild_build(snap))

    def join_rebuild(self, timeout: float | None = None) -> None:
        """Wait for a background rebuild (if one runs)."""
        thread = self._rebuild_thread
        if thread is not None:
            thread.join(timeout)

    def _rebuild_begin(self) -> dict[str, np.ndarray] | None:
        with self._lock.write():
            if self._journal is not None:
                return None  # one rebuild at a time
            self._journal = []
            live = np.flatnonzero(self._alive[: self._n])
            return {
                "vecs": np.array(self._vectors()[live]),  # copies: the old graph keeps changing
                "post": self._slot_post[live].copy(),
                "author": self._author[live].copy(),
                "created": self._created[live].copy(),
                "fmt": self._fmt[live].copy(),
            }

    def _rebuild_build(self, snap: dict[str, np.ndarray]) -> faiss.IndexHNSWFlat:
        index = self._new_faiss()
        if len(snap["post"]):
            index.add(snap["vecs"])  # FAISS releases the GIL here
        return index

    def _rebuild_finish(self, snap: dict[str, np.ndarray], index: faiss.IndexHNSWFlat) -> None:
        with self._lock.write():
            journal, self._journal = self._journal or [], None
            n = len(snap["post"])
            self._reset(n)
            self._index = index
            self._slot_post[:n], self._author[:n] = snap["post"], snap["author"]
            self._created[:n], self._fmt[:n] = snap["created"], snap["fmt"]
            self._alive[:n] = True
            self._n = n
            self._slot_of = dict(zip(snap["post"].tolist(), range(n), strict=True))
            for op, ids, vecs, meta in journal:
                if op == "upsert":
                    self._apply_upsert(ids, vecs, meta)
                else:
                    self._tombstone(ids)
            self._alive_bitmap = None
            log.info("replica rebuilt: %d live posts (+%d writes replayed)", len(self._slot_of), len(journal))

    # --- search --------------------------------------------------------------------------------------

    def _filter_mask(self, f: SearchFilter) -> np.ndarray:
        """Boolean (n,) over slots: live and passing ``f`` (SearchFilter.mask semantics, on slot arrays)."""
        n = self._n
        keep = self._alive[:n].copy()
        if f.exclude_author_id is not None:
            keep &= self._author[:n] != f.exclude_author_id
        if f.created_after is not None:
            keep &= self._created[:n] >= f.created_after
        if f.formats is not None:
            allowed = np.zeros(len(self._formats) + 1, dtype=bool)  # code -> allowed (a table lookup is
            allowed[[self._formats[x] for x in f.formats if x in self._formats]] = True  # ≈5× np.isin)
            keep &= allowed[self._fmt[:n]]
        for pid in f.exclude_post_ids:
            slot = self._slot_of.get(pid)
            if slot is not None:
                keep[slot] = False
        return keep

    def _ef(self, k: int, fraction: float) -> int:
        """efSearch for a search whose selector allows ``fraction`` of the slots: ef / fraction, capped."""
        ef = max(self.config.ef_search, k)
        return int(min(max(self.config.ef_max, ef), np.ceil(ef / max(fraction, 1e-9))))

    def _search_hnsw(self, q: np.ndarray, k: int, bitmap: np.ndarray | None, fraction: float = 1.0) -> Any:
        """HNSW search; with a selector bitmap, ``efSearch`` grows as 1/``fraction`` (the share of slots the
        bitmap allows, capped at ``ef_max``): HNSW fills its candidate list from every node it visits, so a
        filter keeping 10% of posts at ef 256 leaves ≈25 allowed candidates — measured recall@100 0.70 at 10%,
        0.85 at 20% (50k × 384) — while ef 256/fraction gives ≥ 0.98."""
        params = faiss.SearchParametersHNSW()
        params.efSearch = self._ef(k, fraction)
        if bitmap is not None:
            params.sel = faiss.IDSelectorBitmap(self._n, faiss.swig_ptr(bitmap))
        return self._index.search(q, min(k, self._n), params=params)

    def _exact(self, q: np.ndarray, k: int, bitmap: np.ndarray, allowed: int) -> Any:
        """Exact top-k over the slots the bitmap allows: a flat scan of the HNSW's own vector storage that
        skips disallowed rows, so its cost is ∝ allowed rows (≈0.3 ms per 1k × 384 here) and nothing is
        copied."""
        if allowed == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        params = faiss.SearchParameters()
        params.sel = faiss.IDSelectorBitmap(self._n, faiss.swig_ptr(bitmap))
        storage = faiss.downcast_index(self._index.storage)
        return storage.search(q, min(k, allowed), params=params)

    def _results(self, scores: np.ndarray, labels: np.ndarray, path: str) -> list[SearchResult]:
        out = []
        for s, lab in zip(scores, labels, strict=True):
            ok = lab >= 0
            out.append(
                SearchResult(
                    post_ids=self._slot_post[lab[ok]].astype(np.int64),
                    scores=s[ok].astype(np.float32),
                    extra={"path": path},
                )
            )
        return out

    def search(
        self, queries: np.ndarray, k: int, filters: Sequence[SearchFilter] | SearchFilter | None = None
    ) -> list[SearchResult]:
        """Cosine top-``k`` per query; every returned post is live and passes its query's filter."""
        k = check_k(k)
        q = normalize_queries(queries, self.dim)
        per_query = normalize_filters(filters, len(q))
        results: list[SearchResult | None] = [None] * len(q)
        with self._lock.read():
            if self._n == 0:
                empty = SearchResult(np.empty(0, np.int64), np.empty(0, np.float32), {"path": "empty"})
                return [empty] * len(q)
            groups: dict[SearchFilter | None, list[int]] = {}
            for i, f in enumerate(per_query):
                groups.setdefault(f, []).append(i)
            for f, rows in groups.items():
                for i, res in zip(rows, self._search_group(q[rows], k, f), strict=True):
                    results[i] = res
        return results  # type: ignore[return-value]

    def _search_group(self, q: np.ndarray, k: int, f: SearchFilter | None) -> list[SearchResult]:
        if f is None and self.tombstones == 0:
            return self._results(*self._search_hnsw(q, k, None), path="hnsw")
        if f is None:
            if self._alive_bitmap is None:
                self._alive_bitmap = np.packbits(self._alive[: self._n], bitorder="little")
            fraction = len(self) / self._n
            return self._results(*self._search_hnsw(q, k, self._alive_bitmap, fraction), path="hnsw")
        mask = self._filter_mask(f)
        allowed = int(mask.sum())
        bitmap = np.packbits(mask, bitorder="little")
        fraction = allowed / self._n
        cfg = self.config
        if allowed <= max(cfg.exact_below_rows, cfg.exact_cost_ratio * self._ef(k, fraction)):
            return self._results(*self._exact(q, k, bitmap, allowed), path="exact_subset")
        return self._results(*self._search_hnsw(q, k, bitmap, fraction), path="hnsw_filtered")

    # --- snapshot to disk ----------------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write the graph, slot arrays and tail position to ``folder`` so a restart skips the rebuild
        (building HNSW costs minutes per 100k rows on 2 cores; reading it back, seconds)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            faiss.write_index(self._index, str(folder / SNAPSHOT_INDEX))
            n = self._n
            np.savez(
                folder / SNAPSHOT_ARRAYS,
                slot_post=self._slot_post[:n],
                alive=self._alive[:n],
                author=self._author[:n],
                created=self._created[:n],
                fmt=self._fmt[:n],
            )
            state = {
                "dim": self.dim,
                "model_version": self.model_version,
                "config": asdict(self.config),
                "formats": self._formats,
                "skipped": self.skipped,
                "follow": None
                if self._follow is None
                else {"table": str(self._follow.table), "applied_version": self._follow.applied_version},
            }
            (folder / SNAPSHOT_STATE).write_text(json.dumps(state, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path) -> HnswReplica:
        """Read a :meth:`save` snapshot; call :meth:`refresh` next to catch up with the nearline log."""
        folder = Path(folder)
        state_file = folder / SNAPSHOT_STATE
        if not state_file.is_file():
            raise ReplicaSourceError(f"no replica snapshot in {folder} ({SNAPSHOT_STATE} missing)")
        state = json.loads(state_file.read_text())
        replica = cls(state["dim"], state["model_version"], HnswConfig(**state["config"]))
        replica._index = faiss.read_index(str(folder / SNAPSHOT_INDEX))
        replica._index.hnsw.efSearch = replica.config.ef_search
        arrays = np.load(folder / SNAPSHOT_ARRAYS)
        replica._slot_post, replica._alive = arrays["slot_post"], arrays["alive"]
        replica._author, replica._created, replica._fmt = arrays["author"], arrays["created"], arrays["fmt"]
        replica._n = len(replica._slot_post)
        if replica._index.ntotal != replica._n:
            raise ReplicaSourceError(f"replica snapshot in {folder} is inconsistent (graph vs slot arrays)")
        live = np.flatnonzero(replica._alive)
        replica._slot_of = dict(zip(replica._slot_post[live].tolist(), live.tolist(), strict=True))
        replica._formats = {k: int(v) for k, v in state["formats"].items()}
        replica.skipped = state.get("skipped", {})
        if state.get("follow"):
            replica._follow = _Follow(Path(state["follow"]["table"]), int(state["follow"]["applied_version"]))
        return replica

    # --- Delta bootstrap and nearline tail --------------------------------------------------------------

    @classmethod
    def from_delta(
        cls,
        paths: FeedPaths,
        model_version: str,
        config: HnswConfig | None = None,
        *,
        follow: bool = True,
    ) -> HnswReplica:
        """Build from ``post_embeddings`` (one model version) ⋈ ``raw_posts``; posts missing from raw_posts
        count as deleted and are skipped. ``follow`` → also apply the nearline log (:meth:`refresh`)."""
        ids, vecs, meta, skipped = load_post_snapshot(paths, model_version)
        replica = cls(vecs.shape[1], model_version, config)
        replica.skipped = skipped
        t0 = time.perf_counter()
        replica.upsert(ids, vecs, meta)
        log.info(
            "replica %s: %d posts from %s in %.1f s (skipped: %s)",
            model_version,
            len(ids),
            POST_EMBEDDINGS_TABLE,
            time.perf_counter() - t0,
            skipped,
        )
        if follow:
            replica.follow(paths)
        return replica

    def follow(self, paths: FeedPaths | Path, *, since_version: int = -1) -> int:
        """Tail the nearline embedding log from after ``since_version`` (-1 = the whole log); returns rows
        applied by the first :meth:`refresh`. ``paths`` may be FeedPaths or the log table's path."""
        table = paths if isinstance(paths, Path) else paths.table(NEARLINE_EMBEDDINGS_TABLE)
        self._follow = _Follow(table=Path(table), applied_version=since_version)
        return self.refresh()

    @property
    def applied_version(self) -> int | None:
        """Last nearline log version applied (None when not following)."""
        return None if self._follow is None else self._follow.applied_version

    def refresh(self, paths: FeedPaths | Path | None = None) -> int:
        """Apply the log's rows added since the last applied Delta version; returns rows applied.

        The log is append-only, so the new rows are the files the commits (applied, head] add, read from
        the commit files in ``_delta_log`` in commit order (so within one refresh the last row of a post
        wins). Rows of other kinds or model versions are ignored. A missing log table is "nothing yet" (0).
        """
        if paths is not None and (self._follow is None or self._follow.table != _log_path(paths)):
            self._follow = _Follow(table=_log_path(paths))
        if self._follow is None:
            raise ReplicaSourceError("refresh() before follow(): no nearline log to tail")
        fol = self._follow
        from deltalake import DeltaTable

        from pipelines import delta_io

        if not delta_io.exists(fol.table):
            return 0
        dt_ = DeltaTable(str(fol.table))
        head = dt_.version()
        if head <= fol.applied_version:
            return 0
        files = _added_files(fol.table, fol.applied_version, head)
        applied = self._apply_log_files(files, dt_)
        fol.applied_version = head
        fol.rows_applied += applied
        fol.last_refresh_s = time.time()
        return applied

    def _apply_log_files(self, files: list[Path], dt_: Any) -> int:
        if not files:
            return 0
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = [f.name for f in dt_.schema().fields]
        missing = [c for c in NEARLINE_COLUMNS if c not in names]
        if missing:
            raise ReplicaSourceError(f"{NEARLINE_EMBEDDINGS_TABLE} lacks column(s) {missing}; has {names}")
        cols = [*NEARLINE_COLUMNS, *(["deleted"] if "deleted" in names else [])]
        # one file at a time, in commit order (a dataset scan would not promise the order)
        parts = [pq.read_table(f, columns=cols) for f in files]
        return self._apply_log_rows(pa.concat_tables(parts, promote_options="permissive"))

    def _apply_log_rows(self, table: pa.Table) -> int:
        import pyarrow.compute as pc

        keep = pc.and_(pc.equal(table["kind"], "post"), pc.equal(table["model_version"], self.model_version))
        table = table.filter(keep)
        if not table.num_rows:
            return 0
        ids = table["entity_id"].to_numpy().astype(np.int64)
        # last row per post wins (log order)
        _, last_rev = np.unique(ids[::-1], return_index=True)
        last = np.sort(len(ids) - 1 - last_rev)
        table = table.take(last)
        ids = ids[last]
        deleted = (
            table["deleted"].fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
            if "deleted" in table.column_names
            else np.zeros(len(ids), dtype=bool)
        )
        n = 0
        if deleted.any():
            n += self.delete(ids[deleted])
            table, ids = table.filter(~deleted), ids[~deleted]
        table, ids = self._drop_bad_log_rows(table, ids)
        if table.num_rows:
            meta = PostMeta.of(
                table["author_id"].to_numpy(),
                epoch_seconds(table["created_at"]),
                table["format"].to_numpy(zero_copy_only=False),
            )
            n += self.upsert(
                ids, _embedding_matrix(table["embedding"], self.dim, NEARLINE_EMBEDDINGS_TABLE), meta
            )
        return n

    def _drop_bad_log_rows(self, table: pa.Table, ids: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """Rule for bad rows in the log: skip, count in ``self.skipped`` and log — one bad row must not stop
        the tail (refresh would fail on it forever, a poison pill)."""
        import pyarrow.compute as pc

        lengths = pc.list_value_length(table["embedding"]).fill_null(-1).to_numpy(zero_copy_only=False)
        meta_null = np.zeros(len(ids), dtype=bool)
        for col in ("author_id", "created_at", "format"):
            meta_null |= table[col].is_null().to_numpy(zero_copy_only=False)
        meta_null |= pc.fill_null(pc.equal(table["format"], ""), True).to_numpy(zero_copy_only=False)
        reasons = {"nearline_" + SKIP_WRONG_DIM: lengths != self.dim, "nearline_null_metadata": meta_null}
        ok = ~(reasons["nearline_" + SKIP_WRONG_DIM] | meta_null)
        if ok.any():
            vecs = _embedding_matrix(table.filter(ok)["embedding"], self.dim, NEARLINE_EMBEDDINGS_TABLE)
            finite = np.isfinite(vecs).all(axis=1)
            nonzero = finite & (np.linalg.norm(np.where(finite[:, None], vecs, 0.0), axis=1) > 1e-12)
            for name, bad in (
                ("nearline_" + SKIP_NON_FINITE, ~finite),
                ("nearline_" + SKIP_ZERO, ~nonzero & finite),
            ):
                full = np.zeros(len(ids), dtype=bool)
                full[np.flatnonzero(ok)[bad]] = True
                reasons[name] = full
            ok[np.flatnonzero(ok)[~nonzero]] = False
        for name, bad in reasons.items():
            if bad.any():
                self.skipped[name] = self.skipped.get(name, 0) + int(bad.sum())
                log.warning(
                    "replica: skipped %d log rows (%s), post ids %s", bad.sum(), name, ids[bad][:10].tolist()
                )
        return table.filter(ok), ids[ok]


def _added_files(table: Path, after: int, head: int) -> list[Path]:
    """Data files added by commits ``after+1 .. head`` of an append-only Delta table, in commit order.

    Read from the commit files (``_delta_log/<version>.json``, one action per line). When a commit file is
    gone (log clean-up past the retention period), falls back to the snapshot difference, ordered by the
    files' modification times.
    """
    log_dir = table / "_delta_log"
    out: list[str] = []
    for v in range(after + 1, head + 1):
        commit = log_dir / f"{v:020d}.json"
        if not commit.is_file():
            return _snapshot_diff(table, after, head)
        for line in commit.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "remove" in action and action["remove"].get("dataChange", True):
                raise ReplicaSourceError(
                    f"{table} version {v} removes data: the nearline log must be append-only"
                )
            if "add" in action and action["add"].get("dataChange", True):  # not an erasure's rewrite
                out.append(unquote(action["add"]["path"]))
    from pipelines.erase import resolve_rewritten

    return [table / f for f in resolve_rewritten(table, out)]


def _snapshot_diff(table: Path, after: int, head: int) -> list[Path]:
    import pyarrow as pa
    from deltalake import DeltaTable

    new = pa.table(DeltaTable(str(table), version=head).get_add_actions(flatten=True)).to_pydict()
    old = set() if after < 0 else set(DeltaTable(str(table), version=after).file_uris())
    rows = sorted(zip(new["modification_time"], new["path"], strict=True))
    files = [table / unquote(p) for _, p in rows]
    return [f for f in files if str(f) not in old and f.as_uri() not in old]


def _log_path(paths: FeedPaths | Path) -> Path:
    return Path(paths) if isinstance(paths, (str, Path)) else paths.table(NEARLINE_EMBEDDINGS_TABLE)


def epoch_seconds(col: Any) -> np.ndarray:
    """int64 epoch seconds from a timestamp (any unit/tz) or integer column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_timestamp(col.type):
        return pc.cast(col.cast(pa.timestamp("s", tz=col.type.tz), safe=False), pa.int64()).to_numpy()
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def _embedding_matrix(col: Any, dim: int | None, where: str) -> np.ndarray:
    """(N, D) float32 from a list<float> column; raises when rows differ in length or are null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.null_count:
        raise IndexInputError(f"{where}: {col.null_count} null embedding(s)")
    lengths = pc.list_value_length(col).to_numpy()
    want = dim if dim is not None else (int(lengths[0]) if len(lengths) else 0)
    if len(lengths) and (lengths != want).any():
        raise IndexInputError(
            f"{where}: embedding lengths {sorted(set(lengths.tolist()))} differ from the dimension {want}"
        )
    return col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), want)


# Skip reasons of a snapshot load (counted, never silent).
SKIP_DELETED = "deleted_post"  # embedded but not in raw_posts (the raw table has no deleted flag)
SKIP_WRONG_DIM = "wrong_dimension"  # embedding length differs from the version's dimension
SKIP_NON_FINITE = "non_finite_embedding"  # NaN or inf
SKIP_ZERO = "zero_norm_embedding"  # no direction, cosine undefined


def load_post_snapshot(
    paths: FeedPaths, model_version: str, dim: int | None = None
) -> tuple[np.ndarray, np.ndarray, PostMeta, dict[str, int]]:
    """``post_embeddings`` rows of ``model_version`` joined with raw_posts metadata, bad rows dropped.

    Returns (post_ids, unit vectors (N, D), meta, skipped by reason) ordered by post id. ``dim`` None = the
    most common embedding length of the version. Rules: posts missing from raw_posts are deleted
    (:data:`SKIP_DELETED`); rows of another length, with NaN/inf or all zeros are skipped and counted; a post
    id twice in one version is an :class:`IndexInputError` (the export replaces a version whole, so it
    means a corrupt table).
    """
    import pyarrow.compute as pc

    from pipelines import delta_io
    from training.retrieval.embed import check_model_version

    check_model_version(model_version)
    emb_path, raw_path = paths.table(POST_EMBEDDINGS_TABLE), paths.table(RAW_POSTS_TABLE)
    for p in (emb_path, raw_path):
        if not delta_io.exists(p):
            raise ReplicaSourceError(f"no Delta table at {p}; ingest data and export post embeddings first")
    emb = delta_io.read(
        emb_path, columns=["post_id", "embedding"], filter=pc.field("model_version") == model_version
    )
    if not emb.num_rows:
        have = sorted(set(delta_io.read(emb_path, columns=["model_version"])["model_version"].to_pylist()))
        raise ModelVersionMismatchError(
            f"{POST_EMBEDDINGS_TABLE} has no rows for model_version {model_version!r} (has {have})"
        )
    validate_ids(emb["post_id"].to_numpy())  # duplicates → IndexInputError naming them
    raw = delta_io.read(raw_path, columns=["post_id", "author_id", "created_at", "format"])
    # join by position (pyarrow's hash join cannot carry list columns): both sides sorted by post_id
    emb = emb.sort_by("post_id")
    raw = raw.sort_by("post_id")
    emb_ids, raw_ids = emb["post_id"].to_numpy(), raw["post_id"].to_numpy()
    live = np.isin(emb_ids, raw_ids)
    joined = emb.filter(live)
    at = np.searchsorted(raw_ids, emb_ids[live])
    for name in ("author_id", "created_at", "format"):
        joined = joined.append_column(name, raw[name].take(at))
    skipped = {SKIP_DELETED: int((~live).sum())}
    col = joined["embedding"].combine_chunks()
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    if dim is None:
        values, counts = np.unique(lengths[lengths > 0], return_counts=True)
        dim = int(values[np.argmax(counts)]) if len(values) else 0
    ok = lengths == dim
    skipped[SKIP_WRONG_DIM] = int((~ok).sum())
    joined = joined.filter(ok)
    vecs = _embedding_matrix(joined["embedding"], dim, POST_EMBEDDINGS_TABLE)
    finite = np.isfinite(vecs).all(axis=1)
    norms = np.linalg.norm(np.where(finite[:, None], vecs, 0.0), axis=1)
    nonzero = finite & (norms > 1e-12)
    skipped[SKIP_NON_FINITE] = int((~finite).sum())
    skipped[SKIP_ZERO] = int((finite & ~nonzero).sum())
    joined, vecs = joined.filter(nonzero), vecs[nonzero]
    ids = joined["post_id"].to_numpy().astype(np.int64)
    meta = PostMeta.of(
        joined["author_id"].to_numpy(),
        epoch_seconds(joined["created_at"]),
        joined["format"].to_numpy(zero_copy_only=False),
    )
    return ids, vecs, meta, {k: v for k, v in skipped.items() if v}


def exact_top_k(
    post_ids: np.ndarray,
    vectors: np.ndarray,
    meta: PostMeta,
    queries: np.ndarray,
    k: int,
    filters: Sequence[SearchFilter] | SearchFilter | None = None,
) -> list[SearchResult]:
    """Reference answer (numpy brute force with :meth:`SearchFilter.mask`), for tests and recall checks."""
    ids, vecs = validate_vectors(post_ids, vectors, vectors.shape[1])
    q = normalize_queries(queries, vecs.shape[1])
    out = []
    for qi, f in zip(q, normalize_filters(filters, len(q)), strict=True):
        mask = np.ones(len(ids), bool) if f is None else f.mask(ids, meta)
        sims = vecs[mask] @ qi
        order = np.argsort(-sims, kind="stable")[:k]
        out.append(SearchResult(ids[mask][order], sims[order].astype(np.float32)))
    return out
