"""Token-budget packing for the generative ranker: variable-length (history, targets) examples are packed into
batches of at most ``token_budget`` tokens, kept jagged (flat tensors + per-sequence offsets), never padded.

Pipeline (everything over whole columns; the only Python loops run once per *batch*, never per example):

1. :func:`split_examples` (once per loader): each example's history is the member's interactions
   ``[max(0, end - max_history), end)`` (newest kept, in order; an empty history is a cold start) and its cost
   is ``history × tokens_per_history_item + n_targets`` (2 tokens per history item when the model interleaves
   action tokens). An example over the budget has its targets split evenly over several *units* that share the
   history; when even ``history + 1 target`` is over the budget the history is cut further (newest kept).
2. :func:`plan_batches` (once per epoch): a seeded shuffle, then either ``next_fit`` (batches are runs of
   the shuffled order; one ``bisect`` over the cumulative cost per batch) or ``sorted_window`` (default):
   windows of ``window`` shuffled units are sorted by cost, and each batch takes the largest remaining units
   from the front of the window (a run of the cumulative sum) and fills the gap with the smallest from the
   back — two ``bisect`` calls per batch, waste per batch below the smallest unit left. The part-filled last
   batch of a window is carried into the next window, so only the epoch's final batch is part-filled
   (``drop_last`` drops it). Batch order is shuffled again, since a window makes its big-unit batches first.
3. :meth:`PackedLoader.gather` (per batch): one flat index per jagged field (:func:`ragged_index`: repeat +
   cumsum + arange) and one ``np.take`` per column; then ``torch.from_numpy`` — no copy beyond the gather.
   When CUDA is present the batches are pinned and built by a background thread ``prefetch`` batches ahead;
   numpy's ``take`` releases the GIL on plain dtypes, so this overlaps with the training step.

Context features (``cand_context``) may hold NaN (Feast had no value); they pass through unchanged — the model
owns the NaN policy (its context encoder masks them), so the loader never invents a fill value.

:class:`PaddedDataLoader` is the baseline the benchmark compares against: a plain
``torch.utils.data.DataLoader`` over the same units with a collate that pads every sequence to the batch
maximum.
"""

from __future__ import annotations

import queue
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from training.ranking.features import TASKS, decode_actions  # bit i of the action code = task i

if TYPE_CHECKING:
    from training.data.ranking_data import RankingArrays

Strategy = Literal["sorted_window", "next_fit"]
STRATEGIES: tuple[str, ...] = ("sorted_window", "next_fit")


def action_labels(action: np.ndarray) -> np.ndarray:
    """Action codes (n,) uint8 → labels (n, 6) float32 in :data:`TASKS` order (bit i = task i)."""
    return decode_actions(action).astype(np.float32)


# --- pure helpers ------------------------------------------------------------------------------------------


