"""Reference multi-label ROC AUC: every task (column) in one batched pass, plain torch.

AUC = Mann–Whitney U / (n_pos · n_neg), with U from the rank sum of the positives. Tied scores share the
average of the ranks they span, so a positive tied with a negative gets half credit — the same number as
``sklearn.metrics.roc_auc_score`` (trapezoidal ROC), which the tests check.

Ranks are kept doubled (first + last + 2 of a tie group's 0-based positions) so that every sum is an exact
int64: a float32 rank sum loses integers past N ≈ 6k positives (sum ~ N²/2 > 2²⁴), and float64 past N ~ 10⁸.
Only the final ratio is float64.
"""

from __future__ import annotations

import torch


def pt_multilabel_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC AUC per column of ``scores`` (N, T) against binary ``labels`` (N, T) → (T,) float64; NaN for a
    column whose labels are all 0 or all 1 (AUC undefined). Inputs are assumed checked by the caller."""
    n, t = scores.shape
    device = scores.device
    if n == 0 or t == 0:
        return torch.full((t,), float("nan"), dtype=torch.float64, device=device)
    # Ordering is all that matters: fp16/bf16 → fp32 is exact and order-preserving.
    sorted_scores, order = torch.sort(scores.float().T.contiguous(), dim=1, stable=True)  # (T, N)
    pos_sorted = torch.gather(labels.T.contiguous().to(torch.int64), 1, order)  # (T, N) in {0, 1}

    # Tie groups over the flattened (T, N) grid: a new group starts at every score change and every column.
    new_group = torch.ones_like(sorted_scores, dtype=torch.bool)  # (T, N)
    new_group[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    flat_new = new_group.reshape(-1)  # (T·N,)
    group = torch.cumsum(flat_new, 0) - 1  # (T·N,) group id of each element
    n_groups = int(group[-1].item()) + 1
    pos_in_col = torch.arange(n, device=device).repeat(t)  # (T·N,) 0-based rank
    first = pos_in_col[flat_new]  # (G,) 0-based position of each group's first element
    size = torch.bincount(group, minlength=n_groups)  # (G,)
    doubled_rank = first + (first + size - 1) + 2  # (G,) 2 × average 1-based rank

    pos_per_group = torch.zeros(n_groups, dtype=torch.int64, device=device)
    pos_per_group.index_add_(0, group, pos_sorted.reshape(-1))  # (G,) positives in each tie group
    col_of_group = torch.div(torch.nonzero(flat_new).squeeze(1), n, rounding_mode="floor")  # (G,)
    rank_sum2 = torch.zeros(t, dtype=torch.int64, device=device)
    rank_sum2.index_add_(0, col_of_group, pos_per_group * doubled_rank)  # (T,) 2 × Σ ranks of positives

    n_pos = pos_sorted.sum(dim=1)  # (T,)
    n_neg = n - n_pos
    u2 = rank_sum2 - n_pos * (n_pos + 1)  # 2 × U
    denom = (2 * n_pos * n_neg).to(torch.float64)
    auc = u2.to(torch.float64) / denom
    return torch.where(denom > 0, auc, torch.full_like(auc, float("nan")))
