"""Tile-size sweep of the Triton multi-item-scoring attention at the serving shape → JSON (GPU only).

The kernel's default tiles (``kernels/triton/triton_jagged_attention.py`` ``_config``) were chosen without a
GPU at hand; this measures the forward and backward kernels at history 1,024 + 512 candidates, 8 members, the
serving model's heads × dim (2 × 32), bf16, for a handful of (BLOCK_M, BLOCK_N, warps, stages), so the
defaults can be set from measurements. ``triton.testing.do_bench`` median ms; the default config is marked.

    python3 bench/attention_sweep.py --out $OUT/attention_sweep.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FWD = [(64, 64, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (64, 32, 4, 3), (128, 32, 4, 3), (128, 128, 8, 2)]
BWD = [(64, 64, 4, 2), (32, 64, 4, 2), (64, 32, 4, 2), (128, 64, 8, 2), (64, 128, 8, 2), (32, 32, 4, 2)]


def run(
    history: int = 1024, candidates: int = 512, members: int = 8, heads: int = 2, dim: int = 32
) -> dict[str, Any]:
    import triton.testing

    from kernels.triton.triton_jagged_attention import BlockConfig, _config, triton_jagged_attention

    dev = torch.device("cuda")
    S = history + candidates
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (
        torch.randn(members * S, heads, dim, device=dev, generator=g, dtype=torch.bfloat16).requires_grad_()
        for _ in range(3)
    )
    offsets = torch.arange(members + 1, device=dev) * S
    n_cand = torch.full((members,), candidates, device=dev)
    do = torch.randn_like(q)
    rows: list[dict[str, Any]] = []
    default_fwd, default_bwd = _config(dim), _config(dim, backward=True)
    for fwd in FWD:
        cfg = BlockConfig(*fwd)

        def f(c: BlockConfig = cfg) -> torch.Tensor:
            with torch.no_grad():
                return triton_jagged_attention(q, k, v, offsets, n_cand, max_seq_len=S, fwd_config=c)

        try:
            ms = float(triton.testing.do_bench(f, return_mode="median"))
            rows.append({"pass": "fwd", "config": fwd, "ms": ms, "default": cfg == default_fwd})
        except Exception as exc:  # a config the compiler or the chip refuses (shared memory)
            rows.append({"pass": "fwd", "config": fwd, "error": f"{type(exc).__name__}: {exc}"[:300]})
        print(rows[-1], flush=True)
    for bwd in BWD:
        cfg = BlockConfig(*bwd)

        def fb(c: BlockConfig = cfg) -> tuple[torch.Tensor, ...]:
            out = triton_jagged_attention(q, k, v, offsets, n_cand, max_seq_len=S, bwd_config=c)
            return torch.autograd.grad(out, (q, k, v), do)

        try:
            ms = float(triton.testing.do_bench(fb, return_mode="median"))
            rows.append({"pass": "fwdbwd", "config": bwd, "ms": ms, "default": cfg == default_bwd})
        except Exception as exc:
            rows.append({"pass": "fwdbwd", "config": bwd, "error": f"{type(exc).__name__}: {exc}"[:300]})
        print(rows[-1], flush=True)
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
        "config_fields": ["block_m", "block_n", "num_warps", "num_stages"],
        "fwdbwd_note": "fwdbwd rows vary the backward tiles; the forward uses its default tiles",
        "rows": rows,
        "torch": torch.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--git-commit", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: the sweep measures GPU kernels only", file=sys.stderr)
        return 2
    doc = run() | {"git_commit": args.git_commit}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