def ragged_index(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat row index of the ranges ``[starts[i], starts[i] + lengths[i])`` concatenated, and their offsets.

    ``index = repeat(starts - offsets[:-1], lengths) + arange(total)`` — one pass, no loop over ranges.
    Returns ``(index (total,) int64, offsets (n+1,) int64)``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    index = np.repeat(np.asarray(starts, dtype=np.int64) - offsets[:-1], lengths)
    index += np.arange(total, dtype=np.int64)
    return index, offsets


def ragged_gather(
    columns: Sequence[np.ndarray], starts: np.ndarray, lengths: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Gather the same ragged ranges from several columns (axis 0): one ``np.take`` per column."""
    index, offsets = ragged_index(starts, lengths)
    return [col.take(index, axis=0) for col in columns], offsets


@dataclass(frozen=True)
class PackingUnits:
    """What gets packed: examples after the over-budget ones are split (U ≥ X units).

    Each unit is (example, history range, target range); a split example's units share the history and
    partition its targets in order.
    """

    example: np.ndarray  # (U,) int64 row into the examples
    hist_start: np.ndarray  # (U,) int64 absolute row into the sequence columns
    hist_len: np.ndarray  # (U,) int64
    tgt_start: np.ndarray  # (U,) int64 absolute row into the target columns
    tgt_len: np.ndarray  # (U,) int64
    cost: np.ndarray  # (U,) int64 tokens = hist_len × tokens_per_history_item + tgt_len
    n_examples: int
    n_split: int  # examples whose targets were split over several units
    n_history_cut: int  # examples whose history was cut below max_history to fit the budget

    def __len__(self) -> int:
        return len(self.example)


def split_examples(
    arrays: RankingArrays, token_budget: int, max_history: int, tokens_per_history_item: int = 1
) -> PackingUnits:
    """Examples → packing units that each fit ``token_budget`` (vectorised; see the module docstring)."""
    if tokens_per_history_item not in (1, 2):
        raise ValueError(f"tokens_per_history_item must be 1 or 2, got {tokens_per_history_item}")
    if token_budget < 2:
        raise ValueError(f"token_budget must be >= 2 (one history item + one target), got {token_budget}")
    if max_history < 0:
        raise ValueError(f"max_history must be >= 0, got {max_history}")
    tph = tokens_per_history_item
    ex_seq = np.asarray(arrays.ex_seq, dtype=np.int64)
    end_rel = np.asarray(arrays.ex_history_end, dtype=np.int64)
    seq_start = arrays.seq_offsets[ex_seq]
    if len(ex_seq) and ((end_rel < 0).any() or (end_rel > arrays.seq_offsets[ex_seq + 1] - seq_start).any()):
        raise ValueError("ex_history_end outside the member's sequence")
    end_abs = seq_start + end_rel
    n_tgt = np.diff(arrays.ex_target_offsets).astype(np.int64)

    hist = np.minimum(end_rel, max_history)
    fit = np.minimum(hist, (token_budget - 1) // tph)  # history + 1 target must fit
    cap = token_budget - fit * tph  # targets per unit, >= 1
    chunks = np.maximum(1, -(-n_tgt // cap))  # ceil; an example without targets stays one unit

    example = np.repeat(np.arange(len(ex_seq), dtype=np.int64), chunks)
    first = np.repeat(np.cumsum(chunks) - chunks, chunks)
    j = np.arange(len(example), dtype=np.int64) - first  # chunk number within its example
    k = chunks[example]
    n = n_tgt[example]
    lo, hi = n * j // k, n * (j + 1) // k  # even split: unit sizes differ by at most one
    hist_len = fit[example]
    tgt_len = hi - lo
    return PackingUnits(
        example=example,
        hist_start=end_abs[example] - hist_len,
        hist_len=hist_len,
        tgt_start=arrays.ex_target_offsets[example].astype(np.int64) + lo,
        tgt_len=tgt_len,
        cost=hist_len * tph + tgt_len,
        n_examples=len(ex_seq),
        n_split=int((chunks > 1).sum()),
        n_history_cut=int((fit < hist).sum()),
    )


def _next_fit(cost: np.ndarray, budget: int) -> np.ndarray:
    """Batch boundaries (positions into ``cost``) so that each run of consecutive units fits the budget."""
    csum = np.concatenate([[0], np.cumsum(cost)]).tolist()
    bounds, i, n = [0], 0, len(cost)
    while i < n:
        i = bisect_right(csum, csum[i] + budget, lo=i + 1, hi=n + 1) - 1
        if i == bounds[-1]:  # a zero-length step would mean a unit over budget: split_examples prevents it
            raise ValueError("a unit exceeds the token budget")
        bounds.append(i)
    return np.asarray(bounds, dtype=np.int64)


def _two_ended(cost: np.ndarray, budget: int) -> list[np.ndarray]:
    """Pack units sorted by descending cost: each batch = the largest remaining (front run) + the smallest
    remaining that fill the gap (back run). Returns the batches as positions into ``cost``, the last one the
    part-filled middle."""
    csum = np.concatenate([[0], np.cumsum(cost)]).tolist()
    out: list[np.ndarray] = []
    i, j = 0, len(cost)
    while i < j:
        e = bisect_right(csum, csum[i] + budget, lo=i, hi=j + 1) - 1  # front run [i, e)
        if e == i:
            raise ValueError("a unit exceeds the token budget")
        gap = budget - (csum[e] - csum[i])
        s = bisect_left(csum, csum[j] - gap, lo=e, hi=j + 1)  # back run [s, j): sum <= gap
        out.append(np.r_[i:e, s:j])
        i, j = e, s
    return out


def plan_batches(
    cost: np.ndarray,
    budget: int,
    *,
    order: np.ndarray,
    strategy: Strategy = "sorted_window",
    window: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign units (visited in ``order``) to batches of at most ``budget`` tokens.

    Returns ``(units, offsets)``: batch b holds units ``units[offsets[b]:offsets[b+1]]``; the last batch is
    the part-filled one (callers shuffle the rest). Loops run once per batch, not per unit.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown packing strategy {strategy!r}; choose from {STRATEGIES}")
    order = np.asarray(order, dtype=np.int64)
    if strategy == "next_fit":
        return order, _next_fit(cost[order], budget)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    pieces: list[np.ndarray] = []
    sizes: list[int] = []
    carry = np.empty(0, dtype=np.int64)
    for w in range(0, len(order), window):
        ids = np.concatenate([carry, order[w : w + window]])
        ids = ids[np.argsort(-cost[ids], kind="stable")]
        batches = _two_ended(cost[ids], budget)
        last = w + window >= len(order)
        keep = batches if last else batches[:-1]
        pieces.extend(ids[b] for b in keep)
        sizes.extend(len(b) for b in keep)
        carry = np.empty(0, dtype=np.int64) if last else ids[batches[-1]]
    units = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return units, offsets


# --- batches -----------------------------------------------------------------------------------------------


def _tensor_fields(obj: Any) -> dict[str, Any]:
    return {
        f.name: getattr(obj, f.name) for f in fields(obj) if isinstance(getattr(obj, f.name), torch.Tensor)
    }


@dataclass
class PackedBatch:
    """B packed examples, jagged: sequence b's history is ``hist_*[hist_offsets[b]:hist_offsets[b+1]]``
    (oldest first, newest ``max_history`` kept), its candidates ``cand_*[cand_offsets[b]:cand_offsets[b+1]]``.
    """

    hist_post_idx: torch.Tensor  # (H,) int64 row in the post table (0 = unknown post)
    hist_post_id: torch.Tensor  # (H,) int64
    hist_action: torch.Tensor  # (H,) int64 action code 0..63
    hist_ts: torch.Tensor  # (H,) int64 epoch seconds
    hist_offsets: torch.Tensor  # (B+1,) int64
    cand_post_idx: torch.Tensor  # (N,) int64
    cand_post_id: torch.Tensor  # (N,) int64
    cand_device: torch.Tensor  # (N,) int64
    cand_context: torch.Tensor  # (N, C) float32, NaN passed through (the model masks it)
    cand_offsets: torch.Tensor  # (B+1,) int64
    cand_session: torch.Tensor  # (N,) int64
    labels: torch.Tensor  # (N, 6) float32, TASKS order
    request_ts: torch.Tensor  # (B,) int64
    profile: torch.Tensor  # (B, 2) int64 hashed industry, current_role
    member_emb: torch.Tensor  # (B, Em) float32
    member_emb_present: torch.Tensor  # (B,) bool
    example_index: torch.Tensor  # (B,) int64 row into the examples (a split example: several batches)
    target_index: torch.Tensor  # (N,) int64 row into the targets: where predictions go back to
    n_tokens: int  # real tokens: H × tokens_per_history_item + N
    budget: int

    @property
    def num_candidates(self) -> torch.Tensor:
        return self.cand_offsets[1:] - self.cand_offsets[:-1]  # (B,)

    def __len__(self) -> int:
        return len(self.request_ts)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PackedBatch:
        return replace(
            self, **{k: v.to(device, non_blocking=non_blocking) for k, v in _tensor_fields(self).items()}
        )

    def pin_memory(self) -> PackedBatch:
        return replace(self, **{k: v.pin_memory() for k, v in _tensor_fields(self).items()})


def _cuda() -> bool:
    return torch.cuda.is_available()


class PackedLoader:
    """Iterates :class:`PackedBatch` es of at most ``token_budget`` tokens; one pass = one epoch, reshuffled
    each pass (seed + epoch, as ``DistributedSampler``; :meth:`set_epoch` pins it).

    ``pin_memory`` / ``threaded`` default to "CUDA is present"; ``prefetch`` is the background thread's queue
    depth (0: build batches on the caller's thread). Evaluation in example order: ``shuffle=False,
    strategy="next_fit"`` (``sorted_window`` regroups units by size); either way ``example_index`` and
    ``target_index`` say where each prediction belongs.
    """

    def __init__(
        self,
        arrays: RankingArrays,
        token_budget: int,
        max_history: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        prefetch: int = 2,
        *,
        tokens_per_history_item: int = 1,
        strategy: Strategy = "sorted_window",
        window: int = 4096,
        pin_memory: bool | None = None,
        threaded: bool | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown packing strategy {strategy!r}; choose from {STRATEGIES}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.arrays = arrays
        self.token_budget = token_budget
        self.max_history = max_history
        self.tokens_per_history_item = tokens_per_history_item
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.strategy: Strategy = strategy
        self.window = window
        self.pin_memory = _cuda() if pin_memory is None else pin_memory
        self.threaded = self.pin_memory if threaded is None else threaded
        self.prefetch = prefetch
        self.units = split_examples(arrays, token_budget, max_history, tokens_per_history_item)
        self.epoch = 0
        self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(units, offsets)`` for ``epoch`` (default: the next one): batch b = unit ids
        ``units[offsets[b]:offsets[b+1]]`` in iteration order."""
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._plans:
            self._plans = {epoch: self._make_plan(epoch)}  # keep one: a plan is O(U)
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.units)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n, dtype=np.int64)
        units, offsets = plan_batches(
            self.units.cost, self.token_budget, order=order, strategy=self.strategy, window=self.window
        )
        n_batches = len(offsets) - 1
        if self.drop_last and n_batches:
            n_batches -= 1  # the final, part-filled batch
        if not self.shuffle:
            return units[: offsets[n_batches]], offsets[: n_batches + 1]
        perm = rng.permutation(n_batches)
        sizes = np.diff(offsets)[perm]
        positions, new_offsets = ragged_index(offsets[:-1][perm], sizes)
        return units[positions], new_offsets

    def __len__(self) -> int:
        return len(self.plan()[1]) - 1

    def stats(self, epoch: int | None = None) -> dict[str, float | int]:
        """Packing efficiency of an epoch's plan: real tokens / (batches × budget)."""
        units, offsets = self.plan(epoch)
        n_batches = len(offsets) - 1
        tokens = int(self.units.cost[units].sum())
        return {
            "batches": n_batches,
            "units": len(units),
            "tokens": tokens,
            "packing_efficiency": tokens / (n_batches * self.token_budget) if n_batches else 0.0,
        }

    def gather(self, unit_ids: np.ndarray) -> PackedBatch:
        """One batch from unit ids: one flat index per jagged field, one ``np.take`` per column."""
        a, u = self.arrays, self.units
        ex = u.example[unit_ids]
        (h_idx, h_act, h_id, h_ts), h_off = ragged_gather(
            (a.post_idx, a.action, a.post_id, a.ts), u.hist_start[unit_ids], u.hist_len[unit_ids]
        )
        t_rows, t_off = ragged_index(u.tgt_start[unit_ids], u.tgt_len[unit_ids])
        t_act = a.tgt_action.take(t_rows)
        h, n = len(h_idx), len(t_rows)

        def i64(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x.astype(np.int64, copy=False))

        return PackedBatch(
            hist_post_idx=i64(h_idx),
            hist_post_id=i64(h_id),
            hist_action=i64(h_act),
            hist_ts=i64(h_ts),
            hist_offsets=torch.from_numpy(h_off),
            cand_post_idx=i64(a.tgt_post_idx.take(t_rows)),
            cand_post_id=i64(a.tgt_post_id.take(t_rows)),
            cand_device=i64(a.tgt_device.take(t_rows)),
            cand_context=torch.from_numpy(a.tgt_context.take(t_rows, axis=0).astype(np.float32, copy=False)),
            cand_offsets=torch.from_numpy(t_off),
            cand_session=i64(a.tgt_session.take(t_rows)),
            labels=torch.from_numpy(action_labels(t_act)),
            request_ts=i64(a.ex_request_ts.take(ex)),
            profile=i64(a.ex_profile.take(ex, axis=0)),
            member_emb=torch.from_numpy(a.ex_member_emb.take(ex, axis=0).astype(np.float32, copy=False)),
            member_emb_present=torch.from_numpy(a.ex_member_emb_present.take(ex).astype(bool, copy=False)),
            example_index=torch.from_numpy(ex),
            target_index=torch.from_numpy(t_rows),
            n_tokens=h * self.tokens_per_history_item + n,
            budget=self.token_budget,
        )

    def _batches(self, units: np.ndarray, offsets: np.ndarray) -> Iterator[PackedBatch]:
        for b in range(len(offsets) - 1):
            batch = self.gather(units[offsets[b] : offsets[b + 1]])
            yield batch.pin_memory() if self.pin_memory else batch

    def __iter__(self) -> Iterator[PackedBatch]:
        units, offsets = self.plan()
        self._plans.pop(self.epoch, None)
        self.epoch += 1
        source = self._batches(units, offsets)
        if self.threaded and self.prefetch > 0:
            return _prefetch(source, self.prefetch)
        return source


class _Prefetcher:
    """Runs ``source`` on a daemon thread, ``depth`` items ahead; an exception there is re-raised here, and
    stopping early (``close()`` / garbage collection of the generator) stops the thread."""

    _DONE = object()

    def __init__(self, source: Iterator[Any], depth: int) -> None:
        self.source = source
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name="packed-loader-prefetch", daemon=True)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def _work(self) -> None:
        try:
            for item in self.source:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)

    def __iter__(self) -> Iterator[Any]:
        self.thread.start()
        try:
            while (item := self.queue.get()) is not self._DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()
            self.thread.join()


