"""Reference multi-label ROC AUC: every task (column) in one batched pass, plain torch (numpy's sort on CPU).

AUC = Mann–Whitney U / (n_pos · n_neg), where a positive earns 1 for every negative scored below it and ½ for
every negative tied with it — the number ``sklearn.metrics.roc_auc_score`` gives (trapezoidal ROC), which
the tests check. After sorting a column by score (ties in any order), with ``neg_before``/``pos_before`` the
negatives/positives strictly earlier in the sorted order and ``*_at_start`` those counts at the first element
of the element's tie group:

    2U = Σ_positives (neg_before + neg_at_start) + Σ_negatives (pos_before − pos_at_start)

(the first sum counts each earlier-tied negative once instead of twice, the second adds back, from the
negative's side, each pair where the positive came first inside a tie — every tied pair gets exactly one
half). Each term is a forward scan, so the same formula runs as one pass per column in the Triton kernel.
Without ties the ``*_at_start`` terms equal the ``*_before`` ones, so only tied elements need the group scan:
the reference does it on the (usually tiny) tied subset. Every sum is an exact int64; only the final ratio
is float64.

Sort keys: a float score becomes an order-preserving int32 (−0.0 folded onto +0.0, since sklearn ties them)
packed with its label into one int64 (``key << 1 | label``), so one value sort orders scores and carries the
labels along — no argsort, no gather. On CPU that sort goes through numpy (AVX-512 sort, ≈ 5× torch.sort on
int64 here); integer and fp64 scores (64-bit keys, no room for the label) sort with an argsort and a gather
of the labels.
"""

from __future__ import annotations

import numpy as np
import torch


def orderable_int(scores: torch.Tensor) -> torch.Tensor:
    """float → int64 with the same order (fp16/bf16 via fp32, exactly), −0.0 mapped to +0.0. fp32 and
    narrower give keys in int32 range, fp64 keys use all 64 bits."""
    if scores.dtype == torch.float64:
        bits = (scores + 0.0).contiguous().view(torch.int64)  # + 0.0 turns −0.0 into +0.0
        return bits ^ ((bits >> 63) & 0x7FFFFFFFFFFFFFFF)  # negative floats: flip the magnitude bits
    bits = (scores.float() + 0.0).contiguous().view(torch.int32).to(torch.int64)  # sign-extended
    bits ^= (bits >> 31) & 0x7FFFFFFF
    return bits


GROUPED_BELOW = 0.9  # fewer tie groups than this share of elements: per-group sums beat the tied-subset scan


def pack_keys(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, T) fp32-or-narrower scores and 0/1 labels → (T, N) int64 ``orderable_int(score) << 1 | label``,
    built in place (each pass over T·N int64 costs about as much as the sort itself on CPU)."""
    key = orderable_int(scores.T)  # (T, N) contiguous
    key <<= 1
    key |= labels.T.to(torch.int64)
    return key


def sort_columns(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every column sorted by score, shared by the reference and the Triton kernel → ``(packed, None)`` for
    fp32-or-narrower scores (int64 ``key << 1 | label``, one value sort carries the labels) or ``(key,
    label)`` for integer and fp64 scores (64-bit keys, labels gathered by the argsort, int8); (T, N) each."""
    if scores.is_floating_point() and scores.dtype != torch.float64:
        packed = pack_keys(scores, labels)  # (T, N)
        if packed.device.type == "cpu":
            return torch.from_numpy(np.sort(packed.numpy(), axis=1)), None
        return torch.sort(packed, dim=1).values, None
    key = orderable_int(scores.T) if scores.is_floating_point() else scores.T.to(torch.int64)
    key, order = torch.sort(key, dim=1)
    return key, torch.gather(labels.T.to(torch.int8), 1, order)


