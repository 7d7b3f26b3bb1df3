"""Benchmark: the Triton multi-item-scoring attention kernel (``Kernel.TRITON``) against the ways the same
attention is computed without it → ``reports/bench/attention.json`` (+ ``attention.png``).

The ranker scores C candidates of a member in one pass over its L history tokens: history attends causally,
each candidate sees the whole history and itself (``kernels/pytorch/pt_jagged_attention.py``). What the
kernel buys is the question here, so every arm computes that attention on the same numbers:

* ``ours`` — ``kernels.jagged_attention(kernel=Kernel.TRITON, validate_layout=False, max_seq_len=L+C)`` on
  the jagged (B·(L+C), H, D) batch. It visits ≈ L²/2 + C·L scores per member and head and never loads the
  candidate × candidate square.
* ``sdpa`` — ``F.scaled_dot_product_attention`` on dense (B, H, L+C, D) with the mask materialised as a
  (1, 1, L+C, L+C) bool tensor: the PyTorch reference's call without its padding. (L+C)² scores; with a mask
  SDPA cannot use its flash backend.
* ``flex`` — FlexAttention compiled with ``torch.compile(flex_attention, dynamic=False)`` and a BlockMask
  of the same rule (``mask_mod = (kv == q) | ((kv <= q) & (kv < L))``): block sparsity skips the future
  tiles but still computes (and masks) the candidate × candidate diagonal tiles.
* ``naive`` — scoring candidates one at a time: each candidate gets its own sequence (the history + itself,
  L+1 tokens) and causal SDPA (flash) runs over the B·C sequences, i.e. C·(L+1)²/2 scores per member: what
  the multi-item mask exists to avoid. Forward only; skipped when its q/k/v would exceed ``naive_max_gib``.

Grid: history L ∈ {512, 1024, 2048, 4096} × candidates C ∈ {64, 512}, B members per batch all with the same
L and C (so the dense baselines neither pay padding nor gain from it), bf16, H heads × D head dim of the
serving model (``training.ranking.model.GRConfig()``: 2 × 32). Passes: ``fwd`` (no autograd) and
``fwdbwd`` (forward + ``torch.autograd.grad`` of q, k, v for a fixed random upstream gradient).

Timing: ``triton.testing.do_bench`` median in ms (CUDA events; L2 flushed between calls), CUDA events when
triton.testing is missing. The baselines' dense copies, SDPA's bool mask and flex's BlockMask are built
outside the timed region: only the attention call is timed. ``peak_mib``: CUDA peak allocation during one
call minus what was allocated before it (inputs, masks, the upstream gradient). ``speedup`` = arm ms ÷ ours
ms in the same pass of the same run (> 1: ours is faster). The key cell for the summary is L=1024, C=512
(the serving shape: ``max_history`` 1,024, a candidate batch of 512). The cell at the key shape runs
first, the rest after; past ``--deadline-s`` the remaining cells are recorded as null with the reason, and
the JSON is rewritten after every cell, so a killed run still leaves what it measured.

Correctness, per shape: max |ours − sdpa| of the forward output and of dq/dk/dv, both against an fp32 SDPA
reference too (so the bf16 differences can be judged), flex − sdpa and naive − ours on the candidate rows.

Without CUDA only a correctness pass runs: the Triton kernel under the interpreter (``TRITON_INTERPRET=1``,
set before triton is imported) at tiny fp32 shapes against ``Kernel.PYTORCH`` (forward and gradients),
plus the sdpa / naive / eager flex arms against the same reference; every GPU figure in the summary is null.

Self-contained: the GPU machine has torch, triton and the standard library but not this project's venv, so
this file imports nothing from ``feed`` and runs as a plain script from the repo root:

    python3 bench/attention.py --out $OUT/attention.json --git-commit <sha>   # GPU, ≈ 3 min
    python3 bench/attention.py --out /tmp/attention.json                      # no CUDA: correctness only

``feed bench attention`` runs the same :func:`run`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make this repo's ``kernels`` (and ``training``) importable
    sys.path.insert(0, str(ROOT))

from bench.gpu_common import device_name, resolve_device, sync  # noqa: E402

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ARMS = ("ours", "sdpa", "flex", "naive")
PASSES = ("fwd", "fwdbwd")
DEFAULT_HEADS, DEFAULT_HEAD_DIM = 2, 32  # GRConfig() defaults, used when training.ranking cannot import
GPU_SUMMARY_KEYS = (
    "fwd_speedup_vs_sdpa",
    "fwdbwd_speedup_vs_sdpa",
    "fwd_speedup_vs_flex",
    "fwdbwd_speedup_vs_flex",
    "fwd_speedup_vs_naive",
    "ours_fwd_ms",
    "ours_fwdbwd_ms",
)


@dataclass(frozen=True)
class AttentionBenchConfig:
    lengths: tuple[int, ...] = (512, 1024, 2048, 4096)  # history tokens L per member
    candidates: tuple[int, ...] = (64, 512)  # candidates C per member
    batch: int = 8  # members per batch, all with the same L and C
    heads: int | None = None  # None: GRConfig().n_heads
    head_dim: int | None = None  # None: GRConfig().d_model // n_heads
    dtype: str = "bf16"
    arms: tuple[str, ...] = ARMS
    key_cell: tuple[int, int] = (1024, 512)  # (L, C) the summary's speedups are read at
    deadline_s: float = 200.0  # cells not started by then are recorded as skipped
    warmup_ms: int = 25  # do_bench warm-up / measurement budgets per cell
    rep_ms: int = 100
    naive_max_gib: float = 8.0  # skip naive when its q + k + v would exceed this
    seed: int = 0
    device: str = "auto"
    plot: bool = True
    # no CUDA: correctness only, under the Triton interpreter
    cpu_lengths: tuple[int, ...] = (20, 37)
    cpu_candidates: tuple[int, ...] = (1, 5)
    cpu_batch: int = 3

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or "ours" not in self.arms:
            raise ValueError(f"arms must include 'ours' and come from {ARMS}, got {self.arms}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.batch < 1 or not self.lengths or not self.candidates:
            raise ValueError("batch must be >= 1 and lengths / candidates non-empty")


def quick_config(**changes: Any) -> AttentionBenchConfig:
    """Smoke grid: L ∈ {512, 1024} × C = 512 (keeps the key cell), shorter timing budgets."""
    base = AttentionBenchConfig(lengths=(512, 1024), candidates=(512,), warmup_ms=10, rep_ms=40)
    return replace(base, **changes)


# ---------------------------------------------------------------------------------------------- helpers


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def model_dims(cfg: AttentionBenchConfig) -> tuple[int, int, str]:
    """(heads, head_dim, where they came from): the overrides, else the serving model's GRConfig()."""
    if cfg.heads is not None and cfg.head_dim is not None:
        return cfg.heads, cfg.head_dim, "command line"
    try:
        from training.ranking.model import GRConfig

        gr = GRConfig()
        heads, dim, source = gr.n_heads, gr.d_model // gr.n_heads, "training.ranking.model.GRConfig()"
    except Exception as exc:  # the GPU machine may lack a dependency of training.ranking
        heads, dim, source = DEFAULT_HEADS, DEFAULT_HEAD_DIM, f"fallback (GRConfig not importable: {exc})"
    return cfg.heads or heads, cfg.head_dim or dim, source


