"""Retrieval metrics: exact-search ranks, ties, skipped anchors, cold-start split, correlation, report."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.retrieval.evaluate import (
    SKIP_POSITIVE_NOT_IN_CANDIDATES,
    CandidatePool,
    EvalConfig,
    EvalCorpus,
    RankingTask,
    TextEncoder,
    encode_texts,
    evaluate_retrieval,
    ndcg_at_k,
    popularity_similarity_correlation,
    positive_ranks,
    rank_task,
    recall_at_k,
    report_summary,
    run_evaluation,
    write_eval_report,
)

QUIET = EvalConfig(progress=False)


def _bag_of_words(texts: list[str], dim: int = 64) -> torch.Tensor:
    """Deterministic toy encoder: hashed word counts, L2-normalised — texts sharing words are similar."""
    out = torch.zeros(len(texts), dim)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.sha256(word.encode()).hexdigest(), 16) % dim] += 1.0
    return torch.nn.functional.normalize(out + 1e-6, dim=-1)


# --- positive_ranks / recall / ndcg ------------------------------------------------------------------------


def test_rank_counts_candidates_scoring_higher() -> None:
    scores = torch.tensor([[0.9, 0.5, 0.7, 0.1]])
    assert positive_ranks(scores, torch.tensor([1])).tolist() == [2]
    assert positive_ranks(scores, torch.tensor([0])).tolist() == [0]
    assert positive_ranks(scores, torch.tensor([3])).tolist() == [3]


def test_ties_rank_the_positive_last_among_equals() -> None:
    # A collapsed encoder (all scores equal) must not earn credit from the candidates' order.
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.2], [0.5, 0.5, 0.5, 0.9]])
    assert positive_ranks(scores, torch.tensor([0, 2])).tolist() == [2, 3]


def test_absent_or_masked_positive_is_minus_one_and_mask_removes_candidates() -> None:
    scores = torch.tensor([[0.9, 0.5, 0.7], [0.9, 0.5, 0.7], [0.9, 0.5, 0.7]])
    mask = torch.tensor([[True, True, True], [False, True, True], [True, False, True]])
    ranks = positive_ranks(scores, torch.tensor([1, 1, 1]), mask)
    assert ranks.tolist() == [2, 1, -1]  # row 1: the 0.9 post is masked out; row 2: the positive itself is
    assert positive_ranks(scores, torch.tensor([-1, 0, 0])).tolist() == [-1, 0, 0]


def test_nan_scores_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        positive_ranks(torch.tensor([[0.1, float("nan")]]), torch.tensor([0]))


def test_recall_and_ndcg_by_hand() -> None:
    ranks = np.array([0, 3, 12, -1])  # −1 = skipped, not counted
    assert recall_at_k(ranks, 10) == pytest.approx(2 / 3)
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranks, 10) == pytest.approx((1.0 + 1.0 / math.log2(5)) / 3)
    assert ndcg_at_k(ranks, 13) == pytest.approx((1.0 + 1.0 / math.log2(5) + 1.0 / math.log2(14)) / 3)
    # k larger than any candidate list: every evaluated anchor is a hit
    assert recall_at_k(np.array([0, 2, 1]), 100) == 1.0
    assert math.isnan(recall_at_k(np.array([-1, -1]), 10))
    assert math.isnan(ndcg_at_k(np.array([], dtype=np.int64), 10))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 9),
    st.integers(0, 2**31 - 1),
)
def test_ranks_match_a_full_sort_reference(n_anchors: int, n_cands: int, seed: int) -> None:
    """Counting == position after sorting by (score desc, positive after its ties): exact search."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=(n_anchors, n_cands)).astype(np.float32)  # small range → many ties
    pos = rng.integers(0, n_cands, size=n_anchors)
    got = positive_ranks(torch.from_numpy(scores), torch.from_numpy(pos)).tolist()
    for i in range(n_anchors):
        order = sorted(range(n_cands), key=lambda j, i=i: (-scores[i, j], j == pos[i]))
        assert got[i] == order.index(int(pos[i]))


# --- pools and tasks ---------------------------------------------------------------------------------------


