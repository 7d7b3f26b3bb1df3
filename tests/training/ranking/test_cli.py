"""`feed train ranking` and `feed train eval-ranking` end to end on the tiny ranking set (a few steps): the
version, the report contract keys, the gate's promotion, and clear errors for a missing set / bad options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from feed.cli import app

if TYPE_CHECKING:
    from tests.conftest import BuiltRankingSet


def _home(ranking_set: BuiltRankingSet) -> list[str]:
    return ["--home", str(ranking_set.paths.home)]


def test_train_ranking_writes_a_version(ranking_set: BuiltRankingSet) -> None:
    args = ["train", "ranking", "--set", "t", "--steps", "3", "--token-budget", "2048", "--version", "cli"]
    result = CliRunner().invoke(
        app, [*_home(ranking_set), *args, "--max-history", "64", "--checkpoint", "sync"]
    )
    assert result.exit_code == 0, result.output
    version = ranking_set.paths.artifacts / "ranking" / "cli"
    metrics = json.loads((version / "metrics.json").read_text())
    assert metrics["completed"]
    assert "auc_click" in metrics["eval"]["validation"]
    assert (version / "model.pt").is_file()


def test_eval_ranking_writes_the_report_contract(ranking_set: BuiltRankingSet, tmp_path: Path) -> None:
    args = [
        "train",
        "eval-ranking",
        "--set",
        "t",
        "--steps",
        "3",
        "--token-budget",
        "2048",
        "--max-history",
        "64",
    ]
    args += ["--arms", "gr_sum,baseline", "--no-movielens", "--reports-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*_home(ranking_set), *args])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "ranking_eval.json").read_text())
    assert {"summary", "config", "device", "git_commit", "created_at"} <= doc.keys()
    summary = doc["summary"]
    for key in ("ml100k_hr_at_10", "ml100k_ndcg_at_10", "ml100k_sasrec_hr_at_10", "ml100k_sasrec_ndcg_at_10"):
        assert summary[key] is None  # --no-movielens: null, with the reason in notes
    assert any("MovieLens not run" in n for n in doc["notes"])
    assert 0.0 <= summary["synthetic_click_auc"] <= 1.0
    assert 0.0 <= summary["synthetic_click_auc_baseline"] <= 1.0
    assert (tmp_path / "ranking_eval.md").read_text().startswith("# Ranking evaluation")
    current = ranking_set.paths.artifacts / "ranking" / "CURRENT"
    assert current.is_file() == summary["gate_passed"]  # promoted exactly when the gate passed


def test_missing_set_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "train", "ranking", "--set", "nope"])
    assert result.exit_code == 2
    assert "build-ranking-set" in result.output


def test_bad_action_encoding_is_refused(ranking_set: BuiltRankingSet) -> None:
    args = ["train", "ranking", "--set", "t", "--action-encoding", "concat"]
    result = CliRunner().invoke(app, [*_home(ranking_set), *args])
    assert result.exit_code == 2
    assert "sum, interleave" in result.output