def _prefetch(source: Iterator[Any], depth: int) -> Iterator[Any]:
    return iter(_Prefetcher(source, depth))


# --- the baseline: DataLoader + pad-to-max collate ---------------------------------------------------------


@dataclass
class PaddedBatch:
    """B examples padded to the batch maximum (right padding, ``*_mask`` True on real positions)."""

    hist_post_idx: torch.Tensor  # (B, Lh) int64
    hist_post_id: torch.Tensor  # (B, Lh) int64
    hist_action: torch.Tensor  # (B, Lh) int64
    hist_ts: torch.Tensor  # (B, Lh) int64
    hist_mask: torch.Tensor  # (B, Lh) bool
    cand_post_idx: torch.Tensor  # (B, Lc) int64
    cand_post_id: torch.Tensor  # (B, Lc) int64
    cand_device: torch.Tensor  # (B, Lc) int64
    cand_context: torch.Tensor  # (B, Lc, C) float32
    cand_session: torch.Tensor  # (B, Lc) int64
    cand_mask: torch.Tensor  # (B, Lc) bool
    labels: torch.Tensor  # (B, Lc, 6) float32
    request_ts: torch.Tensor  # (B,) int64
    profile: torch.Tensor  # (B, 2) int64
    member_emb: torch.Tensor  # (B, Em) float32
    member_emb_present: torch.Tensor  # (B,) bool
    example_index: torch.Tensor  # (B,) int64
    target_index: torch.Tensor  # (B, Lc) int64, -1 on padding
    n_tokens: int  # real tokens
    padded_tokens: int  # B × (Lh × tokens_per_history_item + Lc)

    def __len__(self) -> int:
        return len(self.request_ts)