def test_pool_index_of_and_duplicate_ids() -> None:
    pool = CandidatePool(np.array([30, 10, 20]))
    assert pool.index_of(np.array([10, 20, 30, 99])).tolist() == [1, 2, 0, -1]
    assert CandidatePool(np.array([], dtype=np.int64)).index_of(np.array([1])).tolist() == [-1]
    with pytest.raises(ValueError, match="post_id 10 listed twice"):
        CandidatePool(np.array([10, 20, 10]), label="2026-01-01")
    with pytest.raises(ValueError, match="view_percentile has shape"):
        CandidatePool(np.array([1, 2]), view_percentile=np.array([1.0]))
    with pytest.raises(ValueError, match=r"pool_index 3 not in 0\.\.0"):
        RankingTask([pool], np.array([3]), np.array([10]))


def test_rank_task_groups_by_pool_skips_absent_positives_and_chunks() -> None:
    pools = [CandidatePool(np.array([1, 2, 3])), CandidatePool(np.array([3, 4]))]
    table = {0: torch.tensor([0.3, 0.2, 0.1]), 1: torch.tensor([0.9, 0.1])}  # same list for every member

    def scorer(pool: int, anchors: np.ndarray) -> torch.Tensor:
        return table[pool].expand(len(anchors), -1)

    task = RankingTask(pools, pool_index=np.array([0, 1, 0, 1, 0]), positives=np.array([3, 4, 1, 1, 77]))
    for chunk in (1, 2, 256):
        result = rank_task(task, scorer, chunk_size=chunk)
        # post 1 is live on day 0 but not on day 1; post 77 nowhere
        assert result.ranks.tolist() == [2, 1, 0, -1, -1]
        assert result.skipped == {SKIP_POSITIVE_NOT_IN_CANDIDATES: 2}


def test_exclusion_removes_seen_posts_but_never_the_positive() -> None:
    pools = [CandidatePool(np.array([1, 2, 3, 4]))]

    def scorer(pool: int, anchors: np.ndarray) -> torch.Tensor:
        return torch.tensor([0.9, 0.8, 0.7, 0.1]).expand(len(anchors), -1)

    task = RankingTask(pools, np.array([0, 0]), np.array([3, 3]), exclude=[[1, 3, 999], []])
    assert rank_task(task, scorer).ranks.tolist() == [1, 2]


def test_evaluate_retrieval_perfect_encoder_and_cold_start_split() -> None:
    rng = np.random.default_rng(0)
    post_vecs = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(50, 16))).float(), dim=-1)
    pool = CandidatePool(np.arange(100, 150), view_percentile=rng.integers(1, 101, 50).astype(float))
    positives = np.array([100, 120, 149, 101])
    members = post_vecs[positives - 100].clone()
    members[3] = -members[3]  # anchor 3 (cold start) gets the opposite vector: its positive ranks last
    task = RankingTask(
        [pool], np.zeros(4, np.int64), positives, cold_start=np.array([False, False, True, True])
    )
    out = evaluate_retrieval(members, [post_vecs], task, QUIET)
    assert out["recall_at_10"] == pytest.approx(0.75)
    assert out["warm_recall_at_10"] == 1.0
    assert out["cold_start_recall_at_10"] == 0.5
    assert out["cold_start_recall_at_100"] == 1.0  # 50 candidates < 100
    assert out["ndcg_at_10"] == pytest.approx(0.75)
    assert out["n_evaluated"] == 4
    assert out["n_cold_start"] == 2
    assert out["corr_pairs"] == 4 * 50
    with pytest.raises(ValueError, match="3 member vectors for 4 anchors"):
        evaluate_retrieval(members[:3], [post_vecs], task, QUIET)


# --- correlation -------------------------------------------------------------------------------------------


