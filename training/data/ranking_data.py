"""The GR ranking set (``feed train build-ranking-set``, pipelines/ranking_set.py) as flat numpy arrays.

Everything jagged is stored flat with offsets, so the packing loader (training/data/packing.py) gathers
batches with cumsum/repeat/take instead of per-example Python. numpy + pyarrow only.

Histories are not truncated here: an example's history is ``[history_end - max_history, history_end)`` of its
member's sequence, cut by the consumer. ``post_idx`` 0 is the unknown post (not in posts.parquet, counted in
``unknown_posts``); a known post without a vector has its own all-zero row. Em comes from build_report.json,
so every split of one set has the same member-embedding width even when a split has no embedding at all.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from training.ranking.features import CONTEXT_FEATURES, hash_strings

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")


class RankingDataError(ValueError):
    """The folder is not a ranking set, or its files contradict each other."""


@dataclass(frozen=True)
class RankingArrays:
    """One split of a ranking set. S interactions over M members, X examples, N targets, P posts."""

    # sequences (all members of the set, sorted by member_id, concatenated)
    seq_member: np.ndarray  # (M,) int64
    seq_offsets: np.ndarray  # (M+1,) int64
    post_idx: np.ndarray  # (S,) int32: row in post_table (0 = unknown post: zero vector)
    post_id: np.ndarray  # (S,) int64
    action: np.ndarray  # (S,) uint8 action code (training.ranking.features)
    device: np.ndarray  # (S,) int8 DEVICES code
    ts: np.ndarray  # (S,) int64 epoch seconds
    # examples (the split's (member, target block) rows, in (member, block) order)
    ex_seq: np.ndarray  # (X,) int32 row into seq_member
    ex_history_end: np.ndarray  # (X,) int32 exclusive end, relative to the member's sequence start
    ex_request_ts: np.ndarray  # (X,) int64
    ex_target_offsets: np.ndarray  # (X+1,) int64
    # targets (all examples concatenated)
    tgt_post_idx: np.ndarray  # (N,) int32
    tgt_post_id: np.ndarray  # (N,) int64
    tgt_action: np.ndarray  # (N,) uint8: the six labels
    tgt_device: np.ndarray  # (N,) int8
    tgt_session: np.ndarray  # (N,) int64
    tgt_context: np.ndarray  # (N, C) float32, NaN where the feature store had no value
    ex_profile: np.ndarray  # (X, 2) int64 hashed (industry, current_role); 0 = missing
    ex_member_emb: np.ndarray  # (X, Em) float32 (Em = 0 when the set has no member embeddings)
    ex_member_emb_present: np.ndarray  # (X,) bool
    post_table: np.ndarray  # (P+1, E) float32, row 0 zeros (E = 0 when the set has no post embeddings)
    post_author: np.ndarray  # (P+1,) int64 author of each post_table row, 0 = unknown
    unknown_posts: int = 0  # sequence + target items whose post_id has no row in posts.parquet (→ idx 0)

    def __post_init__(self) -> None:
        m, x = len(self.seq_member), len(self.ex_seq)
        assert self.seq_offsets.shape == (m + 1,), "seq_offsets must be (M+1,)"
        assert self.ex_target_offsets.shape == (x + 1,), "ex_target_offsets must be (X+1,)"
        assert self.tgt_context.ndim == 2, "tgt_context must be (N, C)"
        assert len(self.tgt_context) == len(self.tgt_post_id), "tgt_context must have a row per target"

    @property
    def n_examples(self) -> int:
        return len(self.ex_seq)

    @property
    def n_targets(self) -> int:
        return len(self.tgt_post_id)

    def history_start(self) -> np.ndarray:
        """(X,) int64 absolute start of each example's member sequence in the flat S arrays."""
        return self.seq_offsets[self.ex_seq]


