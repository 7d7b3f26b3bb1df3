"""Public jagged attention op (DESIGN.md "Kernels"): one signature for the PyTorch reference and the Triton
kernel. Callers import :func:`jagged_attention` only."""

from __future__ import annotations

import torch

from kernels.common import Kernel
from kernels.pytorch.pt_jagged_attention import pt_jagged_attention


def check_layout(seq_offsets: torch.Tensor, num_candidates: torch.Tensor, total: int) -> None:
    """Raise ValueError unless seq_offsets runs from 0 to ``total`` without decreasing and every
    num_candidates[b] lies in [0, len_b]. No-op while tracing or compiling."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    lengths = seq_offsets[1:] - seq_offsets[:-1]
    if seq_offsets.numel() and (int(seq_offsets[0]) != 0 or int(seq_offsets[-1]) != total):
        raise ValueError(f"seq_offsets must run from 0 to T={total}, got {seq_offsets.tolist()[:4]}…")
    if bool((lengths < 0).any()):
        raise ValueError("seq_offsets must be non-decreasing")
    if bool((num_candidates < 0).any()) or bool((num_candidates > lengths).any()):
        raise ValueError("num_candidates must lie in [0, len_b] for every sequence")


def jagged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_offsets: torch.Tensor,
    num_candidates: torch.Tensor,
    *,
    scale: float | None = None,
    kernel: Kernel = Kernel.PYTORCH,
    validate_layout: bool = True,
) -> torch.Tensor:
    """Attention over a jagged batch with the multi-item scoring mask.

    q, k, v: (T, H, D) — B sequences back to back; seq_offsets: (B+1,) int64 with seq_offsets[0] = 0 and
    seq_offsets[-1] = T; num_candidates: (B,) int64 — in sequence b the first len_b − num_candidates[b]
    tokens are history (causal), the last num_candidates[b] are candidates (each sees the whole history and
    itself). ``scale`` defaults to 1/√D. Returns (T, H, D) in q's dtype.

    ``validate_layout=False`` skips :func:`check_layout` (its checks read the offsets back to the host): for
    a caller that checked the layout once and calls the op once per layer with it.
    """
    torch._assert(q.dim() == 3, "q must be 3-D (T, H, D)")
    torch._assert(k.shape == q.shape and v.shape == q.shape, "q, k and v must have the same shape (T, H, D)")
    torch._assert(seq_offsets.dim() == 1 and seq_offsets.numel() >= 1, "seq_offsets must be 1-D (B + 1,)")
    torch._assert(
        num_candidates.dim() == 1 and num_candidates.numel() == seq_offsets.numel() - 1,
        "num_candidates must be 1-D (B,)",
    )
    torch._assert(not seq_offsets.is_floating_point(), "seq_offsets must be an integer tensor")
    if validate_layout:
        check_layout(seq_offsets, num_candidates, q.shape[0])
    if kernel == Kernel.PYTORCH:
        return pt_jagged_attention(q, k, v, seq_offsets, num_candidates, scale=scale)
    if kernel == Kernel.TRITON:
        raise NotImplementedError(
            "the Triton jagged attention kernel lands with the kernels issue; use Kernel.PYTORCH"
        )
    raise ValueError(f"unknown kernel {kernel!r}")
