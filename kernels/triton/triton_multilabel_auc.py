"""Triton multi-label ROC AUC: the rank statistic of every column in two light passes over the sorted keys.

The formula is the reference's (``kernels/pytorch/pt_multilabel_auc.py``): after sorting a column,

    2U = Σ_positives (neg_before + neg_at_start) + Σ_negatives (pos_before − pos_at_start)

with ``*_at_start`` the count at the first element of the element's tie group. The sort is torch's (CUB's
segmented radix sort on GPU) over int64 keys that pack the order-preserving score bits with the label, so
labels need no gather. Then:

1. ``_count_kernel``: one program per (chunk, column) counts the chunk's negatives → an exclusive prefix over
   chunks (a tiny torch cumsum) gives every chunk its ``neg_before`` carry;
2. ``_rank_kernel``: one program per (chunk, column) scans its chunk (``tl.cumsum`` for the counts, a
   ``tl.associative_scan`` max for the group-start values — counts never decrease, so a running max is the
   carry of the last group start). A tie group that begins in an earlier chunk is found by a binary search
   for the chunk's first key (≤ log₂ N scalar loads) plus one masked count in that chunk, so chunks are
   independent: N / BLOCK × T programs fill the GPU even with six columns. Each writes its partial sum; one
   torch sum per column finishes (no atomics: the result is deterministic and exact in int64).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.common import triton_interpreting
from kernels.pytorch.pt_multilabel_auc import auc_from_statistic, sort_columns


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def _key_label(x, Label, offs, mask, PACKED: tl.constexpr):
    if PACKED:
        key = x >> 1
        label = x & 1
    else:
        key = x
        label = tl.load(Label + offs, mask=mask, other=0).to(tl.int64)
    return key, label


@triton.jit
def _count_kernel(Keys, Label, NegCount, N, n_chunks, PACKED: tl.constexpr, BLOCK: tl.constexpr):
    c = tl.program_id(0)
    t = tl.program_id(1).to(tl.int64)
    offs = c.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < N
    x = tl.load(Keys + t * N + offs, mask=ok, other=0)
    _, y = _key_label(x, Label + t * N, offs, ok, PACKED)
    tl.store(NegCount + t * n_chunks + c, tl.sum(tl.where(ok, 1 - y, 0), 0))


@triton.jit
def _rank_kernel(
    Keys, Label, NegPrefix, Partial, N, n_chunks,
    PACKED: tl.constexpr, BLOCK: tl.constexpr, SEARCH_STEPS: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    t = tl.program_id(1).to(tl.int64)
    keys = Keys + t * N
    labels = Label + t * N
    c0 = c.to(tl.int64) * BLOCK
    offs = c0 + tl.arange(0, BLOCK)
    ok = offs < N
    key, y = _key_label(tl.load(keys + offs, mask=ok, other=0), labels, offs, ok, PACKED)
    prev_x = tl.load(keys + offs - 1, mask=ok & (offs > 0), other=0)
    prev_key, _ = _key_label(prev_x, labels, offs - 1, ok & (offs > 0), PACKED)

    # where does the tie group of the chunk's first element start? (first index whose key ≥ that key)
    k0, _ = _key_label(tl.load(keys + c0), labels, c0, c0 < N, PACKED)
    lo = c0 * 0
    hi = c0
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) // 2
        km, _ = _key_label(tl.load(keys + mid), labels, mid, mid < N, PACKED)
        right = km < k0
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(right, hi, mid)
    g = lo // BLOCK  # the chunk the group starts in; count its negatives before the group start
    g_offs = g * BLOCK + tl.arange(0, BLOCK)
    g_ok = g_offs < lo
    _, g_y = _key_label(tl.load(keys + g_offs, mask=g_ok, other=0), labels, g_offs, g_ok, PACKED)
    neg_at_group = tl.load(NegPrefix + t * n_chunks + g) + tl.sum(tl.where(g_ok, 1 - g_y, 0), 0)
    pos_at_group = lo - neg_at_group

    neg = tl.where(ok, 1 - y, 0)
    y = tl.where(ok, y, 0)
    neg_before = tl.load(NegPrefix + t * n_chunks + c) + tl.cumsum(neg, 0) - neg
    pos_before = offs - neg_before
    start = (offs == 0) | (key != prev_key)
    neg_at_start = tl.maximum(tl.associative_scan(tl.where(start, neg_before, 0), 0, _max), neg_at_group)
    pos_at_start = tl.maximum(tl.associative_scan(tl.where(start, pos_before, 0), 0, _max), pos_at_group)
    term = tl.where(y == 1, neg_before + neg_at_start, 0) + tl.where(neg == 1, pos_before - pos_at_start, 0)
    tl.store(Partial + t * n_chunks + c, tl.sum(term, 0))


def triton_multilabel_auc(
    scores: torch.Tensor, labels: torch.Tensor, block: int | None = None
) -> torch.Tensor:
    """Same contract as ``pt_multilabel_auc``: (N, T) scores and 0/1 labels → (T,) float64 AUC."""
    n, t = scores.shape
    if n == 0 or t == 0:
        return torch.full((t,), float("nan"), dtype=torch.float64, device=scores.device)
    keys, gathered = sort_columns(scores, labels)
    packed = gathered is None  # the label is bit 0 of each key
    label = keys if gathered is None else gathered  # unused by the kernels when PACKED
    keys, label = keys.contiguous(), label.contiguous()
    block = block or (32 if triton_interpreting() else 2048)
    n_chunks = triton.cdiv(n, block)
    grid = (n_chunks, t)
    neg_count = torch.empty((t, n_chunks), dtype=torch.int64, device=scores.device)
    _count_kernel[grid](keys, label, neg_count, n, n_chunks, PACKED=packed, BLOCK=block, num_warps=4)
    neg_prefix = torch.cumsum(neg_count, 1) - neg_count
    partial = torch.empty_like(neg_count)
    _rank_kernel[grid](
        keys, label, neg_prefix, partial, n, n_chunks,
        PACKED=packed, BLOCK=block, SEARCH_STEPS=max(1, n.bit_length()), num_warps=4,
    )  # fmt: skip
    n_pos = n - neg_count.sum(1)
    return auc_from_statistic(partial.sum(1), n_pos, n)
