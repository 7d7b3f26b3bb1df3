"""The post index interface every serving index implements, and the input rules they all share.

Implementations: :class:`serving.index.milvus.MilvusPostIndex` (system of record, scale-out),
:class:`serving.index.replica.HnswReplica` (the in-process FAISS HNSW default serving path) and
:class:`serving.index.exact.ExactIndex` (exhaustive torch search, the GPU path). All of them score by cosine
similarity: vectors are L2-normalised on the way in, so cosine = inner product.

Only numpy is imported here: the GPU path imports this module with torch alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

MAX_IDS_IN_MESSAGE = 10  # error messages name at most this many offending post ids


class IndexInputError(ValueError):
    """Vectors, ids or metadata handed to an index break its rules; the message names the offending ids."""


class IndexConfigError(ValueError):
    """An index setting cannot be served (unknown index type, type the server cannot build, bad params)."""


class ModelVersionMismatchError(ValueError):
    """The index holds vectors of one model version and the caller encodes with another."""


def _ids_text(ids: Sequence[int] | np.ndarray) -> str:
    ids = [int(i) for i in ids]
    head = ", ".join(str(i) for i in ids[:MAX_IDS_IN_MESSAGE])
    more = f" … (+{len(ids) - MAX_IDS_IN_MESSAGE} more)" if len(ids) > MAX_IDS_IN_MESSAGE else ""
    return f"[{head}{more}]"


@dataclass(frozen=True)
class PostMeta:
    """Per-post fields serving filters on, aligned with the post ids of the same call."""

    author_id: np.ndarray  # int64 (N,)
    created_at: np.ndarray  # int64 epoch seconds (N,)
    format: np.ndarray  # object/str (N,)

    def __len__(self) -> int:
        return len(self.author_id)

    @classmethod
    def of(
        cls,
        author_id: Sequence[int] | np.ndarray,
        created_at: Sequence[int] | np.ndarray,
        format: Sequence[str] | np.ndarray,
    ) -> PostMeta:
        """Coerce to the canonical dtypes (int64, int64, object)."""
        return cls(
            author_id=np.asarray(author_id, dtype=np.int64).reshape(-1),
            created_at=np.asarray(created_at, dtype=np.int64).reshape(-1),
            format=np.asarray(format, dtype=object).reshape(-1),
        )

    @classmethod
    def empty(cls) -> PostMeta:
        return cls.of([], [], [])

    def take(self, idx: np.ndarray) -> PostMeta:
        """Rows ``idx`` (positions or a boolean mask)."""
        return PostMeta(self.author_id[idx], self.created_at[idx], self.format[idx])

    def validate(self, n: int, post_ids: np.ndarray | None = None) -> PostMeta:
        """Coerced copy; raises :class:`IndexInputError` unless every column has ``n`` rows and formats are
        non-empty strings."""
        meta = PostMeta.of(self.author_id, self.created_at, self.format)
        for name in ("author_id", "created_at", "format"):
            got = len(getattr(meta, name))
            if got != n:
                raise IndexInputError(f"PostMeta.{name} has {got} rows but there are {n} post ids")
        bad = [i for i, f in enumerate(meta.format) if not isinstance(f, str) or not f]
        if bad:
            ids = post_ids[bad] if post_ids is not None else bad
            raise IndexInputError(
                f"PostMeta.format must be a non-empty string; bad for post ids {_ids_text(ids)}"
            )
        return meta


@dataclass(frozen=True)
class SearchFilter:
    """What one query must not return. Every field is optional; the default filters nothing."""

    exclude_post_ids: frozenset[int] = frozenset()  # already seen
    exclude_author_id: int | None = None  # the member's own posts
    created_after: int | None = None  # epoch s, recency window (inclusive)
    formats: frozenset[str] | None = None  # allowed formats; None = all

    def __post_init__(self) -> None:
        # Accept any iterable from callers but keep the frozen, hashable types.
        object.__setattr__(self, "exclude_post_ids", frozenset(int(i) for i in self.exclude_post_ids))
        if self.formats is not None:
            object.__setattr__(self, "formats", frozenset(str(f) for f in self.formats))

    @property
    def is_empty(self) -> bool:
        return (
            not self.exclude_post_ids
            and self.exclude_author_id is None
            and self.created_after is None
            and self.formats is None
        )

    def mask(self, post_ids: np.ndarray, meta: PostMeta) -> np.ndarray:
        """Boolean (N,): True where the post passes this filter. The reference semantics for every index."""
        keep = np.ones(len(post_ids), dtype=bool)
        if self.exclude_post_ids:
            keep &= ~np.isin(post_ids, np.fromiter(self.exclude_post_ids, dtype=np.int64))
        if self.exclude_author_id is not None:
            keep &= meta.author_id != self.exclude_author_id
        if self.created_after is not None:
            keep &= meta.created_at >= self.created_after
        if self.formats is not None:
            keep &= np.isin(meta.format.astype(str), np.array(sorted(self.formats), dtype=str))
        return keep


@dataclass(frozen=True)
class SearchResult:
    """One query's answer."""

    post_ids: np.ndarray  # int64 (k',) best first, k' <= k (fewer when the filter leaves fewer)
    scores: np.ndarray  # float32 cosine
    extra: dict = field(default_factory=dict, compare=False)  # implementation notes (e.g. path taken)

    def __len__(self) -> int:
        return len(self.post_ids)


