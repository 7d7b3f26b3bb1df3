"""Benchmark: multi-label ROC AUC (``kernels.multilabel_auc``) vs ``sklearn.metrics.roc_auc_score`` →
``reports/bench/auc.json``.

The ranker's evaluation computes one AUC per task (click, skip, long-dwell, like, comment, share) over every
scored impression. Data: ``tasks`` × ``n`` predictions, labels Bernoulli at feed-like rates per task (from
10 % clicks down to 0.3 % shares), scores = label + Gaussian noise in fp32 (continuous: few ties) and the same
rounded to bf16 (8 mantissa bits: heavy ties, the case the tie handling exists for).

Arms, all on the same arrays in one run (ratios are side by side, so machine noise cancels):

* ``sklearn`` — ``roc_auc_score`` once per task on numpy arrays (CPU); the reference answer;
* ``pytorch_cpu`` — ``multilabel_auc(kernel=PYTORCH)`` on CPU tensors (one call for all tasks);
* with CUDA: ``pytorch_gpu`` (the same reference on GPU tensors) and ``triton_gpu`` (``Kernel.TRITON``), both
  on device-resident inputs, timed with ``torch.cuda.synchronize`` around each call (the AUC comes back as a
  device tensor; its .cpu() is not timed).

Each arm: one warm-up, then the median of ``repeats`` calls. ``max_abs_diff`` of every arm against sklearn
is recorded (the implementations are exact: expect 0 up to float64 rounding of the final ratio).

Runs as a plain script where only torch, numpy and scikit-learn exist (the GPU machine):
``python3 bench/auc.py --out $OUT/auc_gpu.json``; ``feed bench auc [--gpu-json PATH]`` runs it here and
merges the GPU figures of such a run into ``reports/bench/auc.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_common import device_name, median_ms, write_json
from kernels import Kernel, multilabel_auc

TASK_RATES = (0.10, 0.30, 0.05, 0.02, 0.005, 0.003)  # click, skip, long_dwell, like, comment, share


@dataclass(frozen=True)
class AucBenchConfig:
    n: int = 1_000_000
    tasks: int = 6
    repeats: int = 5
    seed: int = 0


def make_data(cfg: AucBenchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed)
    rates = torch.tensor([TASK_RATES[i % len(TASK_RATES)] for i in range(cfg.tasks)])
    labels = torch.rand(cfg.n, cfg.tasks, generator=g) < rates
    scores = labels.float() + torch.randn(cfg.n, cfg.tasks, generator=g)
    return scores, labels


def _sklearn(scores: Any, labels: Any) -> list[float]:
    from sklearn.metrics import roc_auc_score

    return [float(roc_auc_score(labels[:, j], scores[:, j])) for j in range(scores.shape[1])]


def run(cfg: AucBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    scores32, labels = make_data(cfg)
    cases = {"fp32": scores32, "bf16": scores32.to(torch.bfloat16)}
    results: dict[str, dict[str, Any]] = {}
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def seconds(fn: Callable[[], Any], device: torch.device) -> float:
        return median_ms(fn, cfg.repeats, 1, device) / 1e3

    for name, scores in cases.items():
        s_np, y_np = scores.float().numpy(), labels.numpy()
        want = torch.tensor(_sklearn(s_np, y_np), dtype=torch.float64)
        cell: dict[str, Any] = {"sklearn_s": seconds(lambda s=s_np, y=y_np: _sklearn(s, y), cpu)}
        got = multilabel_auc(scores, labels)
        cell["pytorch_cpu_s"] = seconds(lambda s=scores: multilabel_auc(s, labels), cpu)
        cell["pytorch_cpu_max_abs_diff"] = float((got - want).abs().max())
        if torch.cuda.is_available():
            s_gpu, y_gpu = scores.cuda(), labels.cuda()
            for arm, kernel in (("pytorch_gpu", Kernel.PYTORCH), ("triton_gpu", Kernel.TRITON)):
                got = multilabel_auc(s_gpu, y_gpu, kernel=kernel).cpu()
                cell[f"{arm}_max_abs_diff"] = float((got - want).abs().max())
                cell[f"{arm}_s"] = seconds(
                    lambda k=kernel, s=s_gpu, y=y_gpu: multilabel_auc(s, y, kernel=k), cuda
                )
        cell["speedup_vs_sklearn_cpu"] = cell["sklearn_s"] / cell["pytorch_cpu_s"]
        if "triton_gpu_s" in cell:
            cell["speedup_vs_sklearn_gpu"] = cell["sklearn_s"] / cell["triton_gpu_s"]
            cell["triton_vs_pytorch_gpu"] = cell["pytorch_gpu_s"] / cell["triton_gpu_s"]
        results[name] = cell
        log(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in cell.items()))
    fp32 = results["fp32"]
    gpu = torch.cuda.is_available()
    notes = [
        f"{cfg.tasks} tasks × {cfg.n:,} predictions; label rates {TASK_RATES[: cfg.tasks]}; scores = label + "
        "N(0, 1); bf16 case = the same scores rounded to bf16 (heavy ties)",
        "median of repeats after one warm-up; GPU arms on device-resident inputs, synchronised per call",
        "speedup_vs_sklearn_cpu = sklearn (one roc_auc_score per task) ÷ multilabel_auc(kernel=PYTORCH) on "
        "CPU tensors, same machine, same run; speedup_vs_sklearn_gpu = sklearn ÷ Kernel.TRITON on the GPU",
    ]
    if not gpu:
        notes.append(
            "no CUDA device in this run: GPU figures are null (see `gpu` when merged from a GPU run)"
        )
    return {
        "summary": {
            "device": device_name(cuda if torch.cuda.is_available() else cpu),
            "speedup_vs_sklearn_cpu": round(fp32["speedup_vs_sklearn_cpu"], 2),
            "speedup_vs_sklearn_gpu": round(fp32["speedup_vs_sklearn_gpu"], 1) if gpu else None,
            "triton_vs_pytorch_gpu": round(fp32["triton_vs_pytorch_gpu"], 2) if gpu else None,
            "sklearn_s": round(fp32["sklearn_s"], 4),
            "pytorch_cpu_s": round(fp32["pytorch_cpu_s"], 4),
            "triton_gpu_ms": round(fp32["triton_gpu_s"] * 1e3, 3) if gpu else None,
            "max_abs_diff": max(
                v for c in results.values() for k, v in c.items() if k.endswith("_max_abs_diff")
            ),
        },
        "config": asdict(cfg),
        "device": device_name(cuda if torch.cuda.is_available() else cpu),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
        "notes": notes,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def merge_gpu(doc: dict[str, Any], gpu_doc: dict[str, Any]) -> dict[str, Any]:
    """Fold a GPU machine's run into this machine's report: the GPU ratios come from the GPU run (sklearn
    timed on that machine's CPU in the same run), the CPU ratio stays this machine's."""
    gs = gpu_doc["summary"]
    doc["summary"]["speedup_vs_sklearn_gpu"] = gs.get("speedup_vs_sklearn_gpu")
    doc["summary"]["triton_vs_pytorch_gpu"] = gs.get("triton_vs_pytorch_gpu")
    doc["summary"]["triton_gpu_ms"] = gs.get("triton_gpu_ms")
    doc["summary"]["gpu_device"] = gs.get("device")
    doc["gpu"] = gpu_doc
    doc["notes"] = [n for n in doc["notes"] if not n.startswith("no CUDA device")]
    doc["notes"].append(
        f"GPU figures from a run on {gs.get('device')} (git {gpu_doc.get('git_commit')}, "
        f"{gpu_doc.get('created_at')}); its own CPU ratio there: {gs.get('speedup_vs_sklearn_cpu')}"
    )
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench/auc.json"))
    parser.add_argument("--n", type=int, default=AucBenchConfig.n)
    parser.add_argument("--tasks", type=int, default=AucBenchConfig.tasks)
    parser.add_argument("--repeats", type=int, default=AucBenchConfig.repeats)
    parser.add_argument("--git-commit", default=None)
    parser.add_argument(
        "--gpu-json", type=Path, default=None, help="merge the GPU figures of this run's JSON"
    )
    args = parser.parse_args(argv)
    doc = run(
        AucBenchConfig(n=args.n, tasks=args.tasks, repeats=args.repeats), log=lambda m: print(m, flush=True)
    )
    doc["git_commit"] = args.git_commit
    if args.gpu_json is not None:
        doc = merge_gpu(doc, json.loads(args.gpu_json.read_text()))
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