class UnitDataset(torch.utils.data.Dataset):
    """Map-style dataset over packing units: item i = one unit's history and targets, sliced per sample (what
    a plain ``DataLoader`` pipeline does)."""

    def __init__(self, arrays: RankingArrays, units: PackingUnits) -> None:
        self.arrays = arrays
        self.units = units

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> dict[str, Any]:
        a, u = self.arrays, self.units
        ex = int(u.example[i])
        h = slice(int(u.hist_start[i]), int(u.hist_start[i] + u.hist_len[i]))
        t = slice(int(u.tgt_start[i]), int(u.tgt_start[i] + u.tgt_len[i]))
        return {
            "hist_post_idx": a.post_idx[h],
            "hist_post_id": a.post_id[h],
            "hist_action": a.action[h],
            "hist_ts": a.ts[h],
            "cand_post_idx": a.tgt_post_idx[t],
            "cand_post_id": a.tgt_post_id[t],
            "cand_device": a.tgt_device[t],
            "cand_context": a.tgt_context[t],
            "cand_session": a.tgt_session[t],
            "cand_action": a.tgt_action[t],
            "target_index": np.arange(t.start, t.stop, dtype=np.int64),
            "request_ts": a.ex_request_ts[ex],
            "profile": a.ex_profile[ex],
            "member_emb": a.ex_member_emb[ex],
            "member_emb_present": a.ex_member_emb_present[ex],
            "example_index": ex,
        }