@runtime_checkable
class PostIndex(Protocol):
    """A cosine top-k index over post embeddings of one model version."""

    dim: int
    model_version: str

    def upsert(self, post_ids: np.ndarray, vectors: np.ndarray, meta: PostMeta) -> int:
        """Insert or replace; returns the number of rows written."""
        ...

    def delete(self, post_ids: np.ndarray) -> int:
        """Remove; returns the number of rows that were present."""
        ...

    def search(
        self, queries: np.ndarray, k: int, filters: Sequence[SearchFilter] | SearchFilter | None = None
    ) -> list[SearchResult]:
        """Top-``k`` per query row (1-D = one query). ``filters``: one for all queries or one per query."""
        ...

    def __len__(self) -> int: ...


def validate_ids(post_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """int64 (N,) ids; raises :class:`IndexInputError` on non-integers, negatives or duplicates."""
    arr = np.asarray(post_ids)
    if arr.ndim != 1:
        raise IndexInputError(f"post_ids must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise IndexInputError(f"post_ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    neg = arr[arr < 0]
    if neg.size:
        raise IndexInputError(f"post_ids must be >= 0; negative post ids {_ids_text(neg)}")
    uniq, counts = np.unique(arr, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise IndexInputError(f"duplicate post ids in one batch: {_ids_text(dup)}")
    return arr


def validate_vectors(
    post_ids: Sequence[int] | np.ndarray, vectors: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Check one write batch and return ``(post_ids int64 (N,), unit vectors float32 (N, dim))``.

    Raises :class:`IndexInputError` naming the offending post ids on: wrong dimension, NaN or inf, a zero
    vector (no direction, so no cosine), duplicate ids in the batch, or a row count that differs from the ids.
    """
    ids = validate_ids(post_ids)
    vec = np.asarray(vectors)
    if vec.ndim == 1 and ids.size == 1:
        vec = vec.reshape(1, -1)
    if vec.ndim != 2:
        raise IndexInputError(f"vectors must be 2-D (N, {dim}), got shape {vec.shape}")
    if vec.shape[0] != ids.size:
        raise IndexInputError(f"{vec.shape[0]} vectors for {ids.size} post ids")
    if vec.shape[1] != dim:
        raise IndexInputError(
            f"embedding dimension {vec.shape[1]} != index dimension {dim} for post ids {_ids_text(ids)}"
        )
    if vec.size and not np.issubdtype(vec.dtype, np.number):
        raise IndexInputError(f"vectors must be numeric, got dtype {vec.dtype}")
    vec = vec.astype(np.float32, copy=False)
    finite = np.isfinite(vec).all(axis=1)
    if not finite.all():
        raise IndexInputError(f"NaN or inf in the embeddings of post ids {_ids_text(ids[~finite])}")
    norms = np.linalg.norm(vec, axis=1)
    zero = norms < 1e-12
    if zero.any():
        raise IndexInputError(
            f"zero-norm embeddings (no direction, cosine undefined) for post ids {_ids_text(ids[zero])}"
        )
    return ids, np.ascontiguousarray(vec / norms[:, None], dtype=np.float32)


def normalize_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    """float32 (Q, dim) unit rows (a 1-D query is one row); :class:`IndexInputError` on bad rows."""
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q.reshape(1, -1)
    if q.ndim != 2 or q.shape[1] != dim:
        raise IndexInputError(f"queries must have shape (Q, {dim}), got {np.asarray(queries).shape}")
    q = q.astype(np.float32, copy=False)
    bad = ~np.isfinite(q).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(q), q, 0.0), axis=1)
    bad |= norms < 1e-12
    if bad.any():
        raise IndexInputError(
            f"query rows {np.flatnonzero(bad)[:MAX_IDS_IN_MESSAGE].tolist()} are NaN/inf or zero"
        )
    return np.ascontiguousarray(q / norms[:, None], dtype=np.float32)


def normalize_filters(
    filters: Sequence[SearchFilter] | SearchFilter | None, n_queries: int
) -> list[SearchFilter | None]:
    """One entry per query (None = no filter)."""
    if filters is None or isinstance(filters, SearchFilter):
        f = None if filters is None or filters.is_empty else filters
        return [f] * n_queries
    out = list(filters)
    if len(out) != n_queries:
        raise IndexInputError(f"{len(out)} filters for {n_queries} queries (pass one, or one per query)")
    for f in out:
        if f is not None and not isinstance(f, SearchFilter):
            raise IndexInputError(f"filters must be SearchFilter or None, got {type(f).__name__}")
    return [None if f is None or f.is_empty else f for f in out]


def check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise IndexInputError(f"k must be a positive integer, got {k!r}")
    return int(k)
