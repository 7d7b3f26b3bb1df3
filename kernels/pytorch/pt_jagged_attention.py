"""Reference jagged attention with the multi-item scoring mask (plain torch; computes in fp32, casts back).

A jagged batch holds B sequences back to back: rows ``seq_offsets[b]:seq_offsets[b+1]`` of q, k, v belong to
sequence b. In sequence b the first ``len_b − num_candidates[b]`` tokens are history and attend causally; the
last ``num_candidates[b]`` tokens are candidates, each attending to the whole history and to itself only, so
candidates never see one another and N candidates cost one pass instead of N.

The reference pads to the longest sequence and runs SDPA with a boolean mask (True = attend): simple and
exact, but it spends B × L_max² work and memory — the Triton kernel of the kernels issue walks the jagged
layout directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def multi_item_mask(lengths: torch.Tensor, num_candidates: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, L, L) bool, True where query i may attend key j in its sequence (padding rows/cols False)."""
    device = lengths.device
    idx = torch.arange(max_len, device=device)
    i = idx.view(1, -1, 1)  # query position
    j = idx.view(1, 1, -1)  # key position
    n_hist = (lengths - num_candidates).view(-1, 1, 1)
    valid = (i < lengths.view(-1, 1, 1)) & (j < lengths.view(-1, 1, 1))
    history_query = (i < n_hist) & (j <= i)  # causal inside the history
    candidate_query = (i >= n_hist) & ((j < n_hist) | (j == i))  # whole history + itself
    return valid & (history_query | candidate_query)


def pad_index(seq_offsets: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, position) of every jagged row, so ``dense[b, p] = jagged[row]``."""
    lengths = seq_offsets[1:] - seq_offsets[:-1]
    total = int(seq_offsets[-1])
    batch = torch.repeat_interleave(torch.arange(len(lengths), device=seq_offsets.device), lengths)
    position = torch.arange(total, device=seq_offsets.device) - seq_offsets[:-1][batch]
    return batch, position


def pt_jagged_attention(
    q: torch.Tensor,  # (T, H, D)
    k: torch.Tensor,  # (T, H, D)
    v: torch.Tensor,  # (T, H, D)
    seq_offsets: torch.Tensor,  # (B + 1,) int64, seq_offsets[0] == 0, seq_offsets[-1] == T
    num_candidates: torch.Tensor,  # (B,) int64
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention of every token over the keys its mask allows → (T, H, D) in q's dtype."""
    T, H, D = q.shape
    B = seq_offsets.numel() - 1
    if T == 0 or B == 0:
        return q.new_zeros(q.shape)
    lengths = seq_offsets[1:] - seq_offsets[:-1]
    max_len = int(lengths.max())
    batch, position = pad_index(seq_offsets, max_len)
    dense = []
    for x in (q, k, v):
        d = x.new_zeros((B, max_len, H, D), dtype=torch.float32)
        d[batch, position] = x.float()
        dense.append(d.transpose(1, 2))  # (B, H, L, D)
    mask = multi_item_mask(lengths, num_candidates, max_len).unsqueeze(1)  # (B, 1, L, L)
    out = F.scaled_dot_product_attention(
        dense[0], dense[1], dense[2], attn_mask=mask, scale=scale if scale is not None else 1 / math.sqrt(D)
    )  # (B, H, L, D); padded query rows see nothing and come back 0
    return out.transpose(1, 2)[batch, position].to(q.dtype)
