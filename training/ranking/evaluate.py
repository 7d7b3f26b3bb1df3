"""Synthetic half of ``feed train eval-ranking``: the GR against a non-sequential baseline and its own
ablations, all trained in the same run on the same packed batches for the same number of steps.

Arms (each a fresh model, seed-matched):

* ``gr_sum`` / ``gr_interleave`` — the GR with action tokens summed into the item token or interleaved after
  it; the one with the higher *validation* click AUC is "the GR" of the report (the test split is only read
  for the final numbers, never for a choice);
* ``gr_early_fusion`` — context added to the candidate token before the transformer (no late fusion);
* ``gr_no_context`` — no context at all (what late fusion adds);
* ``gr_shared_head`` — one shared MLP head instead of MMoE;
* ``baseline`` — :class:`~training.ranking.baselines.AggregatedHistoryRanker` (DCN over aggregated history).

Metrics per split (``training/ranking/metrics.py``): per-task AUC (multi-label AUC op in ``kernels/``),
normalised entropy, NDCG@10 of engaged posts among each session's impressions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from training.ranking.model import GRConfig
from training.ranking.train import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RankingTrainConfig,
    build_model,
    predict,
    train_ranker,
)
from training.versions import write_current

if TYPE_CHECKING:
    from training.data.ranking_data import RankingArrays

log = logging.getLogger(__name__)

ARMS: tuple[str, ...] = (
    "gr_sum",
    "gr_interleave",
    "gr_early_fusion",
    "gr_no_context",
    "gr_shared_head",
    "baseline",
)
# What `feed train eval-ranking` runs by default: the comparisons (gr_no_context on demand).
DEFAULT_ARMS: tuple[str, ...] = tuple(a for a in ARMS if a != "gr_no_context")


@dataclass(frozen=True)
class SyntheticEvalConfig:
    set_name: str = "default"
    arms: tuple[str, ...] = DEFAULT_ARMS
    model: GRConfig = field(default_factory=lambda: GRConfig(d_model=64, n_layers=2, n_heads=2))
    train: RankingTrainConfig = field(default_factory=RankingTrainConfig)
    eval_token_budget: int = 32_768

    def __post_init__(self) -> None:
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; choose from {ARMS}")


def arm_config(arm: str, base: GRConfig, chosen_encoding: str = "sum") -> tuple[str, GRConfig]:
    """(model kind, model config) of an arm; ablations use the chosen action encoding."""
    cfg = replace(base, action_encoding=chosen_encoding)
    if arm == "gr_sum":
        return "gr", replace(base, action_encoding="sum")
    if arm == "gr_interleave":
        return "gr", replace(base, action_encoding="interleave")
    if arm == "gr_early_fusion":
        return "gr", replace(cfg, fusion="early")
    if arm == "gr_no_context":
        return "gr", replace(cfg, fusion="none")
    if arm == "gr_shared_head":
        return "gr", replace(cfg, head="shared")
    if arm == "baseline":
        return "AggregatedHistoryRanker", replace(base, action_encoding="sum")
    raise ValueError(f"unknown arm {arm!r}")


def fit_to_data(base: GRConfig, arrays: RankingArrays) -> GRConfig:
    """Widths the data decides: post embedding width E and member embedding width Em."""
    return replace(
        base, item_emb_dim=int(arrays.post_table.shape[1]), member_emb_dim=int(arrays.ex_member_emb.shape[1])
    )


def run_arm(
    arm: str,
    model_cfg: GRConfig,
    kind: str,
    splits: dict[str, RankingArrays],
    cfg: SyntheticEvalConfig,
    out_dir: Path,
    *,
    progress: bool,
) -> dict[str, Any]:
    from training.ranking.metrics import summarize

    torch.manual_seed(cfg.train.seed)
    model = build_model(kind, model_cfg)
    t0 = time.perf_counter()
    result = train_ranker(model, splits["train"], cfg.train, out_dir, model_cfg=model_cfg, progress=progress)
    out: dict[str, Any] = {
        "kind": kind,
        "model": dataclasses.asdict(model_cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": time.perf_counter() - t0,
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "tokens_per_second": result.tokens / result.seconds if result.seconds else None,
    }
    for split in ("validation", "test"):
        logits, labels, sessions = predict(
            result.model,
            splits[split],
            model_cfg,
            token_budget=cfg.eval_token_budget,
            device=cfg.train.device,
        )
        out[split] = summarize(logits, labels, sessions)
    metrics_file = out_dir / METRICS_FILE
    metrics = json.loads(metrics_file.read_text())
    metrics["eval"] = {"validation": out["validation"], "test": out["test"], "arm": arm}
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    return out


def evaluate_synthetic(
    set_path: Path, runs_dir: Path, cfg: SyntheticEvalConfig, *, progress: bool = True
) -> dict[str, Any]:
    """Train every arm on the set's train split, score validation and test; returns the results table."""
    from training.data.ranking_data import load_ranking_arrays

    splits = {s: load_ranking_arrays(set_path, s) for s in ("train", "validation", "test")}
    base = fit_to_data(cfg.model, splits["train"])
    results: dict[str, Any] = {}
    encodings = ("gr_sum", "gr_interleave")  # run first: the ablations use the encoding they choose
    for arm in [a for a in encodings if a in cfg.arms] + [a for a in cfg.arms if a not in encodings]:
        kind, model_cfg = arm_config(arm, base, choose_encoding(results))
        log.info("arm %s (%s)", arm, kind)
        results[arm] = run_arm(arm, model_cfg, kind, splits, cfg, runs_dir / arm, progress=progress)
    chosen = choose_encoding(results)
    return {
        "arms": results,
        "chosen_action_encoding": chosen,
        "gr_arm": f"gr_{chosen}" if f"gr_{chosen}" in results else None,
        "data": {s: split_stats(a) for s, a in splits.items()},
    }


