"""Where the time of one attention call goes at the ranker's training shape (GPU only) → JSON.

At 8 members × (1,024 history + 512 candidates) × 2 heads × 32 dims the attention is a few GFLOP: the
kernels' own device time and the host's launch path are of the same order, and ``bench/attention.py``'s
CUDA-event timings cannot tell them apart. For ours and SDPA, forward and forward + backward, this records:

* ``wall_ms``: mean time per call over ``iters`` calls with one synchronisation at the end (the pipeline is
  full, so host and device overlap as in training);
* ``enqueue_ms``: mean host time per call to *issue* the same calls (no synchronisation; the device queue is
  drained first): when it approaches ``wall_ms`` the call is host-bound;
* ``kernels``: per-kernel device time per call from ``torch.profiler`` (CUDA activity), largest first.

    python3 bench/attention_profile.py --out $OUT/attention_profile.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _profile(fn: Callable[[], Any], iters: int) -> dict[str, Any]:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / iters * 1e3
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    enqueue = (time.perf_counter() - t0) / iters * 1e3
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    kernels = []
    for ev in prof.key_averages():
        device_us = getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0)
        if device_us > 0:
            kernels.append(
                {"name": ev.key[:90], "us_per_call": round(device_us / iters, 2), "count": ev.count}
            )
    kernels.sort(key=lambda k: -k["us_per_call"])
    return {
        "wall_ms": round(wall, 4),
        "enqueue_ms": round(enqueue, 4),
        "device_ms": round(sum(k["us_per_call"] for k in kernels) / 1e3, 4),
        "kernels": kernels[:8],
    }


def run(history: int, candidates: int, members: int, heads: int, dim: int, iters: int) -> dict[str, Any]:
    from kernels import Kernel, jagged_attention
    from kernels.pytorch.pt_jagged_attention import multi_item_mask
    from kernels.triton.triton_jagged_attention import BlockConfig, triton_jagged_attention, tuned_configs

    dev = torch.device("cuda")
    S = history + candidates
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (
        torch.randn(members * S, heads, dim, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_()
        for _ in range(3)
    )
    do = torch.randn_like(q)
    offsets = torch.arange(members + 1, device=dev) * S
    n_cand = torch.full((members,), candidates, device=dev)
    dense = [
        x.detach().view(members, S, heads, dim).transpose(1, 2).contiguous().requires_grad_()
        for x in (q, k, v)
    ]
    ddo = do.view(members, S, heads, dim).transpose(1, 2).contiguous()
    mask = multi_item_mask(torch.full((1,), S, device=dev), torch.full((1,), candidates, device=dev), S)[
        :, None
    ]

    def ours_fwd() -> Any:
        with torch.no_grad():
            return jagged_attention(
                q, k, v, offsets, n_cand, kernel=Kernel.TRITON, validate_layout=False, max_seq_len=S
            )

    def ours_fwdbwd() -> Any:
        out = jagged_attention(
            q, k, v, offsets, n_cand, kernel=Kernel.TRITON, validate_layout=False, max_seq_len=S
        )
        return torch.autograd.grad(out, (q, k, v), do)

    def sdpa_fwd() -> Any:
        with torch.no_grad():
            return F.scaled_dot_product_attention(*dense, attn_mask=mask)

    def sdpa_fwdbwd() -> Any:
        return torch.autograd.grad(F.scaled_dot_product_attention(*dense, attn_mask=mask), dense, ddo)

    def fixed(cfg: BlockConfig) -> Callable[[], Any]:
        def call() -> Any:
            out = triton_jagged_attention(q, k, v, offsets, n_cand, max_seq_len=S, bwd_config=cfg)
            return torch.autograd.grad(out, (q, k, v), do)

        return call

    arms: dict[str, Callable[[], Any]] = {
        "ours_fwd": ours_fwd,
        "ours_fwdbwd": ours_fwdbwd,
        "sdpa_fwd": sdpa_fwd,
        "sdpa_fwdbwd": sdpa_fwdbwd,
        "ours_fwdbwd_bwd_tiles_64x64_w4": fixed(BlockConfig(64, 64, 4, 2)),
        "ours_fwdbwd_bwd_tiles_128x128_w8": fixed(BlockConfig(128, 128, 8, 2)),
        "ours_fwdbwd_bwd_tiles_32x32_w2": fixed(BlockConfig(32, 32, 2, 2)),
    }
    results = {}
    for name, fn in arms.items():
        try:
            results[name] = _profile(fn, iters)
        except Exception as exc:  # one arm failing (a tile the chip refuses) leaves the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(name, json.dumps(results[name])[:600], flush=True)
    return {
        "device": torch.cuda.get_device_name(0),
        "shape": {
            "history": history,
            "candidates": candidates,
            "members": members,
            "heads": heads,
            "dim": dim,
        },
        "dtype": "bf16",
        "iters": iters,
        "results": results,
        "tuned_configs": tuned_configs(),
        "torch": torch.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--git-commit", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this profile is of GPU kernels", file=sys.stderr)
        return 2
    doc = run(1024, 512, args.members, 2, 32, args.iters) | {"git_commit": args.git_commit}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