def sorted_keys(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column, the scores in ascending order and their labels → (score_key (T, N) int64, label (T, N)
    int64). Float scores are compared as :func:`orderable_int` keys."""
    keys, label = sort_columns(scores, labels)
    if label is None:
        return keys >> 1, keys & 1
    return keys, label.to(torch.int64)


def rank_statistic(key: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """2U per column from sorted (key, label) pairs (T, N) → (T,) int64."""
    n = key.shape[1]
    same = key[:, 1:] == key[:, :-1]  # (T, N − 1): element j + 1 ties with element j
    any_tie = bool(same.any())
    if any_tie:
        starts = torch.ones_like(key, dtype=torch.bool)
        starts[:, 1:] = ~same  # a tie group starts at every new score and every column
        if int(starts.sum()) < GROUPED_BELOW * starts.numel():  # tie-heavy: sum per group instead
            return _grouped_statistic(starts, label)
    # Ties broken by position (exact without ties): Σ_pos neg_before = Σ_pos position − n_pos(n_pos − 1)/2.
    # The position sum is < N²/2, exact in float64 up to N ≈ 10⁸ — one matrix-vector product, no scan.
    position = torch.arange(n, device=key.device, dtype=torch.float64)
    n_pos = label.sum(1)
    u2 = 2 * (label.to(torch.float64) @ position).round().to(torch.int64) - n_pos * (n_pos - 1)
    if not any_tie:
        return u2
    tied = torch.zeros_like(starts)
    tied[:, 1:] |= same
    tied[:, :-1] |= same  # in a group of two or more: the subset whose terms the ties change
    idx = torch.nonzero(tied.reshape(-1)).squeeze(1)  # flat (T·N) indices, column-major blocks of N
    col = torch.div(idx, n, rounding_mode="floor")
    neg = 1 - label
    neg_before = (torch.cumsum(neg, 1) - neg).reshape(-1)[idx]
    # Offsetting each column by n·col keeps the counts increasing across columns, so one cummax over the
    # whole subset carries each group's start value without leaking into the next column.
    nb = neg_before + n * col
    pb = (idx - col * n) - neg_before + n * col  # position in column − negatives before
    s = starts.reshape(-1)[idx]
    neg_at_start = torch.cummax(torch.where(s, nb, 0), 0).values
    pos_at_start = torch.cummax(torch.where(s, pb, 0), 0).values
    fix = torch.where(label.reshape(-1)[idx] == 1, neg_at_start - nb, pb - pos_at_start)
    return u2.index_add_(0, col, fix)  # exact term − the no-tie term, per tied element


def _grouped_statistic(starts: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """2U from tie-group totals, for tie-heavy columns (few distinct scores: bf16 outputs, buckets):
    2U = Σ_groups pos_g · (2 · neg_before_g + neg_g). Group sums are integers below 2⁵³, exact in float64."""
    t, n = starts.shape
    flat = starts.reshape(-1)
    group = torch.cumsum(flat, 0) - 1  # (T·N,) group id; groups never cross a column
    n_groups = int(group[-1]) + 1
    size = torch.bincount(group, minlength=n_groups).to(torch.float64)
    pos = torch.bincount(group, weights=label.reshape(-1).to(torch.float64), minlength=n_groups)
    neg = size - pos
    neg_before = torch.cumsum(neg, 0) - neg  # over all columns so far
    col = torch.div(torch.nonzero(flat).squeeze(1), n, rounding_mode="floor")  # (G,) column of each group
    first = group[torch.arange(t, device=flat.device) * n]  # (T,) first group of each column
    neg_before = neg_before - neg_before[first][col]  # within the column
    u2 = torch.zeros(t, dtype=torch.float64, device=flat.device)
    u2.index_add_(0, col, pos * (2 * neg_before + neg))
    return u2.round().to(torch.int64)


def pt_multilabel_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC AUC per column of ``scores`` (N, T) against binary ``labels`` (N, T) → (T,) float64; NaN for a
    column whose labels are all 0 or all 1 (AUC undefined). Inputs are assumed checked by the caller."""
    n, t = scores.shape
    if n == 0 or t == 0:
        return torch.full((t,), float("nan"), dtype=torch.float64, device=scores.device)
    key, label = sorted_keys(scores, labels)
    return auc_from_statistic(rank_statistic(key, label), label.sum(1), n)


def auc_from_statistic(u2: torch.Tensor, n_pos: torch.Tensor, n: int) -> torch.Tensor:
    """AUC = 2U / (2 · n_pos · n_neg) per column, NaN where a class is missing."""
    denom = (2 * n_pos * (n - n_pos)).to(torch.float64)
    auc = u2.to(torch.float64) / denom
    return torch.where(denom > 0, auc, torch.full_like(auc, float("nan")))
