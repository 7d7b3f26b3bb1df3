"""Quality per member group from ranks and predictions (the evaluation code's own metrics, split by group)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.audit import quality

from .conftest import GROUPS


def test_recall_by_group_splits_the_anchors() -> None:
    ranks = pd.DataFrame({"member_id": [1, 2, 4, 5, 6], "rank": [0, 20, 5, -1, 60]})
    out = quality.recall_by_group(ranks, pd.Series(GROUPS), ks=(10, 50))
    assert out["A"] == {"recall_at_10": 0.5, "recall_at_50": 1.0, "n_anchors": 2, "n_evaluated": 2}
    assert out["B"] == {"recall_at_10": 1.0, "recall_at_50": 1.0, "n_anchors": 2, "n_evaluated": 1}
    assert out["unknown"]["recall_at_50"] == 0.0  # member 6 has no attribute
    assert out["all"]["n_evaluated"] == 4


def test_auc_by_group_scores_each_group_on_its_own_targets() -> None:
    rng = np.random.default_rng(0)
    n = 200
    member = np.where(np.arange(n) < 100, 1, 4)  # targets of a group-A and a group-B member
    labels = (rng.random((n, 6)) < 0.3).astype(np.float32)
    logits = np.where(labels > 0, 1.0, -1.0).astype(np.float32)
    logits[member == 4] *= -1  # perfectly wrong for group B
    pred = {"logits": logits, "labels": labels, "sessions": np.arange(n) // 10, "member_id": member}
    out = quality.auc_by_group(pred, pd.Series(GROUPS))
    assert out["A"]["auc_click"] == pytest.approx(1.0)
    assert out["B"]["auc_click"] == pytest.approx(0.0)
    assert out["all"]["n_targets"] == n
    assert out["A"]["positives"]["click"] == int(labels[:100, 0].sum())


def test_quality_gaps_are_best_minus_worst_group() -> None:
    by_group = {
        "A": {"recall_at_10": 0.2, "auc_click": 0.7, "n_anchors": 10},
        "B": {"recall_at_10": 0.05, "auc_click": 0.75, "auc_share": None},
        "unknown": {"recall_at_10": 0.1},
        "all": {"recall_at_10": 0.9},  # not a group
    }
    assert quality.gaps(by_group) == pytest.approx({"recall_at_10": 0.15, "auc_click": 0.05})


def test_merge_by_group_puts_recall_and_auc_side_by_side() -> None:
    merged = quality.merge_by_group(
        {
            "retrieval": {"by_group": {"A": {"recall_at_10": 0.1}}},
            "ranking": {
                "by_group": {"A": {"auc_click": 0.8, "positives": {"click": 3}}, "B": {"auc_click": 0.7}}
            },
        }
    )
    assert merged == {"A": {"recall_at_10": 0.1, "auc_click": 0.8}, "B": {"auc_click": 0.7}}


def test_recall_gap_notes_compare_the_gap_with_its_standard_error() -> None:
    by_group = {
        "A": {"recall_at_10": 0.06, "n_evaluated": 65},
        "B": {"recall_at_10": 0.11, "n_evaluated": 83},
        "all": {"recall_at_10": 0.09, "n_evaluated": 148},
    }
    (note,) = quality.recall_gap_notes(by_group, ks=(10,))
    assert note.startswith("recall_at_10 gap B − A = 0.050 (binomial SE 0.045")
    assert note.endswith("within sampling noise")
    big = {"A": {"recall_at_10": 0.1, "n_evaluated": 5000}, "B": {"recall_at_10": 0.2, "n_evaluated": 5000}}
    assert quality.recall_gap_notes(big, ks=(10,))[0].endswith("larger than sampling noise")
    assert quality.recall_gap_notes({"A": by_group["A"]}, ks=(10,)) == []
