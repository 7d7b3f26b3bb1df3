"""feed_ranking_training's task bodies (feed.flows.ranking) on ``tiny``: the gate refuses a GR trained on
shuffled labels when a good ranker is serving and leaves CURRENT alone; a whole ``airflow dags test`` run on a
home with no promoted retrieval model promotes its version, and re-running the interval replaces it. Plus the
gate's decision rule on plain dicts."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from feed.config import FeedPaths, FeedSettings

if TYPE_CHECKING:
    from tests.conftest import BuiltRankingSet

# Small but meaningful: at this size the GR clearly learns click on tiny (tests/training/ranking/test_train.py
# uses the same shape); the shuffled-label control cannot.
CONF: dict[str, Any] = {
    "steps": 60,
    "token_budget": 8192,
    "d_model": 32,
    "n_layers": 1,
    "max_history": 256,
    "device": "cpu",
}


# --- the decision rule (fast)


def test_compare_names_the_tasks_beyond_tolerance() -> None:
    from feed.flows.ranking import compare_to_current

    current = {"auc_click": 0.70, "auc_like": 0.65, "auc_share": None}
    candidate = {"auc_click": 0.695, "auc_like": 0.62, "auc_share": 0.9}
    ok, regressed, reason = compare_to_current(candidate, current, ("click", "like", "share"), 0.01)
    assert not ok
    assert regressed == ["like"]  # click is within tolerance; share is undefined for the current ranker
    assert "like" in reason


def test_compare_refuses_an_undefined_candidate_auc() -> None:
    from feed.flows.ranking import compare_to_current

    ok, regressed, _ = compare_to_current({"auc_click": None}, {"auc_click": 0.6}, ("click",), 0.01)
    assert not ok
    assert regressed == ["click"]


def test_run_conf_rejects_unknown_keys() -> None:
    from feed.flows.ranking import RankingRunConfig

    assert RankingRunConfig.from_conf({"steps": 5}).steps == 5
    with pytest.raises(ValueError, match="stpes"):
        RankingRunConfig.from_conf({"stpes": 5})


# --- on tiny data


@pytest.mark.slow
@pytest.mark.integration
def test_gate_refuses_a_shuffled_label_candidate(
    ranking_set: BuiltRankingSet, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    from feed.flows.ranking import (
        RankingGateConfig,
        RankingGateFailed,
        evaluate_candidate,
        gate_candidate,
        promote_candidate,
        train_candidate,
    )
    from training.versions import current_version

    settings = FeedSettings(home=tmp_path)
    ranking_dir = settings.paths().artifacts / "ranking"
    set_path = ranking_set.path
    good = train_candidate(set_path, "g-good", CONF, settings=settings)
    good_eval = evaluate_candidate(set_path, good["candidate"], CONF)
    promote_candidate(good["candidate"], "g-good", settings=settings)
    assert current_version(ranking_dir) == "g-good"

    # The good ranker against itself passes (equal AUC on every gated task): the gate compares to CURRENT.
    same = gate_candidate(set_path, good["candidate"], good_eval, CONF, settings=settings)
    assert same["against"] == "current:g-good"
    assert "click" in same["tasks"]

    bad = train_candidate(set_path, "g-bad", {**CONF, "shuffle_labels": True}, settings=settings)
    bad_eval = evaluate_candidate(set_path, bad["candidate"], CONF)
    tolerance = RankingGateConfig().tolerance
    record_property("good_validation", good_eval["validation"])  # the margin, in --junitxml output
    record_property("shuffled_validation", bad_eval["validation"])
    gap = good_eval["validation"]["auc_click"] - bad_eval["validation"]["auc_click"]
    assert gap > 2 * tolerance, (good_eval["validation"], bad_eval["validation"])  # a meaningful comparison
    with pytest.raises(RankingGateFailed, match=r"regressed: .*click") as refused:
        gate_candidate(set_path, bad["candidate"], bad_eval, CONF, settings=settings)
    assert "CURRENT is unchanged" in str(refused.value)
    assert current_version(ranking_dir) == "g-good"
    assert not (ranking_dir / "g-bad").exists()  # never published


@pytest.mark.slow
@pytest.mark.integration
def test_dag_run_promotes_on_a_home_without_a_retrieval_model(
    tiny_feature_home: FeedPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feed.orchestration import dags_test
    from training.versions import current_version

    paths = FeedPaths(home=tmp_path / "home")
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    assert not (paths.artifacts / "retrieval" / "CURRENT").exists()  # no post/member embeddings in the set
    monkeypatch.setenv("FEED_SPARK_MASTER", "local[2]")

    result = dags_test(paths, "feed_ranking_training", dt.date(2026, 9, 28), conf=CONF)

    assert result.state == "success"
    ranking_dir = paths.artifacts / "ranking"
    assert current_version(ranking_dir) == "g20260928"  # the data interval ends on the logical date
    assert (ranking_dir / "g20260928" / "model.pt").is_file()
    assert not (ranking_dir / "PREVIOUS").exists()  # first promotion
    assert [p.name for p in (ranking_dir / "candidates").iterdir()] == ["g20260928"]
    model = (ranking_dir / "g20260928" / "model.pt").stat().st_mtime_ns

    # The same interval again: gated against the version it replaces, then swapped in; nothing added.
    dags_test(paths, "feed_ranking_training", dt.date(2026, 9, 28), conf=CONF)
    assert current_version(ranking_dir) == "g20260928"
    assert not (ranking_dir / "PREVIOUS").exists()  # write_current keeps no PREVIOUS of the same version
    assert (ranking_dir / "g20260928" / "model.pt").stat().st_mtime_ns != model
    assert sorted(p.name for p in ranking_dir.iterdir()) == ["CURRENT", "candidates", "g20260928"]
    assert [p.name for p in (paths.data / "training" / "ranking").iterdir()] == ["g20260928"]
