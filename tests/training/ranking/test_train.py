"""A short GR training run on the ``tiny`` ranking set: the loss falls, the run writes a loadable version, and
the GR beats the non-sequential baseline's click AUC (same batches, same steps, same seed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from training.ranking.metrics import summarize

if TYPE_CHECKING:
    from tests.conftest import BuiltRankingSet

STEPS = 60
BUDGET = 8192


@dataclass(frozen=True)
class Trained:
    gr: dict[str, float]
    baseline: dict[str, float]
    gr_losses: list[float]
    gr_dir: Path


@pytest.fixture(scope="module")
def trained(ranking_set: BuiltRankingSet, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from training.data.ranking_data import load_ranking_arrays
    from training.ranking.baselines import AggregatedHistoryRanker
    from training.ranking.evaluate import fit_to_data
    from training.ranking.model import GenerativeRanker, GRConfig
    from training.ranking.train import RankingTrainConfig, predict, train_ranker

    train = load_ranking_arrays(ranking_set.path, "train")
    test = load_ranking_arrays(ranking_set.path, "test")
    model_cfg = fit_to_data(GRConfig(d_model=32, n_heads=2, n_layers=1, max_history=256), train)
    cfg = RankingTrainConfig(steps=STEPS, token_budget=BUDGET, warmup_steps=5, lr=2e-3, checkpoint="async",
                             checkpoint_every=25)  # fmt: skip
    out = tmp_path_factory.mktemp("ranking_runs")
    results = {}
    losses: list[float] = []
    for name, cls in (("gr", GenerativeRanker), ("baseline", AggregatedHistoryRanker)):
        torch.manual_seed(0)
        result = train_ranker(cls(model_cfg), train, cfg, out / name, model_cfg=model_cfg, progress=False)
        logits, labels, sessions = predict(result.model, test, model_cfg, token_budget=BUDGET, device="auto")
        results[name] = summarize(logits, labels, sessions)
        if name == "gr":
            losses = result.loss_history
    return Trained(results["gr"], results["baseline"], losses, out / "gr")


def test_loss_goes_down(trained: Trained) -> None:
    first, last = np.mean(trained.gr_losses[:5]), np.mean(trained.gr_losses[-5:])
    assert last < 0.8 * first, (first, last)


def test_gr_beats_the_non_sequential_baseline_on_click(
    trained: Trained, record_property: Callable[[str, object], None]
) -> None:
    record_property("gr_auc_click", trained.gr["auc_click"])  # the margin, in --junitxml output
    record_property("baseline_auc_click", trained.baseline["auc_click"])
    assert trained.gr["auc_click"] > trained.baseline["auc_click"], (trained.gr, trained.baseline)
    assert trained.gr["auc_click"] > 0.55


def test_version_is_loadable_and_checkpoints_were_written(trained: Trained) -> None:
    from training.ranking.model import GenerativeRanker
    from training.ranking.train import load_ranker

    model, cfg = load_ranker(trained.gr_dir)
    assert isinstance(model, GenerativeRanker)
    assert cfg.max_history == 256
    metrics = json.loads((trained.gr_dir / "metrics.json").read_text())
    assert metrics["completed"]
    assert sorted(p.name for p in (trained.gr_dir / "checkpoints").glob("step_*.pt"))  # async saves landed