_HIST = ("hist_post_idx", "hist_post_id", "hist_action", "hist_ts")
_CAND = ("cand_post_idx", "cand_post_id", "cand_device", "cand_session")


def pad_collate(items: list[dict[str, Any]], tokens_per_history_item: int = 1) -> PaddedBatch:
    """Pad every history and candidate list to the batch maximum (the baseline's collate)."""
    b = len(items)
    lh = max((len(it["hist_post_idx"]) for it in items), default=0)
    lc = max((len(it["cand_post_idx"]) for it in items), default=0)
    c = items[0]["cand_context"].shape[1] if items else 0
    out = {k: np.zeros((b, lh), dtype=np.int64) for k in _HIST}
    out |= {k: np.zeros((b, lc), dtype=np.int64) for k in _CAND}
    out["target_index"] = np.full((b, lc), -1, dtype=np.int64)
    context = np.zeros((b, lc, c), dtype=np.float32)
    action = np.zeros((b, lc), dtype=np.uint8)
    hist_mask = np.zeros((b, lh), dtype=bool)
    cand_mask = np.zeros((b, lc), dtype=bool)
    for row, it in enumerate(items):
        nh, nc = len(it["hist_post_idx"]), len(it["cand_post_idx"])
        for k in _HIST:
            out[k][row, :nh] = it[k]
        for k in (*_CAND, "target_index"):
            out[k][row, :nc] = it[k]
        context[row, :nc] = it["cand_context"]
        action[row, :nc] = it["cand_action"]
        hist_mask[row, :nh] = True
        cand_mask[row, :nc] = True
    labels = action_labels(action.reshape(-1)).reshape(b, lc, len(TASKS))
    return PaddedBatch(
        **{k: torch.from_numpy(v) for k, v in out.items()},
        hist_mask=torch.from_numpy(hist_mask),
        cand_context=torch.from_numpy(context),
        cand_mask=torch.from_numpy(cand_mask),
        labels=torch.from_numpy(labels),
        request_ts=torch.tensor([int(it["request_ts"]) for it in items], dtype=torch.int64),
        profile=torch.from_numpy(np.stack([it["profile"] for it in items]).astype(np.int64)),
        member_emb=torch.from_numpy(np.stack([it["member_emb"] for it in items]).astype(np.float32)),
        member_emb_present=torch.tensor([bool(it["member_emb_present"]) for it in items]),
        example_index=torch.tensor([it["example_index"] for it in items], dtype=torch.int64),
        n_tokens=int(hist_mask.sum()) * tokens_per_history_item + int(cand_mask.sum()),
        padded_tokens=b * (lh * tokens_per_history_item + lc),
    )


