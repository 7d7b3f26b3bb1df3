"""Public multi-label ROC AUC: one AUC per task (column), ties get half credit (= sklearn's
``roc_auc_score``), NaN for a task with one class only. Callers import :func:`multilabel_auc` only."""

from __future__ import annotations

import torch

from kernels.common import Kernel, triton_interpreting
from kernels.pytorch.pt_multilabel_auc import pt_multilabel_auc


def multilabel_auc(
    scores: torch.Tensor, labels: torch.Tensor, *, kernel: Kernel = Kernel.PYTORCH
) -> torch.Tensor:
    """ROC AUC of ``scores`` (N, T) against binary ``labels`` (N, T) per column → (T,) float64.

    1-D inputs are one task: (N,) → (1,). Scores may be any floating or integer dtype (fp16/bf16 are
    ranked exactly); labels may be bool, integer or floating but must be 0/1. The label and finiteness
    checks read the data, so on a GPU they synchronise once per call — fine for an evaluation metric.
    """
    if scores.dim() == 1 and labels.dim() == 1:
        scores, labels = scores.unsqueeze(1), labels.unsqueeze(1)
    torch._assert(scores.dim() == 2, "scores must be 2-D (N, T) or 1-D (N,)")
    torch._assert(labels.dim() == 2, "labels must be 2-D (N, T) or 1-D (N,)")
    torch._assert(scores.shape == labels.shape, "scores and labels must have the same shape")
    torch._assert(not scores.is_complex() and scores.dtype != torch.bool, "scores must be real numbers")
    if labels.dtype != torch.bool:  # bool labels are binary by type: skip a pass over the data
        torch._assert(bool(((labels == 0) | (labels == 1)).all()), "labels must be binary (0/1)")
    if scores.is_floating_point():
        torch._assert(bool(torch.isfinite(scores).all()), "scores must be finite")
    kernel = Kernel(kernel)
    if kernel == Kernel.PYTORCH:
        return pt_multilabel_auc(scores, labels)
    if scores.device != labels.device:
        raise ValueError(f"scores ({scores.device}) and labels ({labels.device}) must be on one device")
    if scores.device.type != "cuda" and not triton_interpreting():
        raise RuntimeError(
            "Kernel.TRITON runs on CUDA tensors; on CPU use Kernel.PYTORCH (or TRITON_INTERPRET=1 in tests)"
        )
    from kernels.triton.triton_multilabel_auc import triton_multilabel_auc

    return triton_multilabel_auc(scores, labels)