def load_ranking_arrays(path: Path | str, split: str) -> RankingArrays:
    """Read ``split`` of the ranking set at ``path`` (sequences of every member, that split's examples)."""
    path = Path(path)
    if split not in SPLITS:
        raise RankingDataError(f"unknown split {split!r}; expected one of {SPLITS}")
    for needed in ("sequences", split, "posts.parquet"):
        if not (path / needed).exists():
            raise RankingDataError(f"{path} is not a ranking set: {path / needed} is missing")
    post_ids, post_table, post_author = _post_table(path / "posts.parquet")
    unknown = 0

    seq = _read(path / "sequences", ["member_id", "post_id", "action", "device", "ts"])
    seq = seq.take(pc.sort_indices(seq, [("member_id", "ascending")]))
    seq_member = seq.column("member_id").to_numpy()
    if len(np.unique(seq_member)) != len(seq_member):
        raise RankingDataError(f"{path / 'sequences'} holds a member twice")
    seq_offsets = _offsets(seq.column("post_id"))
    seq_post_id = _flat(seq.column("post_id"), np.int64)
    seq_post_idx, missing = _post_index(post_ids, seq_post_id)
    unknown += missing

    ex = _read(path / split, None)
    ex = ex.take(pc.sort_indices(ex, [("member_id", "ascending"), ("block_id", "ascending")]))
    ex_member = ex.column("member_id").to_numpy()
    ex_seq = np.searchsorted(seq_member, ex_member)
    if len(ex_member) and (
        ex_seq.max() >= len(seq_member) or not np.array_equal(seq_member[ex_seq], ex_member)
    ):
        raise RankingDataError(f"{path / split} has examples of members without a sequence")
    history_end = ex.column("history_end").to_numpy().astype(np.int32)
    seq_len = np.diff(seq_offsets)[ex_seq]
    if np.any(history_end < 0) or np.any(history_end > seq_len):
        raise RankingDataError(f"{path / split}: history_end outside the member's sequence")
    tgt_post_id = _flat(ex.column("post_id"), np.int64)
    tgt_post_idx, missing = _post_index(post_ids, tgt_post_id)
    unknown += missing
    context = np.stack([_flat(ex.column(name), np.float32) for name in CONTEXT_FEATURES], axis=1)
    emb, present = _member_embeddings(ex.column("member_embedding"), _member_embedding_dim(path))
    profile = np.stack(
        [
            hash_strings(ex.column("industry").to_pylist()),
            hash_strings(ex.column("current_role").to_pylist()),
        ],
        axis=1,
    ).reshape(len(ex_member), 2)
    if unknown:
        log.warning("%s/%s: %d items of posts not in posts.parquet (index 0)", path, split, unknown)
    return RankingArrays(
        seq_member=seq_member.astype(np.int64),
        seq_offsets=seq_offsets,
        post_idx=seq_post_idx,
        post_id=seq_post_id,
        action=_flat(seq.column("action"), np.uint8),
        device=_flat(seq.column("device"), np.int8),
        ts=_flat(seq.column("ts"), np.int64),
        ex_seq=ex_seq.astype(np.int32),
        ex_history_end=history_end,
        ex_request_ts=ex.column("request_ts").to_numpy().astype(np.int64),
        ex_target_offsets=_offsets(ex.column("post_id")),
        tgt_post_idx=tgt_post_idx,
        tgt_post_id=tgt_post_id,
        tgt_action=_flat(ex.column("action"), np.uint8),
        tgt_device=_flat(ex.column("device"), np.int8),
        tgt_session=_flat(ex.column("session_id"), np.int64),
        tgt_context=context.reshape(len(tgt_post_id), len(CONTEXT_FEATURES)),
        ex_profile=profile,
        ex_member_emb=emb,
        ex_member_emb_present=present,
        post_table=post_table,
        post_author=post_author,
        unknown_posts=unknown,
    )


def _read(folder: Path, columns: list[str] | None) -> pa.Table:
    files = sorted(str(p) for p in folder.glob("part-*.parquet"))
    if not files:
        raise RankingDataError(f"{folder} has no part-*.parquet files")
    return pads.dataset(files, format="parquet").to_table(columns=columns).combine_chunks()


def _offsets(lists: pa.ChunkedArray) -> np.ndarray:
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    if lists.null_count:
        raise RankingDataError("a list column has nulls")
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def _flat(lists: pa.ChunkedArray, dtype: type) -> np.ndarray:
    """The values of a list column (respecting slices/takes), as ``dtype``; a null value becomes NaN/0."""
    values = pc.list_flatten(lists)
    if values.null_count:
        values = values.fill_null(np.nan if np.issubdtype(dtype, np.floating) else 0)
    return np.asarray(values.to_numpy(), dtype=dtype) if len(values) else np.zeros(0, dtype=dtype)


def _post_table(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted post ids (P,), the (P+1, E) embedding table (row i+1 = post_ids[i]; zeros where missing) and
    the (P+1,) author ids (0 where unknown)."""
    posts = pads.dataset(str(file), format="parquet").to_table().combine_chunks()
    posts = posts.take(pc.sort_indices(posts, [("post_id", "ascending")]))
    ids = posts.column("post_id").to_numpy().astype(np.int64)
    emb = posts.column("embedding")
    lengths = pc.list_value_length(emb).fill_null(0).to_numpy(zero_copy_only=False)
    dims = set(np.unique(lengths[lengths > 0]).tolist())
    if len(dims) > 1:
        raise RankingDataError(f"{file}: embeddings of several sizes {sorted(dims)}")
    dim = dims.pop() if dims else 0
    table = np.zeros((len(ids) + 1, dim), dtype=np.float32)
    if dim:
        has = lengths > 0
        table[1:][has] = _flat(emb, np.float32).reshape(-1, dim)
    authors = np.zeros(len(ids) + 1, dtype=np.int64)
    if "author_id" in posts.column_names:
        authors[1:] = posts.column("author_id").fill_null(0).to_numpy().astype(np.int64)
    return ids, table, authors


def _post_index(post_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of ``ids`` in the post table (1-based; 0 = unknown) and how many were unknown."""
    pos = np.searchsorted(post_ids, ids)
    pos_c = np.minimum(pos, max(len(post_ids) - 1, 0))
    known = (pos < len(post_ids)) & (post_ids[pos_c] == ids) if len(post_ids) else np.zeros(len(ids), bool)
    return np.where(known, pos + 1, 0).astype(np.int32), int((~known).sum())


def _member_embedding_dim(path: Path) -> int | None:
    """Em of the whole set (build_report.json): one split may hold no embedding at all."""
    report = path / "build_report.json"
    if not report.is_file():
        return None
    dim = json.loads(report.read_text()).get("member_embedding", {}).get("dim")
    return None if dim is None else int(dim)


def _member_embeddings(column: pa.ChunkedArray, set_dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    present = column.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    dims = set(np.unique(lengths[present]).tolist())
    if len(dims) > 1 or (set_dim is not None and dims and dims != {set_dim}):
        raise RankingDataError(f"member embeddings of sizes {sorted(dims)}; the set says {set_dim}")
    dim = set_dim if set_dim is not None else (dims.pop() if dims else 0)
    out = np.zeros((len(present), dim), dtype=np.float32)
    if dim and present.any():
        out[present] = _flat(column, np.float32).reshape(-1, dim)
    return out, present.astype(bool)
