"""Triton multi-item-scoring attention over jagged batches: flash-attention tiling, forward and backward.

The mask (``kernels/pytorch/pt_jagged_attention.py``), with ``n_hist = len_b − num_candidates[b]``:
in sequence b query i may see key j when ``j == i`` or (``j ≤ i`` and ``j < n_hist``). Its structure
decides the tiling:

* history keys are the only keys that whole tiles ever need: a query block walks the history keys up to its
  own diagonal (history queries, causal) or all of them (candidate queries), with the element mask applied
  only in the tiles that touch the diagonal or the history's end;
* a candidate's one other key is itself, so the candidate × candidate square — all but its diagonal masked
  out — is never loaded: the diagonal term is a row-wise dot product folded into the online softmax;
* history × future tiles are never visited (the loops stop at the diagonal).

So a member with L history tokens and C candidates costs ≈ L²/2 + C·L score entries instead of the padded
(L + C)² of SDPA with a materialised mask. Scores accumulate in fp32 (online softmax in base 2,
FlashAttention-2 style), inputs may be fp32, fp16 or bf16; fp32 inputs use IEEE fp32 dots (exact, slower
than TF32).

Backward recomputes the probabilities from the saved log-sum-exp: one kernel for dQ (the forward's walk; it
also computes ``delta = rowsum(dO ∘ O)`` for its rows and stores it), then one for dK/dV (each key block walks
the queries that see it — history queries from its diagonal on, then all candidates — in the transposed
form ``Kᵀ``-side products of the Triton tutorial, so no probability tile is transposed in registers;
candidate keys get only their diagonal term). No atomics, so gradients are deterministic.

Cached inference (:func:`triton_cached_candidate_attention`): candidates attend to history K/V computed
earlier, so a request's history is encoded once and candidates can be scored in any number of batches. It
is the forward kernel with the query positions shifted past the history (``CACHED``).

Host side: every sequence's history length is derived inside the kernels from the offsets and the candidate
counts, all tensors share one row stride, and a call without autograd skips the ``autograd.Function`` — at
the ranker's sizes (2 heads × 32 dims, a few thousand tokens per member) the launch path is a visible part
of the time. Tiles: on a GPU each kernel is autotuned over a few configurations per (head dim, dtype) on
first use (``TUNED_*``; :func:`tuned_configs` reports the choices); under ``TRITON_INTERPRET=1`` (CPU tests)
a fixed small tile is used and tiles are upcast to fp32 before any arithmetic — the interpreter's bf16
arithmetic is wrong and it refuses autotuning (STACK.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from kernels.common import triton_interpreting as interpreting

_LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class BlockConfig:
    """Tile sizes and launch shape. BLOCK_M queries × BLOCK_N keys per tile; ``tl.dot`` needs both ≥ 16."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


INTERPRETER_CONFIG = BlockConfig(16, 16, 1, 1)
TUNED_FWD = (BlockConfig(64, 64, 4, 3), BlockConfig(128, 64, 4, 3), BlockConfig(64, 32, 4, 3))
TUNED_DQ = (BlockConfig(64, 64, 4, 2), BlockConfig(128, 32, 4, 3), BlockConfig(128, 64, 8, 2))
TUNED_DKDV = (BlockConfig(64, 64, 4, 2), BlockConfig(32, 128, 4, 3), BlockConfig(64, 128, 8, 2))


@triton.jit
def _row_ids(seq_offsets, b):
    start = tl.load(seq_offsets + b).to(tl.int64)
    length = (tl.load(seq_offsets + b + 1) - start).to(tl.int32)
    return start, length