def _corr_fixture() -> tuple[torch.Tensor, list[torch.Tensor], RankingTask]:
    rng = np.random.default_rng(7)
    pct = [rng.integers(1, 101, 30).astype(float), rng.integers(1, 101, 20).astype(float)]
    pct[0][[2, 5]] = np.nan  # missing percentiles are left out of the pairs
    pools = [
        CandidatePool(np.arange(30), view_percentile=pct[0]),
        CandidatePool(np.arange(20), view_percentile=pct[1]),
    ]
    # post vectors lean towards a "popular" direction in proportion to their percentile
    direction = torch.nn.functional.normalize(
        torch.randn(8, generator=torch.Generator().manual_seed(1)), dim=0
    )
    vecs = []
    for p in pct:
        noise = torch.from_numpy(rng.normal(size=(len(p), 8))).float()
        vecs.append(noise + torch.from_numpy(np.nan_to_num(p) / 30.0).float()[:, None] * direction)
    members = torch.from_numpy(rng.normal(size=(6, 8))).float() + 2 * direction
    task = RankingTask(pools, np.array([0, 0, 1, 1, 0, 1]), np.zeros(6, np.int64))
    return members, vecs, task


def test_correlation_matches_scipy_on_every_pair() -> None:
    members, vecs, task = _corr_fixture()
    pops, sims = [], []
    for a, g in enumerate(task.pool_index):
        pct = task.pools[g].view_percentile
        ok = np.isfinite(pct)
        cos = torch.nn.functional.cosine_similarity(members[a][None], vecs[g], dim=-1).numpy()
        pops.append(pct[ok])
        sims.append(cos[ok])
    x, y = np.concatenate(pops), np.concatenate(sims)
    got = popularity_similarity_correlation(members, vecs, task)
    assert got["pairs"] == len(x) == 3 * 28 + 3 * 20
    assert got["pearson"] == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-6)
    assert got["spearman"] == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-6)
    assert got["pearson"] > 0.3  # the construction makes popular posts closer to every member


def test_correlation_sample_is_deterministic_and_bounded() -> None:
    members, vecs, task = _corr_fixture()
    a = popularity_similarity_correlation(members, vecs, task, max_pairs=50, seed=3)
    b = popularity_similarity_correlation(members, vecs, task, max_pairs=50, seed=3)
    c = popularity_similarity_correlation(members, vecs, task, max_pairs=50, seed=4)
    assert a == b
    assert a["pairs"] == 50
    assert a["pearson"] != c["pearson"]


def test_correlation_of_constant_popularity_is_none() -> None:
    pool = CandidatePool(np.arange(5), view_percentile=np.full(5, 50.0))
    task = RankingTask([pool], np.zeros(2, np.int64), np.zeros(2, np.int64))
    got = popularity_similarity_correlation(torch.randn(2, 4), [torch.randn(5, 4)], task)
    assert got == {"pearson": None, "spearman": None, "pairs": 10}


# --- texts, encoders, baselines, report --------------------------------------------------------------------


def test_encode_texts_encodes_each_distinct_text_once_in_batches() -> None:
    calls: list[int] = []

    def fn(texts: list[str]) -> torch.Tensor:
        calls.append(len(texts))
        return _bag_of_words(texts)

    texts = ["a b", "c d", "a b", "e f", "c d", "g h"]
    out = encode_texts(fn, texts, batch_size=3, progress=False)
    assert calls == [3, 1]  # 4 distinct texts
    assert out.shape == (6, 64)
    torch.testing.assert_close(out[0], out[2])

    def broken(texts: list[str]) -> torch.Tensor:
        return torch.full((len(texts), 4), float("inf"))

    with pytest.raises(ValueError, match="non-finite vector for text 'a b'"):
        encode_texts(broken, texts, progress=False)


def _toy_corpus() -> EvalCorpus:
    """Two days; each member's prompt names the topic of their positive post."""
    topics = [
        "python data",
        "marketing brand",
        "nursing care",
        "finance audit",
        "design ux",
        "sales pipeline",
    ]
    pool_texts, pools = [], []
    for day in range(2):
        ids = np.arange(day * 100, day * 100 + len(topics) * 3)
        texts = [f"post about {topics[i % len(topics)]} number {i}" for i in range(len(ids))]
        pct = np.array([100 - i for i in range(len(ids))], dtype=float)
        pools.append(CandidatePool(ids, view_percentile=pct, views=pct * 10, label=f"day {day}"))
        pool_texts.append(texts)
    member_texts, positives, pool_index = [], [], []
    for a in range(8):
        day, topic = a % 2, (a * 5) % len(topics)
        member_texts.append(f"member who likes {topics[topic]}")
        positives.append(day * 100 + topic + len(topics))  # second post of that topic on that day
        pool_index.append(day)
    task = RankingTask(pools, np.array(pool_index), np.array(positives), cold_start=np.arange(8) % 4 == 0)
    return EvalCorpus(task, member_texts, pool_texts)