class PaddedDataLoader:
    """The baseline: ``torch.utils.data.DataLoader(UnitDataset, batch_size, shuffle)`` + :func:`pad_collate`,
    over the same units as :class:`PackedLoader` (so both deliver the same examples)."""

    def __init__(
        self,
        arrays: RankingArrays,
        batch_size: int,
        max_history: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        *,
        token_budget: int,
        tokens_per_history_item: int = 1,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        self.units = split_examples(arrays, token_budget, max_history, tokens_per_history_item)
        self.tokens_per_history_item = tokens_per_history_item
        generator = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            UnitDataset(arrays, self.units),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=num_workers,
            collate_fn=partial(pad_collate, tokens_per_history_item=tokens_per_history_item),
            pin_memory=_cuda() if pin_memory is None else pin_memory,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[PaddedBatch]:
        return iter(self.loader)


# --- synthetic arrays (tests and the benchmark) ------------------------------------------------------------


def random_arrays(
    n_examples: int,
    *,
    examples_per_member: int = 4,
    history_median: float = 400.0,
    history_sigma: float = 1.0,
    cold_start: float = 0.02,
    targets: tuple[int, int] = (8, 64),
    n_posts: int = 50_000,
    context_nan: float = 0.1,
    member_emb_dim: int = 16,
    seed: int = 0,
) -> RankingArrays:
    """Random ranking arrays with a realistic length mix: history ends ~ lognormal(log(history_median),
    history_sigma) (the defaults put ≈ 18 % of examples at ≥ 1,000 prior interactions), a ``cold_start``
    share with none, ``targets`` uniform in [lo, hi] per example, ``context_nan`` of the context values NaN.

    A member's sequence is as long as its latest example needs; its examples are in chronological order.
    """
    from training.data.ranking_data import RankingArrays
    from training.ranking.features import CONTEXT_FEATURES

    context_dim = len(CONTEXT_FEATURES)
    rng = np.random.default_rng(seed)
    x = n_examples
    end = np.rint(rng.lognormal(np.log(history_median), history_sigma, x)).astype(np.int64)
    end[rng.random(x) < cold_start] = 0
    member = np.arange(x, dtype=np.int64) // max(1, examples_per_member)
    m = int(member[-1]) + 1 if x else 0
    # per member: ends ascending (its examples in time order); sequence length = its largest end
    order = np.lexsort((end, member))
    end = end[order]
    seq_len = np.zeros(m, dtype=np.int64)
    np.maximum.at(seq_len, member, end)
    seq_offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(seq_len, out=seq_offsets[1:])
    s = int(seq_offsets[-1])
    n_tgt = rng.integers(targets[0], targets[1] + 1, x)
    tgt_offsets = np.zeros(x + 1, dtype=np.int64)
    np.cumsum(n_tgt, out=tgt_offsets[1:])
    n = int(tgt_offsets[-1])
    ts = np.arange(s, dtype=np.int64) * 60 + 1_767_225_600
    context = rng.random((n, context_dim), dtype=np.float32)
    context[rng.random((n, context_dim)) < context_nan] = np.nan
    post_idx = rng.integers(0, n_posts + 1, s).astype(np.int32)
    tgt_post_idx = rng.integers(0, n_posts + 1, n).astype(np.int32)
    return RankingArrays(
        seq_member=np.arange(m, dtype=np.int64) + 1000,
        seq_offsets=seq_offsets,
        post_idx=post_idx,
        post_id=post_idx.astype(np.int64) * 7 + 1,
        action=rng.integers(0, 64, s).astype(np.uint8),
        device=rng.integers(0, 4, s).astype(np.int8),
        ts=ts,
        ex_seq=member.astype(np.int32),
        ex_history_end=end.astype(np.int32),
        ex_request_ts=ts[np.minimum(seq_offsets[member] + end, max(s - 1, 0))] + 30
        if s
        else np.zeros(x, np.int64),
        ex_target_offsets=tgt_offsets,
        tgt_post_idx=tgt_post_idx,
        tgt_post_id=tgt_post_idx.astype(np.int64) * 7 + 1,
        tgt_action=rng.integers(0, 64, n).astype(np.uint8),
        tgt_device=rng.integers(0, 4, n).astype(np.int8),
        tgt_session=np.repeat(np.arange(x, dtype=np.int64), n_tgt) * 3 + rng.integers(0, 3, n),
        tgt_context=context,
        ex_profile=rng.integers(0, 1000, (x, 2)).astype(np.int64),
        ex_member_emb=rng.standard_normal((x, member_emb_dim), dtype=np.float32),
        ex_member_emb_present=rng.random(x) < 0.7,
        post_table=np.zeros((n_posts + 1, 0), dtype=np.float32),
        post_author=np.concatenate([[0], rng.integers(1, max(2, n_posts // 4), n_posts)]).astype(np.int64),
    )
