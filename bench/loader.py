"""Benchmark: the GR ranker's token-budget packing loader vs a plain DataLoader + pad-to-max collate →
``reports/bench/loader.json``.

Both loaders deliver the same units (examples after over-budget ones are split, histories cut to the newest
``max_history``; :mod:`training.data.packing`) over one shuffled epoch, with no model: what is measured is the
input pipeline alone.

* ``packed`` — :class:`~training.data.packing.PackedLoader`: batches of at most ``token_budget`` tokens,
  jagged.
* ``padded`` — ``torch.utils.data.DataLoader(batch_size)`` over the same units, collate padding every history
  and candidate list to the batch maximum. ``batch_size`` is chosen so that a padded batch carries the same
  mean number of *real* tokens as a packed one (packed tokens per batch ÷ mean unit cost), i.e. both feed a
  model the same amount of signal per step.

Per loader: ``tokens_per_s`` = real tokens delivered per second of iteration (best of ``repeats`` epochs: the
machine may be shared, and the best epoch is the least disturbed one) and efficiency = real tokens / tokens
the batches occupy (packed: ``batches × token_budget``; padded: ``B × (max history × tokens_per_history_item +
max targets)`` per batch). ``speedup`` = packed tokens/s ÷ padded tokens/s.

Data: synthetic arrays (:func:`training.data.packing.random_arrays`) with the real set's heavy tail — history
ends lognormal (median 400, σ 1.0: ≈ 18 % of examples have ≥ 1,000 prior interactions, capped at
``max_history`` = 1024), 8–64 targets per example — and, with ``--set``, a built ranking set's split.
No pinned memory or prefetch thread here (CPU host); with CUDA the loader pins and prefetches by default.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from feed.config import REPORTS_DIR

if TYPE_CHECKING:
    from feed.config import FeedSettings
    from training.data.ranking_data import RankingArrays

REPORT_NAME = "loader"
QUICK_REPORT_NAME = "loader_quick"  # --quick never overwrites the committed full report


@dataclass(frozen=True)
class LoaderBenchConfig:
    n_examples: int = 20_000
    token_budget: int = 16_384  # ≈ 16 sequences at the 1,024-item history cap
    max_history: int = 1024
    tokens_per_history_item: int = 1  # 2: the model interleaves action tokens
    history_median: float = 400.0
    history_sigma: float = 1.0
    targets: tuple[int, int] = (8, 64)
    examples_per_member: int = 4
    strategy: str = "sorted_window"
    window: int = 4096
    padded_workers: int = 0  # the plain baseline: collate on the main process, as the packed loader
    repeats: int = 3  # timed epochs per loader; the best counts
    seed: int = 0
    split: str = "train"  # of the real set, with --set

    def __post_init__(self) -> None:
        if self.n_examples < 1 or self.repeats < 1:
            raise ValueError("n_examples and repeats must be >= 1")


def quick_config(**overrides: Any) -> LoaderBenchConfig:
    """The smoke-test preset (``feed bench loader --quick``): 500 examples, a 2,048-token budget."""
    return replace(LoaderBenchConfig(n_examples=500, token_budget=2048, window=512, repeats=1), **overrides)


def _time_epochs(make_iter: Any, repeats: int) -> tuple[float, int, int, int]:
    """Best wall time of ``repeats`` full passes: (seconds, real tokens, occupied tokens, batches)."""
    best = float("inf")
    tokens = occupied = batches = 0
    for _ in range(repeats):
        tokens = occupied = batches = 0
        t0 = time.perf_counter()
        for batch in make_iter():
            tokens += batch.n_tokens
            occupied += batch.padded_tokens if hasattr(batch, "padded_tokens") else batch.budget
            batches += 1
        best = min(best, time.perf_counter() - t0)
    return best, tokens, occupied, batches


def measure(arrays: RankingArrays, cfg: LoaderBenchConfig) -> dict[str, Any]:
    """Packed vs padded on one set of arrays: tokens/s, efficiency, batches; plus the plan-only efficiency of
    next-fit (the cheaper strategy) and of 2 tokens per history item (interleaved action tokens)."""
    from training.data.packing import PackedLoader, PaddedDataLoader

    def loader(**kw: Any) -> PackedLoader:
        args: dict[str, Any] = {
            "tokens_per_history_item": cfg.tokens_per_history_item,
            "strategy": cfg.strategy,
            "window": cfg.window,
        }
        return PackedLoader(arrays, cfg.token_budget, cfg.max_history, seed=cfg.seed, **(args | kw))

    packed = loader()
    t0 = time.perf_counter()
    plan = loader().stats()  # a twin: the timed loader plans each epoch inside its timed pass
    plan_s = time.perf_counter() - t0
    next_fit = loader(strategy="next_fit").stats()
    interleaved = loader(tokens_per_history_item=2).stats()
    units = packed.units
    mean_cost = float(units.cost.mean()) if len(units) else 0.0
    batch_size = max(1, round(plan["tokens"] / max(plan["batches"], 1) / max(mean_cost, 1.0)))
    padded = PaddedDataLoader(
        arrays,
        batch_size,
        token_budget=cfg.token_budget,
        tokens_per_history_item=cfg.tokens_per_history_item,
        num_workers=cfg.padded_workers,
        max_history=cfg.max_history,
        seed=cfg.seed,
    )
    p_s, p_tok, p_occ, p_b = _time_epochs(lambda: iter(packed), cfg.repeats)
    d_s, d_tok, d_occ, d_b = _time_epochs(lambda: iter(padded), cfg.repeats)
    hist = np.minimum(np.asarray(arrays.ex_history_end), cfg.max_history)
    n_tgt = np.diff(np.asarray(arrays.ex_target_offsets))
    packed_tps = p_tok / p_s if p_s > 0 else None
    padded_tps = d_tok / d_s if d_s > 0 else None
    return {
        "examples": int(units.n_examples),
        "units": len(units),
        "split_examples": units.n_split,
        "history_cut_examples": units.n_history_cut,
        "tokens_per_epoch": p_tok,
        "mean_unit_cost": round(mean_cost, 1),
        "history_len": {
            "mean": round(float(hist.mean()), 1) if len(hist) else None,
            "p50": float(np.percentile(hist, 50)) if len(hist) else None,
            "p99": float(np.percentile(hist, 99)) if len(hist) else None,
            "share_ge_1000": round(float((hist >= 1000).mean()), 4) if len(hist) else None,
            "share_empty": round(float((hist == 0).mean()), 4) if len(hist) else None,
        },
        "targets_mean": round(float(n_tgt.mean()), 1) if len(n_tgt) else None,
        "packed": {
            "tokens_per_s": round(packed_tps) if packed_tps else None,
            "epoch_s": round(p_s, 4),
            "batches": p_b,
            "efficiency": round(p_tok / p_occ, 4) if p_occ else None,
            "mean_tokens_per_batch": round(p_tok / p_b, 1) if p_b else None,
            "plan_s": round(plan_s, 4),
            "next_fit_efficiency": round(next_fit["packing_efficiency"], 4),
            "interleaved_efficiency": round(interleaved["packing_efficiency"], 4),
            "interleaved_batches": interleaved["batches"],
        },
        "padded": {
            "tokens_per_s": round(padded_tps) if padded_tps else None,
            "epoch_s": round(d_s, 4),
            "batches": d_b,
            "batch_size": batch_size,
            "efficiency": round(d_tok / d_occ, 4) if d_occ else None,
            "mean_tokens_per_batch": round(d_tok / d_b, 1) if d_b else None,
        },
        "speedup": round(packed_tps / padded_tps, 3) if packed_tps and padded_tps else None,
    }


def resolve_set(settings: FeedSettings, set_path: str | Path) -> Path:
    """``--set``: a directory, or a set name under ``<home>/data/training/ranking/``."""
    path = Path(set_path)
    if path.is_dir():
        return path
    named = settings.paths().data / "training" / "ranking" / str(set_path)
    if named.is_dir():
        return named
    raise FileNotFoundError(f"no ranking set at {path} or {named} (feed train build-ranking-set)")


def run(
    settings: FeedSettings,
    config: LoaderBenchConfig | None = None,
    *,
    set_path: str | Path | None = None,
    quick: bool = False,
    reports_dir: Path = REPORTS_DIR,
) -> Path:
    """Measure on synthetic arrays (and a real set with ``set_path``); write the report, return its path."""
    from feed.reports import write_report
    from training.data.packing import random_arrays

    cfg = config or (quick_config() if quick else LoaderBenchConfig())
    load_before = os.getloadavg()[0]  # the host may be shared: say how busy it was
    real_dir = resolve_set(settings, set_path) if set_path is not None else None  # fail before measuring
    arrays = random_arrays(
        cfg.n_examples,
        examples_per_member=cfg.examples_per_member,
        history_median=cfg.history_median,
        history_sigma=cfg.history_sigma,
        targets=cfg.targets,
        seed=cfg.seed,
    )
    synthetic = measure(arrays, cfg)
    del arrays
    real = None
    if real_dir is not None:
        from training.data.ranking_data import load_ranking_arrays

        real = measure(load_ranking_arrays(real_dir, cfg.split), cfg) | {"set": str(real_dir)}
    load_after = os.getloadavg()[0]
    notes = [
        f"1-minute load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} CPUs",
        "tokens/s: real tokens per second of one epoch's iteration, no model, best of "
        f"{cfg.repeats}; efficiency: real tokens / tokens the batches occupy",
        "padded batch_size gives the same mean real tokens per batch as the packed loader",
    ]
    if real is None:
        notes.append("no real ranking set measured (--set)")
    summary = {
        "packing_efficiency": synthetic["packed"]["efficiency"],
        "speedup": synthetic["speedup"],
        "padded_efficiency": synthetic["padded"]["efficiency"],
        "packed_tokens_per_s": synthetic["packed"]["tokens_per_s"],
        "padded_tokens_per_s": synthetic["padded"]["tokens_per_s"],
        "packed_batches": synthetic["packed"]["batches"],
        "padded_batches": synthetic["padded"]["batches"],
        "padded_batch_size": synthetic["padded"]["batch_size"],
        "next_fit_efficiency": synthetic["packed"]["next_fit_efficiency"],
        "interleaved_packing_efficiency": synthetic["packed"]["interleaved_efficiency"],
        "real_packing_efficiency": real["packed"]["efficiency"] if real else None,
        "real_speedup": real["speedup"] if real else None,
    }
    return write_report(
        QUICK_REPORT_NAME if quick else REPORT_NAME,
        summary,
        asdict(cfg) | {"set": str(real_dir) if real_dir else None},
        notes=notes,
        details={
            "synthetic": synthetic,
            "real": real,
            "load_avg_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        },
        reports_dir=reports_dir,
    )