def choose_encoding(results: dict[str, Any]) -> str:
    """The action encoding with the higher validation click AUC (sum when only one was run)."""
    if "gr_sum" in results and "gr_interleave" in results:
        s = results["gr_sum"]["validation"]["auc_click"]
        i = results["gr_interleave"]["validation"]["auc_click"]
        return "interleave" if i > s else "sum"
    return "interleave" if "gr_interleave" in results and "gr_sum" not in results else "sum"


def split_stats(arrays: RankingArrays) -> dict[str, Any]:
    h = np.asarray(arrays.ex_history_end)
    n = np.diff(arrays.ex_target_offsets)
    return {
        "examples": len(h),
        "targets": int(n.sum()),
        "members": len(np.unique(arrays.ex_seq)),
        "history_p50": float(np.median(h)) if len(h) else 0.0,
        "history_max": int(h.max()) if len(h) else 0,
        "examples_history_over_1000": int((h > 1000).sum()),
        "click_rate": float((np.asarray(arrays.tgt_action) & 1).mean()) if len(n) else 0.0,
    }


def publish_version(run_dir: Path, ranking_dir: Path, version: str) -> Path:
    """Copy a trained arm to ``artifacts/ranking/<version>`` (model, config, metrics)."""
    dest = ranking_dir / version
    dest.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, CONFIG_FILE, METRICS_FILE):
        shutil.copy2(run_dir / name, dest / name)
    return dest


def promote(ranking_dir: Path, version: str) -> Path:
    """Make ``version`` the served ranker (``CURRENT``; the old one goes to ``PREVIOUS``). Call only after
    the quality gate passed."""
    for needed in (MODEL_FILE, CONFIG_FILE, METRICS_FILE):
        if not (ranking_dir / version / needed).is_file():
            raise FileNotFoundError(
                f"cannot promote {version!r}: {ranking_dir / version / needed} is missing"
            )
    return write_current(ranking_dir, version)


def gate(results: dict[str, Any], task: str = "click") -> tuple[bool, str]:
    """The GR ships only if its validation AUC on ``task`` beats the non-sequential baseline's."""
    arm = results.get("gr_arm")
    if arm is None or "baseline" not in results["arms"]:
        return False, "the gate needs the chosen GR arm and the baseline"
    gr = results["arms"][arm]["validation"][f"auc_{task}"]
    base = results["arms"]["baseline"]["validation"][f"auc_{task}"]
    ok = bool(gr > base)
    return ok, f"validation auc_{task}: GR {gr:.4f} vs baseline {base:.4f} → {'pass' if ok else 'fail'}"


def markdown_table(results: dict[str, Any], tasks: Sequence[str]) -> str:
    head = "| arm | " + " | ".join(f"AUC {t}" for t in tasks) + " | NE click | NDCG@10 |"
    lines = [head, "|" + "---|" * (len(tasks) + 3)]
    for arm, r in results["arms"].items():
        t = r["test"]
        cells = " | ".join(f"{t[f'auc_{task}']:.4f}" for task in tasks)
        lines.append(f"| {arm} | {cells} | {t['ne_click']:.4f} | {t['ndcg_at_10']:.4f} |")
    return "\n".join(lines)
