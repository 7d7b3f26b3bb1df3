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
    """(B, L, L) bool, True where query i may attend key j: ``j == i`` or (``j ≤ i`` and j is history).

    For a history query (i < n_hist) that is the causal rule j ≤ i; for a candidate query it is "every
    history key and itself". Padded queries (i ≥ len) see only themselves, so no row is fully masked (SDPA
    would return NaN-free zeros anyway, but the gradient stays clean); no valid query ever sees a pad key.
    Built from one broadcast AND and one OR — the mask is the reference's main CPU cost at L ≈ 1,000.
    """
    device = lengths.device
    idx = torch.arange(max_len, device=device)
    causal = idx.view(-1, 1) >= idx.view(1, -1)  # (L, L): j ≤ i
    is_history_key = idx.view(1, 1, -1) < (lengths - num_candidates).view(-1, 1, 1)  # (B, 1, L)
    return (causal & is_history_key) | torch.eye(max_len, dtype=torch.bool, device=device)


def pad_index(seq_offsets: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, position) of every jagged row, so ``dense[b, p] = jagged[row]``."""
    lengths = seq_offsets[1:] - seq_offsets[:-1]
    total = int(seq_offsets[-1])
    batch = torch.repeat_interleave(torch.arange(len(lengths), device=seq_offsets.device), lengths)
    position = torch.arange(total, device=seq_offsets.device) - seq_offsets[:-1][batch]
    return batch, position


def _padded_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_offsets: torch.Tensor,
    num_candidates: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Pad the sequences of one group to its longest, one SDPA call with the multi-item mask."""
    _, H, D = q.shape
    n_seq = seq_offsets.numel() - 1
    lengths = seq_offsets[1:] - seq_offsets[:-1]
    max_len = int(lengths.max())
    batch, position = pad_index(seq_offsets, max_len)
    dense = []
    for x in (q, k, v):
        d = x.new_zeros((n_seq, max_len, H, D), dtype=torch.float32)
        d[batch, position] = x.float()
        dense.append(d.transpose(1, 2))  # (B, H, L, D)
    mask = multi_item_mask(lengths, num_candidates, max_len).unsqueeze(1)  # (B, 1, L, L)
    with torch.autocast(q.device.type, enabled=False):  # the reference is fp32 even inside a bf16 region
        out = F.scaled_dot_product_attention(dense[0], dense[1], dense[2], attn_mask=mask, scale=scale)
    return out.transpose(1, 2)[batch, position]  # (T, H, D) fp32


def pt_jagged_attention(
    q: torch.Tensor,  # (T, H, D)
    k: torch.Tensor,  # (T, H, D)
    v: torch.Tensor,  # (T, H, D)
    seq_offsets: torch.Tensor,  # (B + 1,) int64, seq_offsets[0] == 0, seq_offsets[-1] == T
    num_candidates: torch.Tensor,  # (B,) int64
    scale: float | None = None,
    group_size: int = 8,
) -> torch.Tensor:
    """Softmax attention of every token over the keys its mask allows → (T, H, D) in q's dtype.

    Sequences are sorted by length and padded ``group_size`` at a time, so a packed batch of mixed lengths
    does not pay B × L_max² (with heavy-tailed histories that halves the work at B ≈ 32)."""
    T, H, D = q.shape
    n_seq = seq_offsets.numel() - 1
    if T == 0 or n_seq == 0:
        return q.new_zeros(q.shape)
    scale = scale if scale is not None else 1 / math.sqrt(D)
    if n_seq <= group_size:
        return _padded_attention(q, k, v, seq_offsets, num_candidates, scale).to(q.dtype)
    lengths = seq_offsets[1:] - seq_offsets[:-1]
    order = torch.argsort(lengths, stable=True)
    out = q.new_empty((T, H, D), dtype=torch.float32)
    for group in order.split(group_size):
        glen = lengths[group]
        rows = torch.repeat_interleave(seq_offsets[:-1][group] - _exclusive_cumsum(glen), glen)
        rows = rows + torch.arange(rows.numel(), device=rows.device)  # the group's token rows, in order
        offsets = torch.cat([glen.new_zeros(1), torch.cumsum(glen, 0)])
        if rows.numel():
            out[rows] = _padded_attention(q[rows], k[rows], v[rows], offsets, num_candidates[group], scale)
    return out.to(q.dtype)


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(x, 0) - x


def pt_cached_candidate_attention(
    q: torch.Tensor,  # (C, H, D) candidates of B members back to back
    k: torch.Tensor,
    v: torch.Tensor,
    cand_offsets: torch.Tensor,  # (B + 1,)
    k_hist: torch.Tensor,  # (T_h, H, D) cached history keys
    v_hist: torch.Tensor,
    hist_offsets: torch.Tensor,  # (B + 1,)
    scale: float | None = None,
) -> torch.Tensor:
    """Each candidate over its member's cached history keys and its own key → (C, H, D) in q's dtype (fp32
    math). Pads histories to the longest; the candidate's own score joins the softmax as one more column."""
    C, H, D = q.shape
    n_seq = cand_offsets.numel() - 1
    if C == 0 or n_seq == 0:
        return q.new_zeros(q.shape)
    scale = scale if scale is not None else 1 / math.sqrt(D)
    hist_len = hist_offsets[1:] - hist_offsets[:-1]
    max_hist = int(hist_len.max())
    member = torch.repeat_interleave(
        torch.arange(n_seq, device=q.device), cand_offsets[1:] - cand_offsets[:-1]
    )
    kh = k_hist.new_zeros((n_seq, max_hist, H, D), dtype=torch.float32)
    vh = torch.zeros_like(kh)
    if max_hist:
        batch, position = pad_index(hist_offsets, max_hist)
        kh[batch, position], vh[batch, position] = k_hist.float(), v_hist.float()
    qf = q.float()
    with torch.autocast(q.device.type, enabled=False):  # fp32 math even inside a bf16 autocast region
        return _cached_fp32(qf, k.float(), v.float(), kh, vh, member, hist_len, max_hist, scale).to(q.dtype)


def _cached_fp32(
    qf: torch.Tensor,
    kf: torch.Tensor,
    vf: torch.Tensor,
    kh: torch.Tensor,
    vh: torch.Tensor,
    member: torch.Tensor,
    hist_len: torch.Tensor,
    max_hist: int,
    scale: float,
) -> torch.Tensor:
    s_hist = torch.einsum("chd,clhd->chl", qf, kh[member]) * scale  # (C, H, L)
    valid = torch.arange(max_hist, device=qf.device).view(1, 1, -1) < hist_len[member].view(-1, 1, 1)
    s_hist = s_hist.masked_fill(~valid, float("-inf"))
    s_self = (qf * kf).sum(-1, keepdim=True) * scale  # (C, H, 1)
    p = torch.cat([s_hist, s_self], dim=-1).softmax(-1)
    return torch.einsum("chl,clhd->chd", p[..., :-1], vh[member]) + p[..., -1:] * vf