def use_triton_interpreter() -> str | None:
    """Make ``Kernel.TRITON`` run under Triton's CPU interpreter; returns None, or why it cannot here.

    Triton builds its ``@triton.jit`` functions (its own ``tl.zeros`` … included) interpreted only if
    ``TRITON_INTERPRET=1`` is set when they are imported: so this must run before anything imports triton.
    Our kernel module, if imported before (with triton already interpreting), is reloaded."""
    os.environ["TRITON_INTERPRET"] = "1"
    if "triton" in sys.modules:
        import triton.language as tl

        if type(tl.zeros).__name__ != "InterpretedFunction":
            return (
                "triton was imported before TRITON_INTERPRET=1 was set in this process, so Kernel.TRITON "
                "cannot run under the interpreter: run this in a fresh process (python3 bench/attention.py)"
            )
    mod = sys.modules.get("kernels.triton.triton_jagged_attention")
    if mod is not None and type(mod._fwd_kernel).__name__ != "InterpretedFunction":
        importlib.reload(mod)
    return None


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


# ----------------------------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """One shape's tensors: jagged (T, H, D) for ours, dense (B, H, S, D) copies for the baselines."""

    L: int
    C: int
    B: int
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    do: torch.Tensor  # upstream gradient, jagged
    seq_offsets: torch.Tensor
    num_candidates: torch.Tensor
    dense: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # q, k, v, do as (B, H, S, D)
    mask: torch.Tensor  # (1, 1, S, S) bool, True = attend
    block_mask: Any = None  # flex's BlockMask, built on first use
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # kept for the flex / naive checks

    @property
    def S(self) -> int:
        return self.L + self.C


