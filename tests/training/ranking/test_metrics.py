"""training.ranking.metrics: NDCG against a per-session loop and sklearn, NE against a hand computation,
summarize end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, ndcg_score, roc_auc_score

from training.ranking.features import TASKS
from training.ranking.metrics import blended_score, ndcg_at_k, normalized_entropy, summarize


def reference_ndcg(scores: np.ndarray, gains: np.ndarray, groups: np.ndarray, k: int) -> tuple[float, int]:
    """One group at a time, distinct scores: sort, discount, divide."""
    values = []
    for g in np.unique(groups):
        s, y = scores[groups == g], gains[groups == g]
        disc = 1 / np.log2(np.arange(2, min(k, len(s)) + 2))
        idcg = (np.sort(y)[::-1][:k] * disc).sum()
        if idcg > 0:
            values.append((y[np.argsort(-s)][:k] * disc).sum() / idcg)
    return (float(np.mean(values)) if values else math.nan), len(values)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 200),
    n_groups=st.integers(1, 20),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_ndcg_matches_a_per_group_loop(n: int, n_groups: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n).astype(np.float64)  # distinct: the loop's order is unambiguous
    gains = (rng.random(n) < 0.2) * rng.integers(1, 4, n)
    groups = rng.integers(0, n_groups, n) * 1000 + 7  # sparse, unsorted ids
    got, used = ndcg_at_k(scores, gains, groups, k=k)
    want, want_used = reference_ndcg(scores, gains, groups, k)
    assert used == want_used
    if used:
        assert got == pytest.approx(want, abs=1e-12)
    else:
        assert math.isnan(got)


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_single_group_matches_sklearn_including_ties(k: int) -> None:
    rng = np.random.default_rng(k)
    gains = rng.integers(0, 3, 40).astype(np.float64)
    for scores in (rng.normal(size=40), rng.integers(0, 4, 40).astype(np.float64)):  # distinct, tie-heavy
        got, used = ndcg_at_k(
            torch.tensor(scores), torch.tensor(gains), torch.zeros(40, dtype=torch.int64), k
        )
        assert used == 1
        assert got == pytest.approx(ndcg_score(gains[None], scores[None], k=k), abs=1e-12)


def test_perfect_scores_give_one_and_groups_without_positives_are_skipped() -> None:
    gains = torch.tensor([1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    groups = torch.tensor([5, 5, 5, 9, 9, 2, 2, 2])  # session 9 has no engaged post
    got, used = ndcg_at_k(gains * 10 + torch.arange(8) * 0.01, gains, groups)
    assert (got, used) == (pytest.approx(1.0), 2)
    assert ndcg_at_k(torch.ones(3), torch.zeros(3), torch.arange(3)) == (
        pytest.approx(math.nan, nan_ok=True),
        0,
    )
    worst, _ = ndcg_at_k(-gains, gains, groups, k=1)
    assert worst == 0.0


def test_constant_scores_get_the_tie_average_not_the_input_order() -> None:
    # two items, one relevant: tied scores → mean gain 0.5 at both positions → (0.5 + 0.5/log2 3) / 1
    got, _ = ndcg_at_k(torch.zeros(2), torch.tensor([1.0, 0.0]), torch.zeros(2))
    assert got == pytest.approx(0.5 + 0.5 / math.log2(3))


def test_normalized_entropy_by_hand() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [-2.0, 0.5], [0.5, 3.0]])
    labels = torch.tensor([[1, 1], [0, 1], [0, 1], [1, 1]])  # task 1: base rate 1 → NaN
    p = 0.5
    sig = [1 / (1 + math.exp(-x)) for x in (0.0, 1.0, -2.0, 0.5)]
    loss = -(math.log(sig[0]) + math.log(1 - sig[1]) + math.log(1 - sig[2]) + math.log(sig[3])) / 4
    base = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    got = normalized_entropy(logits, labels)
    assert got.dtype == torch.float64
    assert got[0].item() == pytest.approx(loss / base, rel=1e-12)
    assert math.isnan(got[1])
    # predicting the base rate everywhere is NE = 1 by construction
    y = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    base_rate_logit = torch.full((4, 1), math.log(0.25 / 0.75))
    assert normalized_entropy(base_rate_logit, y).item() == pytest.approx(1.0, rel=1e-12)


def test_summarize_reports_every_task_and_session_ndcg() -> None:
    rng = np.random.default_rng(0)
    n = 500
    labels = (rng.random((n, len(TASKS))) < 0.3).astype(np.int64)
    logits = rng.normal(size=(n, len(TASKS))) + 2 * labels  # informative
    sessions = rng.integers(0, 60, n)
    out = summarize(torch.tensor(logits), torch.tensor(labels), torch.tensor(sessions))
    for j, task in enumerate(TASKS):
        assert out[f"auc_{task}"] == pytest.approx(roc_auc_score(labels[:, j], logits[:, j]), abs=1e-12)
        rate = labels[:, j].mean()
        entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        want_ne = log_loss(labels[:, j], 1 / (1 + np.exp(-logits[:, j]))) / entropy
        assert out[f"ne_{task}"] == pytest.approx(want_ne, rel=1e-9)
    engaged = labels[:, [TASKS.index(t) for t in ("click", "long_dwell", "like", "comment", "share")]].any(1)
    blend = (1 / (1 + np.exp(-logits[:, [0, 2, 3, 4, 5]]))).sum(1)
    want, used = reference_ndcg(blend, engaged.astype(float), sessions, 10)
    assert out["ndcg_at_10"] == pytest.approx(want, abs=1e-12)
    assert out["ndcg_sessions"] == used
    assert out["ndcg_sessions"] + out["ndcg_sessions_skipped"] == len(np.unique(sessions))


def test_blend_weights_pick_the_tasks() -> None:
    logits = torch.tensor([[0.0, 5.0, 0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    only_click = blended_score(logits, TASKS, {"click": 2.0})
    torch.testing.assert_close(only_click, 2 * torch.sigmoid(logits[:, 0].double()))
    with pytest.raises(ValueError, match="not in"):
        blended_score(logits, TASKS, {"dwell": 1.0})
