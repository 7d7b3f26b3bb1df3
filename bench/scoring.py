"""``feed bench scoring``: one shared-context pass (history once + all candidates, multi-item mask) vs one
pass per candidate (history repeated), on the ranker used in serving.

The model is the promoted GR (``artifacts/ranking/CURRENT``) when there is one, else a freshly initialised GR
of the default serving config (the cost does not depend on the weights). Inputs are random with the served
shapes: ``history`` interactions and ``candidates`` posts with 384-d embeddings, one member. The
per-candidate path is batched ``chunk`` sequences at a time (what a naive server would do), and both paths
produce the same scores (checked in the run, reported as ``max_abs_diff``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.gr_inputs import request_inputs
from feed.reports import write_report
from training.ranking.model import GenerativeRanker, GRConfig, RankerInputs, per_candidate_inputs

if TYPE_CHECKING:
    from feed.config import FeedSettings


def chunks(inputs: RankerInputs, size: int) -> list[RankerInputs]:
    """The per-candidate sequences ``size`` at a time (each a batch of single-candidate requests)."""
    single = per_candidate_inputs(inputs)
    n = single.cand_offsets.numel() - 1
    out = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        h0, h1 = int(single.hist_offsets[lo]), int(single.hist_offsets[hi])
        out.append(
            single.select(
                hist=(slice(h0, h1), single.hist_offsets[lo : hi + 1] - h0),
                cand=(slice(lo, hi), single.cand_offsets[lo : hi + 1] - lo),
                members=slice(lo, hi),
            )
        )
    return out


def serving_model(settings: FeedSettings) -> tuple[GenerativeRanker, str]:
    from training.ranking.train import load_ranker

    ranking_dir = settings.paths().artifacts / "ranking"
    current = ranking_dir / "CURRENT"
    if current.is_file():
        version = current.read_text().strip()
        model, _ = load_ranker(ranking_dir / version)
        if isinstance(model, GenerativeRanker):
            return model, f"promoted GR {version}"
    return GenerativeRanker(GRConfig(dropout=0.0)).eval(), "default GRConfig, untrained (no promoted GR)"


def _time(fn: Any, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run(
    settings: FeedSettings,
    *,
    history: int = 1000,
    candidates: int = 500,
    reps: int = 30,
    per_candidate_reps: int = 3,
    chunk: int = 50,
    threads: int | None = None,
    reports_dir: Path | None = None,
) -> Path:
    if threads:
        torch.set_num_threads(threads)
    model, source = serving_model(settings)
    model.eval()
    cfg = model.config
    inputs = request_inputs(cfg, history, candidates)
    parts = chunks(inputs, chunk)
    with torch.inference_mode():
        shared = model(inputs)
        single = torch.cat([model(p) for p in parts])
        max_diff = float((shared - single).abs().max())
        _time(lambda: model(inputs), 3)  # warm-up
        shared_s = _time(lambda: model(inputs), reps)
        per_s = _time(lambda: [model(p) for p in parts], per_candidate_reps)
    shared_ms = np.array(shared_s) * 1e3
    per_ms = np.array(per_s) * 1e3
    speedup = float(np.median(per_ms) / np.median(shared_ms))
    summary = {
        "speedup": speedup,
        "shared_p50_ms": float(np.percentile(shared_ms, 50)),
        "shared_p99_ms": float(np.percentile(shared_ms, 99)),
        "per_candidate_p50_ms": float(np.percentile(per_ms, 50)),
        "shared_candidates_per_s": candidates / float(np.median(shared_ms)) * 1e3,
        "per_candidate_candidates_per_s": candidates / float(np.median(per_ms)) * 1e3,
        "max_abs_diff": max_diff,
        "goal_speedup": 20.0,
    }
    config = {
        "history": history,
        "candidates": candidates,
        "reps": reps,
        "per_candidate_reps": per_candidate_reps,
        "chunk": chunk,
        "threads": torch.get_num_threads(),
        "model": source,
        "model_config": {
            k: getattr(cfg, k)
            for k in ("d_model", "n_heads", "n_layers", "action_encoding", "fusion", "head")
        },
        "parameters": model.num_parameters(),
    }
    notes = [
        "speedup = median time of the per-candidate passes (chunk sequences per batch, history repeated) ÷ "
        "median time of one shared-context pass; both measured in this run on the same model and inputs.",
        "shared p50/p99 over `reps` single-request passes (batch of one member), torch.inference_mode, fp32.",
    ]
    if reports_dir is None:
        return write_report("scoring", summary, config, notes=notes)
    return write_report("scoring", summary, config, notes=notes, reports_dir=reports_dir)