@triton.jit
def _fwd_kernel(
    Q, K, V, KH, VH, Out, Lse,
    q_offsets, kh_offsets, n_cand_ptr,
    stride_t, H, D, scale_log2,  # every tensor (rows, H, D) contiguous: row stride H·D, head stride D
    CACHED: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # longest walks (late query blocks) start first
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    q_start, q_len = _row_ids(q_offsets, b)
    kh_start, kh_len = _row_ids(kh_offsets, b)
    # cached: every query is a candidate and the cached rows are the whole history
    n_hist = kh_len if CACHED else q_len - tl.load(n_cand_ptr + b).to(tl.int32)
    m0 = pid_m * BLOCK_M
    if m0 < q_len:
        pos0 = m0 + n_hist if CACHED else m0  # position of the block's first query in its sequence
        offs_m = m0 + tl.arange(0, BLOCK_M)
        pos_m = offs_m + (n_hist if CACHED else 0)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        row_ok = offs_m < q_len
        qptrs = (q_start + offs_m)[:, None] * stride_t + h * D + offs_d[None, :]
        io_mask = row_ok[:, None] & d_ok[None, :]
        q = tl.load(Q + qptrs, mask=io_mask, other=0.0)
        if UPCAST:
            q = q.to(tl.float32)

        m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        offs_n0 = tl.arange(0, BLOCK_N)

        # history keys every query of the block may see (j ≤ pos0, j < n_hist): whole tiles, no mask
        lo_full = (tl.minimum(pos0 + 1, n_hist) // BLOCK_N) * BLOCK_N
        hi = tl.minimum(pos0 + BLOCK_M, n_hist)
        for start_n in range(0, lo_full, BLOCK_N):
            krow = kh_start + start_n + offs_n0
            kt = tl.load(
                KH + krow[None, :] * stride_t + h * D + offs_d[:, None], mask=d_ok[:, None], other=0.0
            )
            v = tl.load(
                VH + krow[:, None] * stride_t + h * D + offs_d[None, :], mask=d_ok[None, :], other=0.0
            )
            if UPCAST:
                kt = kt.to(tl.float32)
                v = v.to(tl.float32)
            s = tl.dot(q, kt, input_precision=PRECISION) * scale_log2
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp2(s - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        # tiles touching the diagonal or the history's end: element mask j ≤ i and j < n_hist
        for start_n in range(lo_full, hi, BLOCK_N):
            offs_n = start_n + offs_n0
            n_ok = offs_n < n_hist
            krow = kh_start + offs_n
            kt = tl.load(
                KH + krow[None, :] * stride_t + h * D + offs_d[:, None],
                mask=d_ok[:, None] & n_ok[None, :],
                other=0.0,
            )
            v = tl.load(
                VH + krow[:, None] * stride_t + h * D + offs_d[None, :],
                mask=n_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            if UPCAST:
                kt = kt.to(tl.float32)
                v = v.to(tl.float32)
            s = tl.dot(q, kt, input_precision=PRECISION) * scale_log2
            allowed = n_ok[None, :] & (offs_n[None, :] <= pos_m[:, None])
            s = tl.where(allowed, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp2(s - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        # candidates' own key: the diagonal of the candidate square, as a row-wise dot product
        cand = row_ok & (pos_m >= n_hist)
        self_mask = cand[:, None] & d_ok[None, :]
        ks = tl.load(K + qptrs, mask=self_mask, other=0.0).to(tl.float32)
        vs = tl.load(V + qptrs, mask=self_mask, other=0.0).to(tl.float32)
        s_self = tl.where(cand, tl.sum(q.to(tl.float32) * ks, 1) * scale_log2, float("-inf"))
        m_new = tl.maximum(m_i, s_self)
        p_self = tl.exp2(s_self - m_new)
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + p_self
        acc = acc * alpha[:, None] + p_self[:, None] * vs
        m_i = m_new

        l_safe = tl.where(l_i > 0, l_i, 1.0)
        tl.store(Out + qptrs, (acc / l_safe[:, None]).to(Out.dtype.element_ty), mask=io_mask)
        tl.store(Lse + (q_start + offs_m) * H + h, m_i + tl.log2(l_safe), mask=row_ok)  # log2-sum-exp2


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, Out, DO, Lse, Delta, DQ,
    seq_offsets, n_cand_ptr,
    stride_t, H, D, scale_log2, scale,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    start, length = _row_ids(seq_offsets, b)
    n_hist = length - tl.load(n_cand_ptr + b).to(tl.int32)
    m0 = pid_m * BLOCK_M
    if m0 < length:
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        row_ok = offs_m < length
        rows = start + offs_m
        ptrs = rows[:, None] * stride_t + h * D + offs_d[None, :]
        io_mask = row_ok[:, None] & d_ok[None, :]
        q = tl.load(Q + ptrs, mask=io_mask, other=0.0)
        do = tl.load(DO + ptrs, mask=io_mask, other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        lse = tl.load(Lse + rows * H + h, mask=row_ok, other=0.0)
        # delta_i = Σ_j P_ij dP_ij = rowsum(dO ∘ O): computed here, stored for the dK/dV kernel
        o = tl.load(Out + ptrs, mask=io_mask, other=0.0).to(tl.float32)
        delta = tl.sum(do.to(tl.float32) * o, 1)
        tl.store(Delta + rows * H + h, delta, mask=row_ok)
        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        offs_n0 = tl.arange(0, BLOCK_N)
        lo_full = (tl.minimum(m0 + 1, n_hist) // BLOCK_N) * BLOCK_N
        hi = tl.minimum(m0 + BLOCK_M, n_hist)
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + offs_n0
            n_ok = offs_n < n_hist
            kptrs = (start + offs_n)[None, :] * stride_t + h * D + offs_d[:, None]  # (D, N)
            kv_mask = d_ok[:, None] & n_ok[None, :]
            kt = tl.load(K + kptrs, mask=kv_mask, other=0.0)
            vt = tl.load(V + kptrs, mask=kv_mask, other=0.0)
            if UPCAST:
                kt = kt.to(tl.float32)
                vt = vt.to(tl.float32)
            s = tl.dot(q, kt, input_precision=PRECISION) * scale_log2
            if start_n >= lo_full:
                s = tl.where(n_ok[None, :] & (offs_n[None, :] <= offs_m[:, None]), s, float("-inf"))
            p = tl.exp2(s - lse[:, None])
            dp = tl.dot(do, vt, input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=PRECISION)
        cand = row_ok & (offs_m >= n_hist)
        self_mask = cand[:, None] & d_ok[None, :]
        ks = tl.load(K + ptrs, mask=self_mask, other=0.0).to(tl.float32)
        vs = tl.load(V + ptrs, mask=self_mask, other=0.0).to(tl.float32)
        p_self = tl.exp2(tl.sum(q.to(tl.float32) * ks, 1) * scale_log2 - lse)
        ds_self = tl.where(cand, p_self * (tl.sum(do.to(tl.float32) * vs, 1) - delta), 0.0)
        dq += ds_self[:, None] * ks
        tl.store(DQ + ptrs, (dq * scale).to(DQ.dtype.element_ty), mask=io_mask)


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, Lse, Delta, DK, DV,
    seq_offsets, n_cand_ptr,
    stride_t, H, D, scale_log2, scale,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)  # early key blocks are seen by the most queries: they start first
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    start, length = _row_ids(seq_offsets, b)
    n_hist = length - tl.load(n_cand_ptr + b).to(tl.int32)
    n0 = pid_n * BLOCK_N
    if n0 < length:
        offs_n = n0 + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        key_ok = offs_n < length
        krow = start + offs_n
        kptrs = krow[:, None] * stride_t + h * D + offs_d[None, :]
        kv_mask = key_ok[:, None] & d_ok[None, :]
        k = tl.load(K + kptrs, mask=kv_mask, other=0.0)
        v = tl.load(V + kptrs, mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        hist_key = offs_n < n_hist
        if n0 < n_hist:
            # queries that see this block's history keys: from its diagonal to the end (candidates included).
            # Past the diagonal only the history's end can mask a key; a block inside the history needs none.
            # Transposed products (sᵀ = K Qᵀ): the probabilities come out key-major, ready for dV and dK.
            mask_end = tl.where(n0 + BLOCK_N > n_hist, length, tl.minimum(n0 + BLOCK_N, length))
            offs_m0 = tl.arange(0, BLOCK_M)
            for start_m in range(n0, length, BLOCK_M):
                offs_m = start_m + offs_m0
                m_ok = offs_m < length
                rows = start + offs_m
                qt = tl.load(
                    Q + rows[None, :] * stride_t + h * D + offs_d[:, None],
                    mask=d_ok[:, None] & m_ok[None, :],
                    other=0.0,
                )  # (D, M)
                do = tl.load(
                    DO + rows[:, None] * stride_t + h * D + offs_d[None, :],
                    mask=m_ok[:, None] & d_ok[None, :],
                    other=0.0,
                )
                if UPCAST:
                    qt = qt.to(tl.float32)
                    do = do.to(tl.float32)
                lse = tl.load(Lse + rows * H + h, mask=m_ok, other=0.0)
                delta = tl.load(Delta + rows * H + h, mask=m_ok, other=0.0)
                pt = tl.exp2(tl.dot(k, qt, input_precision=PRECISION) * scale_log2 - lse[None, :])  # (N, M)
                if start_m < mask_end:
                    allowed = hist_key[:, None] & (offs_n[:, None] <= offs_m[None, :]) & m_ok[None, :]
                    pt = tl.where(allowed, pt, 0.0)
                dv += tl.dot(pt.to(do.dtype), do, input_precision=PRECISION)
                dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)  # (N, M)
                dst = pt * (dpt - delta[None, :])
                dk += tl.dot(dst.to(qt.dtype), tl.trans(qt), input_precision=PRECISION)
        # candidate keys: seen by their own query only
        cand = key_ok & (offs_n >= n_hist)
        self_mask = cand[:, None] & d_ok[None, :]
        qs = tl.load(Q + kptrs, mask=self_mask, other=0.0).to(tl.float32)
        dos = tl.load(DO + kptrs, mask=self_mask, other=0.0).to(tl.float32)
        lse_s = tl.load(Lse + krow * H + h, mask=cand, other=0.0)
        delta_s = tl.load(Delta + krow * H + h, mask=cand, other=0.0)
        p_self = tl.where(cand, tl.exp2(tl.sum(qs * k.to(tl.float32), 1) * scale_log2 - lse_s), 0.0)
        ds_self = p_self * (tl.sum(dos * v.to(tl.float32), 1) - delta_s)
        dv += p_self[:, None] * dos
        dk += ds_self[:, None] * qs
        tl.store(DK + kptrs, (dk * scale).to(DK.dtype.element_ty), mask=kv_mask)
        tl.store(DV + kptrs, dv.to(DV.dtype.element_ty), mask=kv_mask)


# name → (jitted kernel, autotuning configs, autotuning key): the one table _tuned and _launch read
_KERNELS: dict[str, tuple[Any, tuple[BlockConfig, ...], list[str]]] = {
    "fwd": (_fwd_kernel, TUNED_FWD, ["BLOCK_D", "CACHED"]),
    "dq": (_bwd_dq_kernel, TUNED_DQ, ["BLOCK_D"]),
    "dkdv": (_bwd_dkdv_kernel, TUNED_DKDV, ["BLOCK_D"]),
}


def _triton_configs(configs: tuple[BlockConfig, ...]) -> list[triton.Config]:
    return [
        triton.Config(
            {"BLOCK_M": c.block_m, "BLOCK_N": c.block_n}, num_warps=c.num_warps, num_stages=c.num_stages
        )
        for c in configs
    ]


@functools.cache
def _tuned(name: str) -> Any:
    """The autotuned launcher of one kernel (built on first GPU use: the interpreter refuses autotuning).
    Tuned per (head-dim tile, causal/cached mode, dtypes); every config rewrites all of its outputs, so the
    autotuner's trial runs leave nothing behind."""
    kernel, configs, key = _KERNELS[name]
    return triton.autotune(configs=_triton_configs(configs), key=key)(kernel)


def tuned_configs() -> dict[str, dict[str, str]]:
    """What the autotuner chose so far, per kernel and tuning key (for benchmark reports)."""
    out: dict[str, dict[str, str]] = {}
    for name in _KERNELS:
        if _tuned.cache_info().currsize and not interpreting():
            out[name] = {str(k): str(v) for k, v in _tuned(name).cache.items()}
    return out


def _launch(
    name: str,
    grid_axis: str,
    max_len: int,
    n_programs: int,
    config: BlockConfig | None,
    *args: Any,
    **kw: Any,
) -> None:
    raw = _KERNELS[name][0]
    if config is None and interpreting():
        config = INTERPRETER_CONFIG
    if config is not None:
        tile = config.block_m if grid_axis == "BLOCK_M" else config.block_n
        raw[(triton.cdiv(max_len, tile), n_programs)](
            *args, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
            num_warps=config.num_warps, num_stages=config.num_stages, **kw,
        )  # fmt: skip
        return
    _tuned(name)[lambda meta: (triton.cdiv(max_len, meta[grid_axis]), n_programs)](*args, **kw)


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # ignored for fp16/bf16 dots


def _common(q: torch.Tensor) -> dict[str, Any]:
    return {
        "UPCAST": interpreting(),
        "PRECISION": _precision(q.dtype),
        "BLOCK_D": max(16, triton.next_power_of_2(q.shape[-1])),
    }


def _forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kh: torch.Tensor,
    vh: torch.Tensor,
    q_offsets: torch.Tensor,
    kh_offsets: torch.Tensor,
    n_cand: torch.Tensor,
    max_len: int,
    scale: float,
    cached: bool,
    config: BlockConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    T, H, D = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((T, H), dtype=torch.float32, device=q.device)
    n_seq = q_offsets.numel() - 1
    if T == 0 or n_seq == 0 or max_len == 0:
        return out, lse
    _launch(
        "fwd", "BLOCK_M", max_len, n_seq * H, config,
        q, k, v, kh, vh, out, lse, q_offsets, kh_offsets, n_cand, H * D, H, D, scale * _LOG2E,
        CACHED=cached, **_common(q),
    )  # fmt: skip
    return out, lse


def _backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    seq_offsets: torch.Tensor,
    n_cand: torch.Tensor,
    max_len: int,
    scale: float,
    config: BlockConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    T, H, D = q.shape
    do = do.contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    n_seq = seq_offsets.numel() - 1
    if T == 0 or n_seq == 0 or max_len == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    delta = torch.empty_like(lse)  # (T, H), filled by the dQ kernel
    args = (seq_offsets, n_cand, H * D, H, D, scale * _LOG2E, scale)
    _launch(
        "dq", "BLOCK_M", max_len, n_seq * H, config, q, k, v, out, do, lse, delta, dq, *args, **_common(q)
    )
    _launch(
        "dkdv", "BLOCK_N", max_len, n_seq * H, config, q, k, v, do, lse, delta, dk, dv, *args, **_common(q)
    )
    return dq, dk, dv


class _JaggedAttention(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        seq_offsets: torch.Tensor,
        n_cand: torch.Tensor,
        max_len: int,
        scale: float,
        fwd_config: BlockConfig | None,
        bwd_config: BlockConfig | None,
    ) -> torch.Tensor:
        out, lse = _forward(
            q, k, v, k, v, seq_offsets, seq_offsets, n_cand, max_len, scale, False, fwd_config
        )
        ctx.save_for_backward(q, k, v, out, lse, seq_offsets, n_cand)
        ctx.max_len, ctx.scale, ctx.bwd_config = max_len, scale, bwd_config  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, do: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse, seq_offsets, n_cand = ctx.saved_tensors  # type: ignore[attr-defined]
        dq, dk, dv = _backward(
            do,
            q,
            k,
            v,
            out,
            lse,
            seq_offsets,
            n_cand,
            ctx.max_len,
            ctx.scale,
            ctx.bwd_config,  # type: ignore[attr-defined]
        )
        return dq, dk, dv, None, None, None, None, None, None


def triton_jagged_attention(
    q: torch.Tensor,  # (T, H, D)
    k: torch.Tensor,
    v: torch.Tensor,
    seq_offsets: torch.Tensor,  # (B + 1,)
    num_candidates: torch.Tensor,  # (B,)
    scale: float | None = None,
    max_seq_len: int | None = None,
    fwd_config: BlockConfig | None = None,
    bwd_config: BlockConfig | None = None,
) -> torch.Tensor:
    """Same contract as ``pt_jagged_attention``; differentiable in q, k and v. ``max_seq_len`` (the longest
    sequence) sizes the grid; without it it is read from the offsets (one host sync). ``fwd_config`` /
    ``bwd_config`` fix the tiles (tests, sweeps) instead of the autotuned ones."""
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    if max_seq_len is None:
        max_seq_len = int((seq_offsets[1:] - seq_offsets[:-1]).max()) if seq_offsets.numel() > 1 else 0
    seq_offsets, num_candidates = seq_offsets.contiguous(), num_candidates.contiguous()
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _JaggedAttention.apply(
            q, k, v, seq_offsets, num_candidates, max_seq_len, scale, fwd_config, bwd_config
        )
    out, _ = _forward(
        q, k, v, k, v, seq_offsets, seq_offsets, num_candidates, max_seq_len, scale, False, fwd_config
    )
    return out


def triton_cached_candidate_attention(
    q: torch.Tensor,  # (C, H, D) candidate queries, members back to back
    k: torch.Tensor,  # (C, H, D) the candidates' own keys
    v: torch.Tensor,  # (C, H, D)
    cand_offsets: torch.Tensor,  # (B + 1,) candidate rows of each member
    k_hist: torch.Tensor,  # (T_h, H, D) cached history keys, members back to back
    v_hist: torch.Tensor,  # (T_h, H, D)
    hist_offsets: torch.Tensor,  # (B + 1,) history rows of each member
    scale: float | None = None,
    max_candidates: int | None = None,
) -> torch.Tensor:
    """Candidates attending to their member's cached history and to themselves → (C, H, D); forward only."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, k_hist, v_hist)):
        raise NotImplementedError("cached candidate attention is an inference path: run it without autograd")
    q, k, v, k_hist, v_hist = (t.contiguous() for t in (q, k, v, k_hist, v_hist))
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    if max_candidates is None:
        n_cand = cand_offsets[1:] - cand_offsets[:-1]
        max_candidates = int(n_cand.max()) if n_cand.numel() else 0
    out, _ = _forward(
        q, k, v, k_hist, v_hist, cand_offsets.contiguous(), hist_offsets.contiguous(), cand_offsets,
        max_candidates, scale, cached=True,
    )  # fmt: skip
    return out
