"""Offline ranking metrics for the GR ranker: per-task AUC and normalized entropy, and NDCG@k of engaged posts
within each session. torch + numpy only (and ``kernels``), so evaluation runs wherever the model does.

- AUC: :func:`kernels.multilabel_auc` (ties get half credit, NaN for a one-class task).
- NE (He et al., "Practical Lessons from Predicting Clicks on Ads at Facebook", 2014): mean log loss divided
  by the entropy of the task's base rate, so 1.0 = no better than predicting the base rate everywhere.
- NDCG@k per session with sklearn's tie handling (tied scores share the mean gain of their positions), so a
  model that outputs constant scores gets no credit for the input order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from kernels import multilabel_auc
from kernels.common import resolve_kernel
from training.ranking.features import ENGAGED_TASKS, TASKS

# The blended score NDCG ranks sessions by: Σ_t w_t · sigmoid(logit_t) over the engagement tasks, all w_t = 1.
# Equal weights = "expected number of engagement events", a neutral default until the serving blend is tuned;
# `skip` is not engagement and stays out.
DEFAULT_BLEND: Mapping[str, float] = dict.fromkeys(ENGAGED_TASKS, 1.0)


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def normalized_entropy(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """NE per task: mean binary log loss of ``logits`` (N, T) against 0/1 ``labels`` (N, T), divided by the
    entropy of the task's base rate p = mean(label) → (T,) float64; NaN where p is 0 or 1 (no entropy to
    normalise by) or N = 0. Computed in float64 from logits (no sigmoid round trip, no clipping)."""
    logits, labels = _as_tensor(logits), _as_tensor(labels)
    if logits.dim() == 1:
        logits, labels = logits.unsqueeze(1), labels.unsqueeze(1)
    torch._assert(logits.dim() == 2, "logits must be 2-D (N, T)")
    torch._assert(logits.shape == labels.shape, "logits and labels must have the same shape")
    x, y = logits.double(), labels.double()
    log_loss = F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(dim=0)  # (T,)
    p = y.mean(dim=0)  # (T,)
    base = -(p * torch.log(p) + (1 - p) * torch.log1p(-p))  # (T,) NaN at p = 0 or 1 (0·log 0)
    valid = (p > 0) & (p < 1)
    return torch.where(valid, log_loss / base, torch.full_like(base, float("nan")))


def _segment_sum(values: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    out = torch.zeros(n_segments, dtype=values.dtype, device=values.device)
    return out.index_add_(0, segment, values)


def _dcg(keys: torch.Tensor, gains: torch.Tensor, group: torch.Tensor, n_groups: int, k: int) -> torch.Tensor:
    """DCG@k per group, ranking each group by ``keys`` descending; tied keys share their mean gain
    (sklearn's ``_tie_averaged_dcg``). ``group`` is dense 0..G-1. → (G,) float64."""
    order = torch.argsort(keys, descending=True, stable=True)
    order = order[torch.argsort(group[order], stable=True)]  # (N,) by (group, -key)
    g, key, gain = group[order], keys[order], gains[order]
    n = g.numel()
    size = torch.bincount(g, minlength=n_groups)  # (G,)
    start = torch.cumsum(size, 0) - size  # (G,) first sorted row of each group
    rank = torch.arange(n, device=g.device) - start[g]  # (N,) 0-based rank inside the group
    # runs of equal (group, key): each position in a run gets the run's mean gain
    new_run = torch.ones(n, dtype=torch.bool, device=g.device)
    new_run[1:] = (g[1:] != g[:-1]) | (key[1:] != key[:-1])
    run = torch.cumsum(new_run, 0) - 1
    n_runs = int(run[-1].item()) + 1
    run_mean = _segment_sum(gain, run, n_runs) / torch.bincount(run, minlength=n_runs)
    zero = torch.zeros((), dtype=torch.float64, device=g.device)
    discount = torch.where(rank < k, 1.0 / torch.log2(rank.double() + 2), zero)  # (N,) cut at k
    return _segment_sum(run_mean[run] * discount, g, n_groups)


def ndcg_at_k(
    scores: torch.Tensor | np.ndarray,
    gains: torch.Tensor | np.ndarray,
    groups: torch.Tensor | np.ndarray,
    k: int = 10,
) -> tuple[float, int]:
    """Mean NDCG@k over the groups (sessions) that have a positive gain, and how many such groups there were.

    ``scores``, ``gains`` (≥ 0) and ``groups`` are (N,); rows of one group need not be contiguous. A group
    with no positive gain has IDCG = 0 (NDCG undefined) and is skipped; the count returned tells how many
    groups were used (0 → NaN mean). Fully vectorised: two stable sorts and segment sums, no per-group Python.
    """
    torch._assert(k >= 1, "k must be >= 1")
    s, gain, grp = _as_tensor(scores), _as_tensor(gains).double(), _as_tensor(groups)
    torch._assert(s.dim() == 1 and s.shape == gain.shape == grp.shape, "scores, gains, groups must be (N,)")
    if s.numel() == 0:
        return float("nan"), 0
    torch._assert(bool((gain >= 0).all()), "gains must be non-negative")
    _, dense = torch.unique(grp, return_inverse=True)  # (N,) 0..G-1
    n_groups = int(dense.max().item()) + 1
    dcg = _dcg(s.double(), gain, dense, n_groups, k)
    idcg = _dcg(gain, gain, dense, n_groups, k)
    used = idcg > 0
    n_used = int(used.sum().item())
    if n_used == 0:
        return float("nan"), 0
    return float((dcg[used] / idcg[used]).mean().item()), n_used


def blended_score(
    logits: torch.Tensor, tasks: Sequence[str] = TASKS, blend: Mapping[str, float] | None = None
) -> torch.Tensor:
    """Σ_t w_t · sigmoid(logit_t) over the tasks named in ``blend`` (default :data:`DEFAULT_BLEND`) → (N,)."""
    blend = DEFAULT_BLEND if blend is None else blend
    unknown = set(blend) - set(tasks)
    if unknown:
        raise ValueError(f"blend names tasks {sorted(unknown)} not in {tuple(tasks)}")
    cols = [tasks.index(t) for t in blend]
    weights = torch.tensor(list(blend.values()), dtype=torch.float64, device=logits.device)
    return torch.sigmoid(logits[:, cols].double()) @ weights


def summarize(
    logits: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    sessions: torch.Tensor | np.ndarray,
    tasks: Sequence[str] = TASKS,
    *,
    blend: Mapping[str, float] | None = None,
    k: int = 10,
    kernel: str = "auto",
) -> dict[str, float | int]:
    """Evaluation summary of ``logits`` (N, T) against 0/1 ``labels`` (N, T) with ``sessions`` (N,) ids.

    Keys (flat, JSON-ready): ``auc_<task>`` and ``ne_<task>`` per task (NaN for a one-class task),
    ``ndcg_at_<k>`` (mean NDCG@k of engaged posts within each session, ranked by :func:`blended_score`;
    gain = 1 if any engagement task (click, long_dwell, like, comment, share) is positive),
    ``ndcg_sessions`` (sessions with an engaged post, the ones averaged) and ``ndcg_sessions_skipped``.
    ``kernel`` picks the AUC implementation (``kernels.common.resolve_kernel``: auto = Triton on CUDA).
    """
    logits, labels, sessions = _as_tensor(logits), _as_tensor(labels), _as_tensor(sessions)
    torch._assert(logits.dim() == 2 and logits.shape[1] == len(tasks), "logits must be (N, len(tasks))")
    auc = multilabel_auc(logits, labels, kernel=resolve_kernel(kernel, logits.device))
    ne = normalized_entropy(logits, labels)
    engaged_cols = [tasks.index(t) for t in ENGAGED_TASKS if t in tasks]
    engaged = (labels[:, engaged_cols] != 0).any(dim=1).double()  # (N,)
    score = blended_score(logits, tasks, blend)
    ndcg, used = ndcg_at_k(score, engaged, sessions, k=k)
    n_sessions = int(torch.unique(sessions).numel())
    out: dict[str, float | int] = {}
    for j, task in enumerate(tasks):
        out[f"auc_{task}"] = float(auc[j])
        out[f"ne_{task}"] = float(ne[j])
    out[f"ndcg_at_{k}"] = ndcg
    out["ndcg_sessions"] = used
    out["ndcg_sessions_skipped"] = n_sessions - used
    return out
