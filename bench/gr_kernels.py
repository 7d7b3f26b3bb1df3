"""Benchmark: the GR ranker with its attention on the Triton kernel vs the PyTorch reference, end to end →
``reports/bench/gr_kernels.json``.

What a kernel is worth inside the model, not in isolation: the same weights (one seed) with
``GRConfig.kernel`` = ``pytorch`` and ``triton``, on the same inputs, in one run:

* ``train_step``: forward + loss + backward + AdamW step on a packed batch of ``members`` members ×
  (``history`` interactions + ``targets`` candidates), about the training token budget, bf16 autocast on CUDA;
* ``serve``: one request, ``serve_history`` interactions and ``serve_candidates`` candidates, forward under
  ``torch.inference_mode`` (bf16 autocast on CUDA), the shared-context pass the scorer runs.

Median ms of ``reps`` after ``warmup`` calls, synchronised per call. Agreement: max |Δ logit| between the two
kernels on the serving request in fp32 (the kernels differ only in summation order) and under bf16 autocast.

Runs as a plain script where only torch exists (the GPU machine): ``python3 bench/gr_kernels.py --out F``.
On CPU the Triton kernel runs in the interpreter (``TRITON_INTERPRET=1``, set by :func:`main` when there is no
GPU) — useful as a check that the switch works, meaningless as a timing; ``--smoke`` shrinks everything.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class GRKernelBenchConfig:
    members: int = 16
    history: int = 1000
    targets: int = 24
    serve_history: int = 1000
    serve_candidates: int = 500
    reps: int = 10
    warmup: int = 3
    seed: int = 0


def run(cfg: GRKernelBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from bench.gpu_common import median_ms
    from bench.gr_inputs import request_inputs
    from training.ranking.model import GenerativeRanker, GRConfig

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    base = GRConfig(dropout=0.0)
    batch = request_inputs(base, cfg.history, cfg.targets, seed=cfg.seed, members=cfg.members).to(device)
    request = request_inputs(base, cfg.serve_history, cfg.serve_candidates, seed=cfg.seed + 1).to(device)
    n_targets = cfg.members * cfg.targets
    labels = (torch.rand(n_targets, 6, generator=torch.Generator().manual_seed(cfg.seed)) < 0.2).float()
    labels = labels.to(device)
    results: dict[str, dict[str, float]] = {}
    logits: dict[str, dict[str, torch.Tensor]] = {}
    for kernel in ("pytorch", "triton"):
        torch.manual_seed(cfg.seed)
        model = GenerativeRanker(replace(base, kernel=kernel)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(m: GenerativeRanker = model, o: torch.optim.Optimizer = opt) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = m.loss(m(batch), labels)[0]
            loss.backward()
            o.step()
            o.zero_grad(set_to_none=True)

        def serve(m: GenerativeRanker = model) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                return m(request)

        model.eval()
        with torch.inference_mode():
            logits[kernel] = {"fp32": model(request).float(), "bf16": serve().float()}
        results[kernel] = {"serve_ms": median_ms(serve, cfg.reps, cfg.warmup, device)}
        model.train()
        results[kernel]["train_step_ms"] = median_ms(step, cfg.reps, cfg.warmup, device)
        log(f"{kernel}: " + ", ".join(f"{k}={v:.2f}" for k, v in results[kernel].items()))
    pt, tr = results["pytorch"], results["triton"]
    diff = {p: float((logits["triton"][p] - logits["pytorch"][p]).abs().max()) for p in ("fp32", "bf16")}
    device_name = torch.cuda.get_device_name(0) if cuda else "CPU (Triton interpreter: timings meaningless)"
    return {
        "summary": {
            "device": device_name,
            "train_step_ms_pytorch": round(pt["train_step_ms"], 3),
            "train_step_ms_triton": round(tr["train_step_ms"], 3),
            "train_step_speedup": round(pt["train_step_ms"] / tr["train_step_ms"], 3) if cuda else None,
            "serve_ms_pytorch": round(pt["serve_ms"], 3),
            "serve_ms_triton": round(tr["serve_ms"], 3),
            "serve_speedup": round(pt["serve_ms"] / tr["serve_ms"], 3) if cuda else None,
            "max_abs_logit_diff_fp32": diff["fp32"],
            "max_abs_logit_diff_bf16": diff["bf16"],
            "train_tokens": cfg.members * (cfg.history + cfg.targets),
        },
        "config": asdict(cfg) | {"model": {k: getattr(base, k) for k in ("d_model", "n_heads", "n_layers")}},
        "device": device_name,
        "torch": torch.__version__,
        "notes": [
            "same weights and inputs for both kernels; median of reps after warm-up, synchronised per call",
            "train_step = forward + loss + backward + AdamW step, bf16 autocast on CUDA; serve = one "
            "request's shared-context forward under inference_mode (bf16 autocast on CUDA)",
            "speedups are null on CPU: there the Triton kernel runs in its interpreter",
        ],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench/gr_kernels.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU check of the switch)")
    parser.add_argument("--git-commit", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before any triton import
    cfg = GRKernelBenchConfig()
    if args.smoke:
        cfg = replace(
            cfg, members=2, history=40, targets=4, serve_history=30, serve_candidates=6, reps=1, warmup=0
        )
    doc = run(cfg, log=lambda m: print(m, flush=True))
    doc["git_commit"] = args.git_commit
    from bench.gpu_common import write_json

    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
