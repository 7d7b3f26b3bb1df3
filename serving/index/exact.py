"""Exhaustive cosine top-k in torch: the serving path on a GPU host (LinkedIn LiNR's matmul + top-k).

Vectors live as one dense ``(N, D)`` tensor on the chosen device in fp32, fp16 or bf16, unit-normalised on the
way in (cosine = inner product). A search multiplies the query block by the vectors block by block and keeps
a running top-k, so memory stays bounded whatever N and the batch are: one block of scores holds at most
``ExactConfig.block_elems`` numbers (default 2**24 → 64 MiB in fp32; 10M rows × 1,024 queries would otherwise
be 40 GB of scores). Filters become a boolean mask over metadata tensors held beside the vectors (author,
creation time, a small integer code per format) plus the positions of excluded post ids; masked scores are set
to -inf before the top-k, so a filtered search is still exact (no over-fetch, no recall loss).

Rows are kept dense: a delete moves the last rows into the holes (swap-remove), so an unfiltered search never
needs a liveness mask. The post id → row map is a Python dict (≈100 bytes per post: fine at 1M on a serving
host; a 10M-post GPU host would want an array-based map).

Importable with torch and numpy alone (no FAISS, pymilvus or Feast): the GPU machine has nothing else.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from serving.index.base import (
    IndexConfigError,
    IndexInputError,
    PostMeta,
    SearchFilter,
    SearchResult,
    check_k,
    normalize_filters,
    validate_ids,
    validate_vectors,
)

Dtype = Literal["fp32", "fp16", "bf16"]
TORCH_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ExactConfig:
    """Where and how the vectors are held and scored."""

    device: str = "cpu"  # "cpu", "cuda", "cuda:N", or "auto" (CUDA when torch sees one)
    dtype: Dtype = "fp32"  # fp16/bf16 halve memory and bandwidth; scores are returned as float32
    block_elems: int = 1 << 24  # scores per (queries × rows) block: bounds search memory (64 MiB in fp32)
    query_block: int = 1024  # queries scored together; a larger batch is split
    initial_capacity: int = 1024  # rows allocated up front; grows ×1.5 (amortised O(1) appends)

    def __post_init__(self) -> None:
        if self.dtype not in TORCH_DTYPES:
            raise IndexConfigError(f"dtype must be one of {sorted(TORCH_DTYPES)}, got {self.dtype!r}")
        if self.block_elems < 1 or self.query_block < 1 or self.initial_capacity < 1:
            raise IndexConfigError("block_elems, query_block and initial_capacity must be >= 1")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise IndexConfigError(f"device {self.device!r} asked for but torch sees no CUDA device")
        return dev


def _tensor(arr: np.ndarray) -> torch.Tensor:
    """Zero-copy when numpy allows it; read-only arrays (Arrow-backed) are copied (torch needs writable)."""
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


INT64_MIN = torch.iinfo(torch.int64).min
F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Run an ExactIndex method under the index's lock."""

    @functools.wraps(method)
    def wrapper(self: ExactIndex, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class _BlockFilter:
    """The filters of one query block as tensors, so one block of scores is masked in a few vector ops
    whatever mix of filters its queries carry. Rows = queries (or one row shared by all of them)."""

    created_after: torch.Tensor  # (R,) int64; INT64_MIN where a query has no recency window
    author: torch.Tensor | None  # (R,) int64 author to exclude
    author_on: torch.Tensor | None  # (R,) bool: the query excludes an author
    formats: torch.Tensor | None  # (R, n_codes) bool: allowed format codes (all True = any format)
    excl_row: torch.Tensor | None  # (E,) query row of each excluded post …
    excl_pos: torch.Tensor | None  # (E,) … and its index row

    def keep(self, index: ExactIndex, start: int, end: int) -> torch.Tensor:
        """Boolean (R, end - start): which index rows of the block each query may return."""
        keep = index._created[start:end][None, :] >= self.created_after[:, None]
        if self.author is not None and self.author_on is not None:
            keep &= (index._author[start:end][None, :] != self.author[:, None]) | ~self.author_on[:, None]
        if self.formats is not None:
            keep &= self.formats[:, index._fmt[start:end].long()]
        if self.excl_pos is not None and self.excl_row is not None:
            inside = (self.excl_pos >= start) & (self.excl_pos < end)
            keep[self.excl_row[inside], self.excl_pos[inside] - start] = False
        return keep


class ExactIndex:
    """A :class:`serving.index.base.PostIndex` answering every query by exhaustive cosine scoring.

    Thread-safety: writes and searches take one lock, so a search sees a write batch whole or not at all.
    """

    def __init__(self, dim: int, model_version: str, config: ExactConfig | None = None) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise IndexConfigError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.model_version = model_version
        self.config = config or ExactConfig()
        self.device = self.config.torch_device()
        self.dtype = TORCH_DTYPES[self.config.dtype]
        cap = self.config.initial_capacity
        self._n = 0
        self._vecs = torch.empty((cap, dim), dtype=self.dtype, device=self.device)  # rows [0, n) live
        self._author = torch.empty(cap, dtype=torch.int64, device=self.device)
        self._created = torch.empty(cap, dtype=torch.int64, device=self.device)
        self._fmt = torch.empty(cap, dtype=torch.int32, device=self.device)
        self._ids = np.empty(cap, dtype=np.int64)  # row → post id (host side: results are mapped on the host)
        self._pos: dict[int, int] = {}  # post id → row
        self._format_codes: dict[str, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return (
            f"ExactIndex(n={self._n}, dim={self.dim}, model_version={self.model_version!r}, "
            f"device={self.device}, dtype={self.config.dtype})"
        )

    @property
    def nbytes(self) -> int:
        """Device bytes held by the live vectors."""
        return self._n * self.dim * self._vecs.element_size()

    # --- writes -------------------------------------------------------------------------------------------

    def _grow(self, need: int) -> None:
        cap = self._vecs.shape[0]
        if need <= cap:
            return
        new_cap = max(need, int(cap * 1.5) + 1)

        def grown(t: torch.Tensor) -> torch.Tensor:
            out = torch.empty((new_cap, *t.shape[1:]), dtype=t.dtype, device=t.device)
            out[: self._n] = t[: self._n]
            return out

        self._vecs = grown(self._vecs)
        self._author = grown(self._author)
        self._created = grown(self._created)
        self._fmt = grown(self._fmt)
        ids = np.empty(new_cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._ids = ids

    def _codes(self, formats: np.ndarray) -> np.ndarray:
        out = np.empty(len(formats), dtype=np.int32)
        for i, f in enumerate(formats):
            out[i] = self._format_codes.setdefault(f, len(self._format_codes))
        return out

    @_locked
    def upsert(self, post_ids: np.ndarray, vectors: np.ndarray, meta: PostMeta) -> int:
        """Insert new posts and overwrite existing ones (vector and metadata); returns the rows written."""
        ids, unit = validate_vectors(post_ids, vectors, self.dim)
        meta = meta.validate(len(ids), ids)
        if not len(ids):
            return 0
        rows = np.fromiter((self._pos.get(i, -1) for i in ids.tolist()), dtype=np.int64, count=len(ids))
        new = rows < 0
        n_new = int(new.sum())
        self._grow(self._n + n_new)
        rows[new] = np.arange(self._n, self._n + n_new)
        self._ids[rows[new]] = ids[new]
        self._pos.update(zip(ids[new].tolist(), rows[new].tolist(), strict=True))
        self._n += n_new

        at = _tensor(rows).to(self.device)
        self._vecs[at] = _tensor(unit).to(self.device, self.dtype)
        self._author[at] = _tensor(meta.author_id).to(self.device)
        self._created[at] = _tensor(meta.created_at).to(self.device)
        self._fmt[at] = _tensor(self._codes(meta.format)).to(self.device)
        return len(ids)

    @_locked
    def delete(self, post_ids: np.ndarray) -> int:
        """Remove posts (unknown ids are ignored); returns how many were present."""
        ids = validate_ids(post_ids)
        gone = np.array(
            sorted(p for i in ids.tolist() if (p := self._pos.pop(i, None)) is not None), dtype=np.int64
        )
        if not gone.size:
            return 0
        new_n = self._n - gone.size
        holes = gone[gone < new_n]  # rows to refill, ascending
        tail = np.setdiff1d(np.arange(new_n, self._n), gone, assume_unique=True)  # survivors past new_n
        if holes.size:  # swap-remove: the surviving tail rows move into the holes
            dst = torch.from_numpy(holes).to(self.device)
            src = torch.from_numpy(tail).to(self.device)
            for t in (self._vecs, self._author, self._created, self._fmt):
                t[dst] = t[src]
            moved = self._ids[tail]
            self._ids[holes] = moved
            self._pos.update(zip(moved.tolist(), holes.tolist(), strict=True))
        self._n = new_n
        return int(gone.size)

    # --- search -------------------------------------------------------------------------------------------

    def _queries(self, queries: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(Q, D) unit queries on the device in the index dtype; IndexInputError on bad rows."""
        if not isinstance(queries, torch.Tensor):
            arr = np.asarray(queries)
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise IndexInputError(f"queries must be numeric, got dtype {arr.dtype}")
            queries = _tensor(arr)
        q = queries
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise IndexInputError(f"queries must have shape (Q, {self.dim}), got {tuple(q.shape)}")
        if not (q.is_floating_point() or q.dtype in (torch.int32, torch.int64)):
            raise IndexInputError(f"queries must be numeric, got dtype {q.dtype}")
        q = q.to(self.device, torch.float32)
        norms = torch.linalg.vector_norm(q, dim=1)
        bad = ~torch.isfinite(q).all(dim=1) | ~(norms > 1e-12)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:10].tolist()
            raise IndexInputError(f"query rows {rows} are NaN/inf or zero")
        return (q / norms[:, None]).to(self.dtype)

    def _block_filter(self, filters: list[SearchFilter | None]) -> _BlockFilter | None:
        """Tensors for one query block's filters; one shared row when every query has the same filter."""
        if all(f is None for f in filters):
            return None
        rows = [filters[0]] if len(set(filters)) == 1 else filters
        dev, r = self.device, len(rows)
        author = author_on = formats = excl_row = excl_pos = None
        created = torch.tensor(  # always present: the block mask starts from it (one cheap compare)
            [INT64_MIN if f is None or f.created_after is None else f.created_after for f in rows],
            dtype=torch.int64,
            device=dev,
        )
        if any(f is not None and f.exclude_author_id is not None for f in rows):
            on = [f is not None and f.exclude_author_id is not None for f in rows]
            author = torch.tensor(
                [f.exclude_author_id if o and f else 0 for f, o in zip(rows, on, strict=True)], device=dev
            )
            author_on = torch.tensor(on, dtype=torch.bool, device=dev)
        if any(f is not None and f.formats is not None for f in rows):
            table = torch.ones((r, max(1, len(self._format_codes))), dtype=torch.bool)
            for j, f in enumerate(rows):
                if f is not None and f.formats is not None:
                    table[j] = False
                    known = [self._format_codes[x] for x in f.formats if x in self._format_codes]
                    table[j, known] = True
            formats = table.to(dev)
        pairs = [
            (j, p)
            for j, f in enumerate(rows)
            if f is not None
            for i in f.exclude_post_ids
            if (p := self._pos.get(i)) is not None
        ]
        if pairs:
            both = torch.tensor(pairs, dtype=torch.int64, device=dev)
            excl_row, excl_pos = both[:, 0], both[:, 1]
        return _BlockFilter(created, author, author_on, formats, excl_row, excl_pos)

    def _topk_block(
        self, q: torch.Tensor, k: int, filt: _BlockFilter | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Running top-k of one query block over all rows: (values (B, k), rows (B, k)); -inf = filtered."""
        b = q.shape[0]
        step = max(1, self.config.block_elems // b)
        best_v: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for start in range(0, self._n, step):
            end = min(self._n, start + step)
            scores = q @ self._vecs[start:end].T  # (B, C)
            keep = filt.keep(self, start, end) if filt is not None else None  # (B or 1, C)
            if keep is not None:
                scores.masked_fill_(~keep, float("-inf"))
            v, i = torch.topk(scores, min(k, end - start), dim=1)
            i += start
            if best_v is None or best_i is None:
                best_v, best_i = v, i
            else:
                v = torch.cat([best_v, v], dim=1)
                i = torch.cat([best_i, i], dim=1)
                best_v, sel = torch.topk(v, min(k, v.shape[1]), dim=1)
                best_i = torch.gather(i, 1, sel)
        assert best_v is not None
        assert best_i is not None
        return best_v, best_i

    @_locked
    def search(
        self,
        queries: np.ndarray | torch.Tensor,
        k: int,
        filters: Sequence[SearchFilter] | SearchFilter | None = None,
    ) -> list[SearchResult]:
        """Exact cosine top-``k`` per query row (1-D = one query), best first; filtered rows never appear."""
        k = check_k(k)
        q = self._queries(queries)
        per_query = normalize_filters(filters, q.shape[0])
        if self._n == 0:
            empty = SearchResult(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
            return [empty for _ in per_query]
        kk = min(k, self._n)
        out: list[SearchResult] = []
        qb = self.config.query_block
        for lo in range(0, q.shape[0], qb):
            filt = self._block_filter(per_query[lo : lo + qb])
            with torch.no_grad():
                vals, rows = self._topk_block(q[lo : lo + qb], kk, filt)
            vals_np = vals.float().cpu().numpy()
            rows_np = rows.cpu().numpy()
            for v, r in zip(vals_np, rows_np, strict=True):
                hit = np.isfinite(v)  # -inf = filtered out (fewer than k rows passed)
                out.append(SearchResult(self._ids[r[hit]], v[hit].astype(np.float32)))
        return out

    # --- bulk ---------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        post_ids: np.ndarray,
        vectors: np.ndarray,
        meta: PostMeta,
        model_version: str,
        config: ExactConfig | None = None,
    ) -> ExactIndex:
        """An index holding exactly these posts (capacity sized to fit, one upsert)."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise IndexInputError(f"vectors must be 2-D (N, D), got shape {vectors.shape}")
        base = config or ExactConfig()
        sized = ExactConfig(
            device=base.device,
            dtype=base.dtype,
            block_elems=base.block_elems,
            query_block=base.query_block,
            initial_capacity=max(1, len(vectors)),
        )
        index = cls(int(vectors.shape[1]), model_version, sized)
        index.upsert(post_ids, vectors, meta)
        return index
