"""Public jagged attention op (DESIGN.md "Kernels"): one signature for the PyTorch reference and the Triton
kernel. Callers import :func:`jagged_attention` only."""

from __future__ import annotations

import torch

from kernels.common import Kernel, check_triton_inputs
from kernels.pytorch.pt_jagged_attention import pt_cached_candidate_attention, pt_jagged_attention


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
    max_seq_len: int | None = None,
) -> torch.Tensor:
    """Attention over a jagged batch with the multi-item scoring mask.

    q, k, v: (T, H, D) — B sequences back to back; seq_offsets: (B+1,) int64 with seq_offsets[0] = 0 and
    seq_offsets[-1] = T; num_candidates: (B,) int64 — in sequence b the first len_b − num_candidates[b]
    tokens are history (causal), the last num_candidates[b] are candidates (each sees the whole history and
    itself). ``scale`` defaults to 1/√D. Returns (T, H, D) in q's dtype.

    ``validate_layout=False`` skips :func:`check_layout` (its checks read the offsets back to the host): for
    a caller that checked the layout once and calls the op once per layer with it. ``max_seq_len`` (the
    longest sequence) sizes the Triton grid; without it the Triton path reads it from the offsets (one more
    host sync per call).
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
    kernel = Kernel(kernel)
    if kernel == Kernel.PYTORCH:
        return pt_jagged_attention(q, k, v, seq_offsets, num_candidates, scale=scale)
    check_triton_inputs((q, k, v), (seq_offsets, num_candidates))
    from kernels.triton.triton_jagged_attention import triton_jagged_attention

    return triton_jagged_attention(q, k, v, seq_offsets, num_candidates, scale=scale, max_seq_len=max_seq_len)


def cached_candidate_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cand_offsets: torch.Tensor,
    k_hist: torch.Tensor,
    v_hist: torch.Tensor,
    hist_offsets: torch.Tensor,
    *,
    scale: float | None = None,
    kernel: Kernel = Kernel.PYTORCH,
) -> torch.Tensor:
    """Inference path of the multi-item mask with the history's keys and values cached.

    q, k, v: (C, H, D) — the candidates of B members back to back, rows ``cand_offsets[b]:cand_offsets[b+1]``
    for member b; k_hist, v_hist: (T_h, H, D) — each member's history keys/values from an earlier pass, rows
    ``hist_offsets[b]:hist_offsets[b+1]``. Each candidate attends to its member's whole history and to itself,
    which is exactly what the candidate rows of :func:`jagged_attention` compute — so a request's history is
    encoded once and its candidates scored in as many batches as needed. Returns (C, H, D); no autograd.
    """
    torch._assert(q.dim() == 3 and k.shape == q.shape and v.shape == q.shape, "q, k, v must be (C, H, D)")
    torch._assert(
        k_hist.dim() == 3 and k_hist.shape[1:] == q.shape[1:] and v_hist.shape == k_hist.shape,
        "k_hist and v_hist must be (T_h, H, D) with q's H and D",
    )
    torch._assert(
        cand_offsets.dim() == 1 and hist_offsets.shape == cand_offsets.shape,
        "cand_offsets and hist_offsets must both be (B + 1,)",
    )
    check_layout(cand_offsets, torch.zeros_like(cand_offsets[1:]), q.shape[0])  # 0 … C, non-decreasing
    check_layout(hist_offsets, torch.zeros_like(hist_offsets[1:]), k_hist.shape[0])
    kernel = Kernel(kernel)
    if kernel == Kernel.PYTORCH:
        return pt_cached_candidate_attention(q, k, v, cand_offsets, k_hist, v_hist, hist_offsets, scale=scale)
    check_triton_inputs((q, k, v, k_hist, v_hist), (cand_offsets, hist_offsets))
    from kernels.triton.triton_jagged_attention import triton_cached_candidate_attention

    return triton_cached_candidate_attention(q, k, v, cand_offsets, k_hist, v_hist, hist_offsets, scale=scale)