def test_run_evaluation_scores_encoders_and_baselines_on_the_same_anchors(tmp_path: Path) -> None:
    corpus = _toy_corpus()

    def constant(texts: list[str]) -> torch.Tensor:
        return torch.ones(len(texts), 4)

    encoders = [
        TextEncoder("fine_tuned", _bag_of_words, _bag_of_words),
        TextEncoder("pretrained", constant, constant),
    ]
    results = run_evaluation(corpus, encoders, QUIET)
    assert set(results) == {"fine_tuned", "pretrained", "popularity", "tfidf", "bm25"}
    assert all(r["n_evaluated"] == 8 for r in results.values())
    assert results["pretrained"]["recall_at_10"] == 0.0  # all ties: pessimistic rank = 17
    assert results["fine_tuned"]["recall_at_10"] == 1.0
    assert results["bm25"]["recall_at_10"] == 1.0
    assert results["tfidf"]["recall_at_10"] == 1.0
    # popularity ignores the member: the positive at pool position p ranks p (percentiles strictly decrease)
    positions = [
        corpus.task.pools[g].index_of(np.array([p]))[0]
        for g, p in zip(corpus.task.pool_index, corpus.task.positives, strict=True)
    ]
    assert results["popularity"]["recall_at_10"] == pytest.approx(np.mean(np.array(positions) < 10))

    json_path, md_path = write_eval_report(results, QUIET, notes=["toy"], reports_dir=tmp_path)
    assert json_path == tmp_path / "retrieval_eval.json"
    assert md_path == tmp_path / "retrieval_eval.md"
    doc = json.loads(json_path.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at"} <= set(doc)
    summary = doc["summary"]
    for key in (
        "recall_at_10",
        "recall_at_10_pretrained",
        "recall_at_10_popularity",
        "recall_at_10_bm25",
        "cold_start_recall_at_10",
    ):
        assert key in summary
    assert summary["recall_at_10"] == 1.0
    assert summary["recall_at_10_pretrained"] == 0.0
    assert summary["beats_all_baselines"] is False  # ties with BM25 and TF-IDF are not wins
    assert doc["details"]["methods"]["bm25"]["n_anchors"] == 8
    assert "| fine_tuned | 1.0000 |" in md_path.read_text()


def test_report_summary_names_what_could_not_be_measured() -> None:
    summary, notes = report_summary({"fine_tuned": {"recall_at_10": 0.4, "cold_start_recall_at_10": None}})
    assert summary["recall_at_10"] == 0.4
    assert summary["recall_at_10_bm25"] is None
    assert summary["beats_all_baselines"] is None  # nothing to beat: not a vacuous True
    assert any("'bm25': method not evaluated" in n for n in notes)
    assert any("cold_start_recall_at_10 of 'fine_tuned'" in n for n in notes)


def test_run_evaluation_rejects_unknown_baseline_and_name_clash() -> None:
    corpus = _toy_corpus()
    with pytest.raises(ValueError, match="unknown baseline 'random'"):
        run_evaluation(corpus, [], EvalConfig(baselines=("random",), progress=False))
    with pytest.raises(ValueError, match="collides with a baseline"):
        run_evaluation(corpus, [TextEncoder("bm25", _bag_of_words, _bag_of_words)], QUIET)


def test_eval_corpus_checks_alignment() -> None:
    corpus = _toy_corpus()
    with pytest.raises(ValueError, match="7 member texts for 8 anchors"):
        EvalCorpus(corpus.task, corpus.member_texts[:7], corpus.pool_texts)
    with pytest.raises(ValueError, match=r"pool 1 \(day 1\): 2 texts for 18 posts"):
        EvalCorpus(corpus.task, corpus.member_texts, [corpus.pool_texts[0], ["a", "b"]])