def to_dense(x: torch.Tensor, B: int) -> torch.Tensor:
    """(B·S, H, D) jagged with equal lengths → (B, H, S, D) contiguous."""
    T, H, D = x.shape
    return x.view(B, T // B, H, D).transpose(1, 2).contiguous()


def make_inputs(
    L: int, C: int, B: int, H: int, D: int, dtype: torch.dtype, device: torch.device, seed: int
) -> Inputs:
    from kernels.pytorch.pt_jagged_attention import multi_item_mask

    S = L + C
    gen = torch.Generator(device=device).manual_seed(seed)
    q, k, v, do = (torch.randn(B * S, H, D, generator=gen, device=device).to(dtype) for _ in range(4))
    seq_offsets = torch.arange(B + 1, device=device, dtype=torch.int64) * S
    num_candidates = torch.full((B,), C, device=device, dtype=torch.int64)
    mask = multi_item_mask(torch.tensor([S], device=device), torch.tensor([C], device=device), S)
    dense = (to_dense(q, B), to_dense(k, B), to_dense(v, B), to_dense(do, B))
    return Inputs(L, C, B, q, k, v, do, seq_offsets, num_candidates, dense, mask.unsqueeze(1))


# ------------------------------------------------------------------------------------------------- arms

_FLEX: dict[str, Any] = {}


def _flex_attention(device: torch.device) -> Callable[..., torch.Tensor]:
    """flex_attention compiled once per process on CUDA (dynamic=False: one graph per shape); eager on CPU,
    where only its numbers are checked."""
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        return flex_attention
    if "fn" not in _FLEX:
        from torch import _dynamo

        for name in ("recompile_limit", "cache_size_limit"):  # 8 by default; this grid needs 2 per shape
            with contextlib.suppress(AttributeError, KeyError):
                setattr(_dynamo.config, name, max(64, getattr(_dynamo.config, name)))
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    return _FLEX["fn"]


def _block_mask(inp: Inputs, device: torch.device) -> Any:
    if inp.block_mask is None:
        from torch.nn.attention.flex_attention import create_block_mask

        n_hist = inp.L

        def mask_mod(
            b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
        ) -> torch.Tensor:
            return (kv_idx == q_idx) | ((kv_idx <= q_idx) & (kv_idx < n_hist))

        inp.block_mask = create_block_mask(mask_mod, B=None, H=None, Q_LEN=inp.S, KV_LEN=inp.S, device=device)
    return inp.block_mask


def arm_fn(arm: str, inp: Inputs, device: torch.device) -> Callable[..., torch.Tensor]:
    """The attention call of ``arm`` as f(q, k, v) on that arm's layout (ours: jagged; others: dense)."""
    if arm == "ours":
        from kernels import Kernel, jagged_attention

        def ours(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return jagged_attention(
                q, k, v, inp.seq_offsets, inp.num_candidates,
                kernel=Kernel.TRITON, validate_layout=False, max_seq_len=inp.S,
            )  # fmt: skip

        return ours
    if arm == "sdpa":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=inp.mask)
    if arm == "flex":
        flex, block_mask = _flex_attention(device), _block_mask(inp, device)
        return lambda q, k, v: flex(q, k, v, block_mask=block_mask)
    if arm == "naive":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    raise ValueError(f"unknown arm {arm!r}")


def naive_bytes(inp: Inputs) -> int:
    _, H, D = inp.q.shape
    return 3 * inp.B * inp.C * H * (inp.L + 1) * D * inp.q.element_size()


def naive_inputs(inp: Inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B·C, H, L+1, D) q, k, v: for every candidate its member's history followed by the candidate."""
    L, C, B = inp.L, inp.C, inp.B
    device = inp.q.device
    idx = torch.cat(
        [torch.arange(L, device=device).expand(C, L), (L + torch.arange(C, device=device)).unsqueeze(1)], 1
    )  # (C, L+1) positions in the member's sequence
    out = []
    for x in inp.dense[:3]:  # (B, H, S, D) → (B, H, C, L+1, D) → (B·C, H, L+1, D)
        _, H, _, D = x.shape
        out.append(x[:, :, idx].permute(0, 2, 1, 3, 4).reshape(B * C, H, L + 1, D))
    return out[0], out[1], out[2]


def naive_candidate_rows(out: torch.Tensor, inp: Inputs) -> torch.Tensor:
    """naive's (B·C, H, L+1, D) output → the candidates' rows (B, C, H, D)."""
    return out[:, :, -1].reshape(inp.B, inp.C, *out.shape[1:2], out.shape[-1])


def ours_candidate_rows(out: torch.Tensor, inp: Inputs) -> torch.Tensor:
    """ours' jagged (T, H, D) output → the candidates' rows (B, C, H, D)."""
    return out.view(inp.B, inp.S, *out.shape[1:])[:, inp.L :]


def with_grads(
    fn: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """(out, dq, dk, dv) of one differentiable call."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, do)
    return (out.detach(), *grads)


# ------------------------------------------------------------------------------------------- correctness


def gpu_check(inp: Inputs, device: torch.device) -> dict[str, Any]:
    """ours vs sdpa (same dtype) and both vs an fp32 SDPA reference: forward output and gradients."""
    ours = with_grads(arm_fn("ours", inp, device), inp.q, inp.k, inp.v, inp.do)
    ours = tuple(to_dense(x, inp.B) for x in ours)
    sdpa = with_grads(arm_fn("sdpa", inp, device), *inp.dense)
    ref = with_grads(arm_fn("sdpa", inp, device), *(x.float() for x in inp.dense))
    inp.outputs["ours"], inp.outputs["sdpa"] = ours[0], sdpa[0]
    row: dict[str, Any] = {"L": inp.L, "C": inp.C, "B": inp.B}
    for i, name in enumerate(("out", "dq", "dk", "dv")):
        row[f"{name}_max_abs_diff_vs_sdpa"] = _round(_max_diff(ours[i], sdpa[i]), 6)
        row[f"{name}_err_ours_vs_fp32"] = _round(_max_diff(ours[i], ref[i]), 6)
        row[f"{name}_err_sdpa_vs_fp32"] = _round(_max_diff(sdpa[i], ref[i]), 6)
    return row


def cpu_check(L: int, C: int, B: int, H: int, D: int, arms: Sequence[str], seed: int) -> dict[str, Any]:
    """Every arm at one tiny fp32 shape against ``Kernel.PYTORCH`` (ours: forward and gradients)."""
    from kernels import Kernel, jagged_attention

    device = torch.device("cpu")
    inp = make_inputs(L, C, B, H, D, torch.float32, device, seed)

    def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return jagged_attention(q, k, v, inp.seq_offsets, inp.num_candidates, kernel=Kernel.PYTORCH)

    ref = with_grads(reference, inp.q, inp.k, inp.v, inp.do)
    row: dict[str, Any] = {"L": L, "C": C, "B": B, "H": H, "D": D, "dtype": "fp32"}
    try:
        ours = with_grads(arm_fn("ours", inp, device), inp.q, inp.k, inp.v, inp.do)
        for i, name in enumerate(("out", "dq", "dk", "dv")):
            row[f"ours_{name}_max_abs_diff_vs_reference"] = _round(_max_diff(ours[i], ref[i]), 8)
    except Exception as exc:  # recorded, and the summary's max diff stays null: the test fails on it
        row["ours_error"] = f"{type(exc).__name__}: {exc}"[:500]
    ref_dense = to_dense(ref[0], B)
    for arm in (a for a in arms if a in ("sdpa", "flex")):
        try:
            with warnings.catch_warnings():  # eager flex warns that it is unfused: known, it is a check
                warnings.simplefilter("ignore")
                got = arm_fn(arm, inp, device)(*inp.dense[:3])
            row[f"{arm}_out_max_abs_diff_vs_reference"] = _round(_max_diff(got, ref_dense), 8)
        except Exception as exc:  # eager flex on CPU is a nicety; record why it did not run
            row[f"{arm}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    if "naive" in arms:
        got = naive_candidate_rows(arm_fn("naive", inp, device)(*naive_inputs(inp)), inp)
        row["naive_out_max_abs_diff_vs_reference"] = _round(
            _max_diff(got, ours_candidate_rows(ref[0], inp)), 8
        )
    return row


# ------------------------------------------------------------------------------------------------ timing


def bench_ms(fn: Callable[[], Any], cfg: AttentionBenchConfig) -> float:
    """Median ms of ``fn()``: triton.testing.do_bench, else CUDA events around each call."""
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        return float(do_bench(fn, warmup=cfg.warmup_ms, rep=cfg.rep_ms, return_mode="median"))
    for _ in range(3):
        fn()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - began) * 1e3 < cfg.rep_ms:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        if len(times) >= 1000:
            break
    return statistics.median(times)


def peak_mib(fn: Callable[[], Any], device: torch.device) -> float:
    """CUDA memory allocated at the peak of one call beyond what was allocated before it."""
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def timed_call(arm: str, pass_: str, inp: Inputs, device: torch.device) -> Callable[[], Any]:
    """The zero-argument call that is timed; every input it needs is made here, outside the timing."""
    fn = arm_fn(arm, inp, device)
    if arm == "ours":
        q, k, v, do = inp.q, inp.k, inp.v, inp.do
    elif arm == "naive":
        (q, k, v), do = naive_inputs(inp), None
    else:
        q, k, v, do = inp.dense
    if pass_ == "fwd":

        def fwd() -> torch.Tensor:
            with torch.no_grad():
                return fn(q, k, v)

        return fwd
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]

    def fwdbwd() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(*leaves), leaves, do)

    return fwdbwd


def arm_output_check(arm: str, out: torch.Tensor, inp: Inputs) -> dict[str, Any]:
    """flex vs sdpa on the forward output; naive vs ours on the candidates' rows (both in the run's dtype)."""
    if arm == "flex" and "sdpa" in inp.outputs:
        return {"out_max_abs_diff_vs_sdpa": _round(_max_diff(out, inp.outputs["sdpa"]), 6)}
    if arm == "naive" and "ours" in inp.outputs:
        ours = inp.outputs["ours"][:, :, inp.L :].transpose(1, 2)  # dense (B, H, S, D) → (B, C, H, D)
        return {"out_max_abs_diff_vs_ours": _round(_max_diff(naive_candidate_rows(out, inp), ours), 6)}
    return {}


def measure(
    arm: str, pass_: str, inp: Inputs, device: torch.device, cfg: AttentionBenchConfig
) -> dict[str, Any]:
    """One cell: first call (compiles: Triton, Inductor), the output check, peak memory, the timing."""
    call = timed_call(arm, pass_, inp, device)
    began = time.perf_counter()
    first = call()
    sync(device)
    row: dict[str, Any] = {"first_call_s": round(time.perf_counter() - began, 3)}
    if pass_ == "fwd":
        row.update(arm_output_check(arm, first, inp))
    del first
    row["peak_mib"] = round(peak_mib(call, device), 2)
    row["ms"] = round(bench_ms(call, cfg), 5)
    return row


# ------------------------------------------------------------------------------------------------- runs


def shape_order(cfg: AttentionBenchConfig) -> list[tuple[int, int]]:
    """The key cell first (the summary needs it most), then the grid by L then C."""
    grid = [(L, C) for L in cfg.lengths for C in cfg.candidates]
    return sorted(grid, key=lambda lc: (lc != cfg.key_cell, lc))


class Runner:
    """Runs the GPU grid into ``doc`` and rewrites the JSON after every cell."""

    def __init__(
        self,
        cfg: AttentionBenchConfig,
        doc: dict[str, Any],
        out: Path,
        device: torch.device,
        log: Callable[[str], Any],
    ) -> None:
        self.cfg, self.doc, self.out, self.device, self.log = cfg, doc, out, device, log
        self.H, self.D = doc["config"]["heads"], doc["config"]["head_dim"]
        self.began = time.perf_counter()

    def over_deadline(self) -> str | None:
        spent = time.perf_counter() - self.began
        if spent <= self.cfg.deadline_s:
            return None
        return (
            f"deadline: --deadline-s {self.cfg.deadline_s:g} s passed ({spent:.0f} s spent) before this cell"
        )

    def base(self, L: int, C: int) -> dict[str, Any]:
        return {"L": L, "C": C, "B": self.cfg.batch, "H": self.H, "D": self.D, "dtype": self.cfg.dtype}

    def cells(self) -> list[tuple[str, str]]:
        return [(a, p) for p in PASSES for a in self.cfg.arms if not (a == "naive" and p == "fwdbwd")]

    def record(self, row: dict[str, Any]) -> None:
        self.doc["results"].append(row)
        write(self.doc, self.cfg, self.out)
        took = (
            f"{row['ms']:.4f} ms, peak {row['peak_mib']} MiB"
            if row.get("ms") is not None
            else row.get("skipped") or row.get("error")
        )
        self.log(f"[attention] L={row['L']} C={row['C']} {row['arm']:>5} {row['pass']:<6}: {took}")

    def skip_shape(self, L: int, C: int, reason: str) -> None:
        for arm, pass_ in self.cells():
            self.record(
                {
                    **self.base(L, C),
                    "arm": arm,
                    "pass": pass_,
                    "ms": None,
                    "peak_mib": None,
                    "speedup": None,
                    "skipped": reason,
                }
            )

    def run_cell(self, inp: Inputs, arm: str, pass_: str) -> dict[str, Any]:
        row = {**self.base(inp.L, inp.C), "arm": arm, "pass": pass_}
        reason = self.over_deadline()
        if reason is None and arm == "naive" and naive_bytes(inp) > self.cfg.naive_max_gib * 2**30:
            reason = (
                f"naive q/k/v would take {naive_bytes(inp) / 2**30:.1f} GiB > {self.cfg.naive_max_gib:g} GiB"
            )
        if reason is not None:
            return {**row, "ms": None, "peak_mib": None, "skipped": reason}
        try:
            return {**row, **measure(arm, pass_, inp, self.device, self.cfg)}
        except Exception as exc:  # one arm failing (OOM, an API missing on this torch) must not end the run
            if isinstance(exc, torch.OutOfMemoryError):
                torch.cuda.empty_cache()
            return {**row, "ms": None, "peak_mib": None, "error": f"{type(exc).__name__}: {exc}"[:500]}

    def run_shape(self, L: int, C: int) -> None:
        reason = self.over_deadline()
        if reason is not None:
            self.skip_shape(L, C, reason)
            return
        dtype = DTYPES[self.cfg.dtype]
        inp = make_inputs(L, C, self.cfg.batch, self.H, self.D, dtype, self.device, self.cfg.seed)
        try:
            self.doc["correctness"].append(gpu_check(inp, self.device))
        except Exception as exc:
            self.doc["correctness"].append({"L": L, "C": C, "error": f"{type(exc).__name__}: {exc}"[:500]})
        ours_ms: dict[str, float | None] = {}
        for arm, pass_ in self.cells():
            row = self.run_cell(inp, arm, pass_)
            if arm == "ours":
                ours_ms[pass_] = row.get("ms")
            base = ours_ms.get(pass_)
            row["speedup"] = _round(row["ms"] / base, 3) if row.get("ms") and base else None
            self.record(row)
        del inp
        torch.cuda.empty_cache()

    def run(self) -> None:
        for L, C in shape_order(self.cfg):
            self.run_shape(L, C)


def run_cpu(cfg: AttentionBenchConfig, doc: dict[str, Any], out: Path, log: Callable[[str], Any]) -> None:
    """No CUDA: the correctness pass at the tiny shapes, under the Triton interpreter."""
    H, D = doc["config"]["heads"], doc["config"]["head_dim"]
    for L in cfg.cpu_lengths:
        for C in cfg.cpu_candidates:
            row = cpu_check(L, C, cfg.cpu_batch, H, D, cfg.arms, cfg.seed)
            doc["correctness"].append(row)
            write(doc, cfg, out)
            diffs = [v for k, v in row.items() if k.startswith("ours_") and isinstance(v, float)]
            worst = f"{max(diffs):.2e}" if diffs else row.get("ours_error")
            log(f"[attention] cpu check L={L} C={C} B={cfg.cpu_batch}: ours max |diff| vs reference {worst}")


# ---------------------------------------------------------------------------------------------- report


def _cell(doc: dict[str, Any], L: int, C: int, arm: str, pass_: str) -> dict[str, Any] | None:
    for row in doc["results"]:
        if (row["L"], row["C"], row["arm"], row["pass"]) == (L, C, arm, pass_):
            return row
    return None


def _speedup_ranges(doc: dict[str, Any]) -> dict[str, list[float] | None]:
    ranges: dict[str, list[float] | None] = {}
    for arm in ARMS[1:]:
        for pass_ in PASSES:
            xs = [
                r["speedup"]
                for r in doc["results"]
                if r["arm"] == arm and r["pass"] == pass_ and r.get("speedup")
            ]
            if arm != "naive" or pass_ == "fwd":
                ranges[f"{pass_}_vs_{arm}"] = [min(xs), max(xs)] if xs else None
    return ranges


def _max_of(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    xs = [r[key] for r in rows if r.get(key) is not None]
    return max(xs) if xs else None


def summarize(doc: dict[str, Any], cfg: AttentionBenchConfig) -> dict[str, Any]:
    """The summary block: speedups at the key cell (null without CUDA), ranges over the grid, accuracy."""
    L, C = cfg.key_cell
    gpu = doc["device_type"] == "cuda"
    s: dict[str, Any] = {"device": doc["device"], "mode": "gpu" if gpu else "cpu-correctness-only"}
    s["key_cell"] = {
        "L": L,
        "C": C,
        "B": cfg.batch,
        "H": doc["config"]["heads"],
        "D": doc["config"]["head_dim"],
        "dtype": cfg.dtype,
    }
    for key in GPU_SUMMARY_KEYS:
        s[key] = None
    if gpu:
        for arm, pass_ in (
            ("sdpa", "fwd"),
            ("sdpa", "fwdbwd"),
            ("flex", "fwd"),
            ("flex", "fwdbwd"),
            ("naive", "fwd"),
        ):
            row = _cell(doc, L, C, arm, pass_)
            s[f"{pass_}_speedup_vs_{arm}"] = row.get("speedup") if row else None
        for pass_ in PASSES:
            row = _cell(doc, L, C, "ours", pass_)
            s[f"ours_{pass_}_ms"] = row.get("ms") if row else None
        s["speedup_ranges"] = _speedup_ranges(doc)
        checks = doc["correctness"]
        s["max_abs_diff_out_vs_sdpa"] = _max_of(checks, "out_max_abs_diff_vs_sdpa")
        s["max_abs_diff_dq_vs_sdpa"] = _max_of(checks, "dq_max_abs_diff_vs_sdpa")
        s["max_err_out_ours_vs_fp32"] = _max_of(checks, "out_err_ours_vs_fp32")
        s["max_err_out_sdpa_vs_fp32"] = _max_of(checks, "out_err_sdpa_vs_fp32")
        s["max_err_dq_ours_vs_fp32"] = _max_of(checks, "dq_err_ours_vs_fp32")
        s["max_err_dq_sdpa_vs_fp32"] = _max_of(checks, "dq_err_sdpa_vs_fp32")
        s["correctness_errors"] = [c for c in checks if "error" in c]
    else:
        s["gpu_figures_null_reason"] = "no CUDA: correctness-only pass under the Triton interpreter (notes)"
        keys = [f"ours_{n}_max_abs_diff_vs_reference" for n in ("out", "dq", "dk", "dv")]
        s["max_abs_diff_vs_reference"] = {
            k.removesuffix("_max_abs_diff_vs_reference"): _max_of(doc["correctness"], k) for k in keys
        }
        for arm in ("sdpa", "flex", "naive"):
            s[f"{arm}_out_max_abs_diff_vs_reference"] = _max_of(
                doc["correctness"], f"{arm}_out_max_abs_diff_vs_reference"
            )
    rows = doc["results"]
    s["cells_measured"] = sum(r.get("ms") is not None for r in rows)
    s["cells_skipped_or_failed"] = sum(r.get("ms") is None for r in rows)
    s["elapsed_s"] = round(time.perf_counter() - doc["_began"], 1)
    return s


def new_doc(cfg: AttentionBenchConfig, device: torch.device, git_commit: str | None) -> dict[str, Any]:
    H, D, dims_from = model_dims(cfg)
    try:  # not ``import triton``: without CUDA the interpreter must be switched on before that
        triton_version: str | None = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton_version = None
    return {
        "summary": {},
        "config": {**asdict(cfg), "heads": H, "head_dim": D, "dims_from": dims_from},
        "device": device_name(device),
        "device_type": device.type,
        "git_commit": git_commit,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {
            "torch": torch.__version__,
            "triton": triton_version,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "host_cpus": os.cpu_count(),
            "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        },
        "notes": _notes(cfg, device),
        "correctness": [],
        "results": [],
        "_began": time.perf_counter(),
    }


def _notes(cfg: AttentionBenchConfig, device: torch.device) -> list[str]:
    if device.type != "cuda":
        return [
            "No CUDA on this machine: correctness only. Kernel.TRITON ran under the Triton interpreter "
            "(TRITON_INTERPRET=1) at tiny fp32 shapes against Kernel.PYTORCH; interpreter timings mean "
            "nothing, so every GPU figure in the summary (speedups, ms) is null. Run "
            "`python3 bench/attention.py` on a GPU for the measurements.",
        ]
    notes = [
        "speedup = arm ms / ours ms, same pass, same run (> 1: ours is faster). Timing: "
        "triton.testing.do_bench median (L2 flushed between calls) or CUDA events.",
        "Baselines are timed on the attention call alone: the jagged → dense (B, H, L+C, D) copies, SDPA's "
        "(1, 1, L+C, L+C) bool mask and flex's BlockMask are built once outside the timed region (a real "
        "caller of sdpa/flex would also pay the layout change, and padding on heavy-tailed batches; here "
        "every member has the same L and C, so there is no padding).",
        "sdpa converts its bool mask to an additive bias inside each call (part of its time); with an "
        "explicit mask SDPA dispatches to its memory-efficient (or math) backend, not flash.",
        "flex: torch.compile(flex_attention, dynamic=False), compiled once per shape and grad mode; the "
        "first call (first_call_s, compilation included) is outside the timing.",
        "naive: every candidate scored as its own sequence (history + candidate, L+1 tokens, causal "
        "SDPA over B·C sequences); forward only. Its speedup compares with ours' forward.",
        "peak_mib = CUDA peak allocation during one call minus what was allocated before it (inputs, masks "
        "and the upstream gradient excluded; fwdbwd includes the q/k/v gradients).",
        "Each figure includes the arm's host-side launch work: at the small cells a call lasts tens of µs, "
        "so launch overhead (ours: two tiny torch ops and an autograd.Function; flex: dynamo guards) counts.",
        "Correctness (correctness[]): ours vs sdpa in the run's dtype, and both vs fp32 SDPA, forward and "
        "dq/dk/dv; flex vs sdpa and naive vs ours on the forward (results[] rows). The check runs before "
        "a shape's cells, so ours' Triton compilation falls there, not in its first_call_s.",
    ]
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        notes.append("WARNING: TRITON_INTERPRET is set on a CUDA machine: the ours timings are meaningless.")
    return notes


def write(doc: dict[str, Any], cfg: AttentionBenchConfig, out: Path) -> None:
    """Recompute the summary and rewrite the JSON (after every cell: a killed run keeps its results)."""
    doc["summary"] = summarize(doc, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in doc.items() if not k.startswith("_")}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(public, indent=2, default=str) + "\n")
    tmp.replace(out)


def plot(doc: dict[str, Any], cfg: AttentionBenchConfig, out: Path) -> Path | None:
    """ms vs history length, one line per arm, one panel per (C, pass) → ``out`` with a .png suffix."""
    rows = [r for r in doc["results"] if r.get("ms") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    cs = sorted({r["C"] for r in rows})
    colors = dict(zip(ARMS, ("C0", "C1", "C2", "C3"), strict=True))
    fig, axes = plt.subplots(len(cs), 2, figsize=(10, 3.6 * len(cs)), squeeze=False)
    for i, C in enumerate(cs):
        for j, pass_ in enumerate(PASSES):
            ax = axes[i][j]
            for arm in cfg.arms:
                pts = sorted(
                    (r["L"], r["ms"]) for r in rows if (r["C"], r["pass"], r["arm"]) == (C, pass_, arm)
                )
                if pts:
                    ax.plot(
                        [p[0] for p in pts], [p[1] for p in pts], marker="o", label=arm, color=colors[arm]
                    )
            ax.set_xscale("log", base=2)
            ax.set(
                yscale="log",
                xlabel="history length L",
                ylabel="ms (median)",
                title=f"C={C}, {pass_}",
            )
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(sorted(cfg.lengths), [str(x) for x in sorted(cfg.lengths)])
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(
        f"Multi-item attention, B={cfg.batch}, {cfg.dtype}, H={doc['config']['heads']}, "
        f"D={doc['config']['head_dim']} — {doc['device']}",
        fontsize=10,
    )
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def run(
    cfg: AttentionBenchConfig,
    out: Path,
    git_commit: str | None = None,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Measure (CUDA) or check (no CUDA), write the JSON to ``out`` and the plot beside it; returns the
    document."""
    log = log or (lambda msg: print(msg, flush=True))
    device = resolve_device(cfg.device)
    interpreter_problem = use_triton_interpreter() if device.type != "cuda" else None
    doc = new_doc(cfg, device, git_commit if git_commit is not None else _git_commit())
    if interpreter_problem:
        doc["notes"].append(interpreter_problem)
    conf = doc["config"]
    log(
        f"[attention] {doc['device']}: torch {torch.__version__}, H={conf['heads']} D={conf['head_dim']} "
        f"({conf['dims_from']})"
    )
    if device.type == "cuda":
        Runner(cfg, doc, out, device, log).run()
        from kernels.triton.triton_jagged_attention import tuned_configs

        doc["tuned_configs"] = tuned_configs()  # the tiles the autotuner picked on this GPU
    else:
        run_cpu(cfg, doc, out, log)
    if cfg.plot and device.type == "cuda":
        try:
            png = plot(doc, cfg, out)
            doc["plot"] = png.name if png else None
        except Exception as exc:  # matplotlib missing or broken: the numbers still count
            doc["notes"].append(f"plot skipped: {type(exc).__name__}: {exc}")
    write(doc, cfg, out)
    log(f"[attention] wrote {out} in {doc['summary']['elapsed_s']} s")
    return doc


GOALS = {"fwd_speedup_vs_sdpa": 2.0, "fwdbwd_speedup_vs_sdpa": 2.0, "fwd_speedup_vs_flex": 1.2,
         "fwdbwd_speedup_vs_flex": 1.2}  # fmt: skip


def _config_of(doc: dict[str, Any]) -> AttentionBenchConfig:
    names = {f.name for f in fields(AttentionBenchConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["config"].items() if k in names}
    return AttentionBenchConfig(**values)


def combine(saturated: Path, training: Path, profile: Path | None, out: Path) -> dict[str, Any]:
    """One report from two GPU runs of this bench on the same commit and GPU — ``saturated`` (a batch big
    enough that the kernels, not the host, set the time: the headline) and ``training`` (the ranker's own
    batch, where every arm is host-bound) — plus ``bench/attention_profile.py``'s device-time split of the
    training batch. Writes ``out`` and a plot per run (``<out>.png``: saturated, ``<out>_b<B>.png``)."""
    sat, tra = (json.loads(Path(p).read_text()) for p in (saturated, training))
    prof = json.loads(Path(profile).read_text()) if profile else None
    if sat["device"] != tra["device"]:
        raise ValueError(f"runs on different GPUs: {sat['device']} vs {tra['device']}")
    s_sum, t_sum = sat["summary"], tra["summary"]
    summary: dict[str, Any] = {"device": sat["device"], "key_cell": s_sum["key_cell"]}
    for key in (*GOALS, "fwd_speedup_vs_naive", "ours_fwd_ms", "ours_fwdbwd_ms"):
        summary[key] = s_sum.get(key)
    summary["goals_met"] = {k: (s_sum.get(k) or 0) >= g for k, g in GOALS.items()}
    summary["speedup_ranges"] = s_sum.get("speedup_ranges")
    training_batch: dict[str, Any] = {"key_cell": t_sum["key_cell"]}
    for key in (*GOALS, "fwd_speedup_vs_naive", "ours_fwd_ms", "ours_fwdbwd_ms", "speedup_ranges"):
        training_batch[key] = t_sum.get(key)
    if prof is not None:
        r = prof["results"]
        dev = {
            k: round(r[k]["device_ms"] * 1e3, 1)
            for k in ("ours_fwd", "ours_fwdbwd", "sdpa_fwd", "sdpa_fwdbwd")
        }
        training_batch["device_time_us"] = dev
        training_batch["device_time_speedup_vs_sdpa"] = {
            "fwd": round(dev["sdpa_fwd"] / dev["ours_fwd"], 2),
            "fwdbwd": round(dev["sdpa_fwdbwd"] / dev["ours_fwdbwd"], 2),
        }
        training_batch["host_enqueue_ms"] = {
            k: r[k]["enqueue_ms"] for k in ("ours_fwd", "ours_fwdbwd", "sdpa_fwd", "sdpa_fwdbwd")
        }
    summary["training_batch"] = training_batch
    for key in ("max_err_out_ours_vs_fp32", "max_err_out_sdpa_vs_fp32", "max_err_dq_ours_vs_fp32",
                "max_err_dq_sdpa_vs_fp32"):  # fmt: skip
        summary[key] = max(x for x in (s_sum.get(key), t_sum.get(key)) if x is not None)
    summary["correctness_errors"] = s_sum.get("correctness_errors", []) + t_sum.get("correctness_errors", [])
    b_sat, b_tra = s_sum["key_cell"]["B"], t_sum["key_cell"]["B"]
    notes = [
        f"Headline (summary top level): B={b_sat} members per batch, where the kernels set the time. "
        f"summary.training_batch: B={b_tra}, the GR ranker's own batch (≈ 16k tokens at L+C = 1,536), where "
        "every arm is host-bound: per call the host needs longer to issue the work than the GPU to run it "
        "(attention_profile: host_enqueue_ms vs device_time_us), so wall-clock ratios there compare launch "
        "paths (Python, autograd, Triton's launcher vs cuDNN's), and device_time_speedup_vs_sdpa compares "
        "the kernels themselves.",
        *sat["notes"],
    ]
    doc = {
        "summary": summary,
        "config": {"saturated": sat["config"], "training_batch": tra["config"]},
        "device": sat["device"],
        "git_commit": sat["git_commit"],
        "created_at": sat["created_at"],
        "environment": sat.get("environment"),
        "notes": notes,
        "tuned_configs": sat.get("tuned_configs"),
        "correctness": sat["correctness"] + tra["correctness"],
        "results": sat["results"] + tra["results"],
        "profile_training_batch": prof,
        "sources": {
            "saturated": sat["git_commit"],
            "training_batch": tra["git_commit"],
            "profile": prof.get("git_commit") if prof else None,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    plot(sat, _config_of(sat), out)
    plot(tra, _config_of(tra), out.with_name(f"{out.stem}_b{b_tra}.png"))
    return doc


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = AttentionBenchConfig()
    p.add_argument("--lengths", type=_ints, default=None, help="history lengths L, comma-separated")
    p.add_argument("--candidates", type=_ints, default=None, help="candidate counts C, comma-separated")
    p.add_argument("--batch", type=int, default=d.batch, help="members per batch")
    p.add_argument("--heads", type=int, default=None, help="[default: GRConfig().n_heads]")
    p.add_argument("--head-dim", type=int, default=None, help="[default: GRConfig() d_model / n_heads]")
    p.add_argument("--dtype", default=d.dtype, choices=sorted(DTYPES))
    p.add_argument("--arms", default=",".join(d.arms), help=f"of {','.join(ARMS)} (ours is required)")
    p.add_argument(
        "--deadline-s", type=float, default=d.deadline_s, help="cells not started by then are skipped"
    )
    p.add_argument("--warmup-ms", type=int, default=None)
    p.add_argument("--rep-ms", type=int, default=None)
    p.add_argument("--naive-max-gib", type=float, default=d.naive_max_gib)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cuda | cpu (cpu: correctness only)")
    p.add_argument("--quick", action="store_true", help="smoke grid: L ∈ {512, 1024}, C = 512")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--git-commit", default=None, help="[default: git rev-parse HEAD, if git is here]")
    p.add_argument("--out", type=Path, default=None, help="JSON path [default: $OUT/attention.json or ./]")
    p.add_argument(
        "--combine",
        nargs=2,
        type=Path,
        metavar=("SATURATED_JSON", "TRAINING_JSON"),
        help="no measuring: merge two GPU runs (big batch, training batch) into --out (see combine())",
    )
    p.add_argument(
        "--profile-json", type=Path, default=None, help="with --combine: attention_profile.py JSON"
    )
    a = p.parse_args(argv)
    if a.combine:
        combine(a.combine[0], a.combine[1], a.profile_json, a.out or Path("reports/bench/attention.json"))
        return 0
    changes: dict[str, Any] = {
        "batch": a.batch, "heads": a.heads, "head_dim": a.head_dim, "dtype": a.dtype,
        "arms": tuple(x.strip() for x in a.arms.split(",") if x.strip()), "deadline_s": a.deadline_s,
        "naive_max_gib": a.naive_max_gib, "seed": a.seed, "device": a.device, "plot": not a.no_plot,
    }  # fmt: skip
    for name in ("lengths", "candidates", "warmup_ms", "rep_ms"):
        if getattr(a, name) is not None:
            changes[name] = getattr(a, name)
    try:
        cfg = quick_config(**changes) if a.quick else AttentionBenchConfig(**changes)
    except ValueError as exc:
        p.error(str(exc))
    out = a.out or Path(os.environ.get("OUT", ".")) / "attention.json"
    run(cfg, out, git_commit=a.git_commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
