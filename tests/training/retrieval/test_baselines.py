"""Retrieval baselines: BM25 by hand, TF-IDF cosine, popularity ordering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.retrieval.baselines import (
    BM25,
    BM25Config,
    LexicalScorer,
    PopularityScorer,
    TfidfIndex,
    popularity_score,
)
from training.retrieval.evaluate import CandidatePool, RankingTask, rank_task

DOCS = ["apple banana apple", "banana cherry", "cherry cherry cherry durian"]


def test_bm25_matches_a_hand_computed_score() -> None:
    """N = 3, lengths 3/2/4 (avgdl 3), k1 = 1.2, b = 0.75; query "apple cherry"."""
    scores = BM25(DOCS).score(["apple cherry"])[0]
    idf_apple = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # df(apple) = 1
    idf_cherry = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # df(cherry) = 2
    # doc 0: apple tf 2, |d| = 3 → K = 1.2·(0.25 + 0.75·3/3) = 1.2
    doc0 = idf_apple * 2 * 2.2 / (2 + 1.2)
    # doc 1: cherry tf 1, |d| = 2 → K = 1.2·(0.25 + 0.75·2/3) = 0.9
    doc1 = idf_cherry * 1 * 2.2 / (1 + 0.9)
    # doc 2: cherry tf 3, |d| = 4 → K = 1.2·(0.25 + 0.75·4/3) = 1.5
    doc2 = idf_cherry * 3 * 2.2 / (3 + 1.5)
    np.testing.assert_allclose(scores, [doc0, doc1, doc2], rtol=1e-6)


def test_bm25_query_term_counts_and_unknown_words() -> None:
    bm25 = BM25(DOCS)
    once, twice, unknown = bm25.score(["apple", "apple apple", "zebra quagga"])
    np.testing.assert_allclose(twice, 2 * once, rtol=1e-6)
    assert (unknown == 0).all()
    assert once[0] > 0
    assert once[1] == once[2] == 0


def test_bm25_length_normalisation_follows_b() -> None:
    docs = ["rust", "rust padding padding padding padding padding"]
    flat = BM25(docs, BM25Config(b=0.0)).score(["rust"])[0]
    normalised = BM25(docs, BM25Config(b=1.0)).score(["rust"])[0]
    assert flat[0] == pytest.approx(flat[1])  # b = 0: length does not matter
    assert normalised[0] > normalised[1]  # b = 1: the long document is penalised


def test_lexical_indexes_tolerate_documents_without_tokens() -> None:
    for index in (BM25(["", "!!"]), TfidfIndex(["", "!!"]), BM25([]), TfidfIndex([])):
        assert index.score(["apple"]).shape == (1, index.n_documents)
        assert not index.score(["apple"]).any()


def test_tfidf_cosine_prefers_the_document_sharing_rare_words() -> None:
    scores = TfidfIndex(DOCS).score(["apple banana apple", "durian"])
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6)  # identical text → cosine 1
    assert scores[0].argmax() == 0
    assert scores[1].argmax() == 2
    assert scores[1, 0] == scores[1, 1] == 0


def test_lexical_scorer_fits_one_index_per_pool() -> None:
    pool_texts = [DOCS, ["durian smoothie", "apple pie"]]
    scorer = LexicalScorer("bm25", ["apple", "durian"], pool_texts)
    day0 = scorer(0, np.array([0, 1]))
    day1 = scorer(1, np.array([0]))
    assert day0.shape == (2, 3)
    assert day1.shape == (1, 2)
    assert day0[0].argmax() == 0
    assert day0[1].argmax() == 2
    assert day1[0].argmax() == 1
    with pytest.raises(ValueError, match="unknown lexical baseline 'lsa'"):
        LexicalScorer("lsa", [], [])  # type: ignore[arg-type]


def test_popularity_score_orders_by_percentile_then_views() -> None:
    pct = np.array([50, 90, 90, np.nan, 1])
    views = np.array([10_000, 120, 300, 10**9, 5])
    score = popularity_score(pct, views)
    assert list(np.argsort(-score, kind="stable")) == [2, 1, 0, 4, 3]  # missing percentile ranks last
    # views never lift a post above a higher bucket
    assert score[4] > score[3]
    assert score[0] < score[1]
    np.testing.assert_array_equal(np.argsort(-popularity_score(None, views)), [3, 0, 2, 1, 4])
    with pytest.raises(ValueError, match="needs view_percentile or views"):
        popularity_score(None, None)


def test_popularity_baseline_ranks_every_member_by_percentile() -> None:
    pool = CandidatePool(np.array([11, 12, 13, 14]), view_percentile=np.array([20.0, 95.0, 60.0, 60.0]))
    task = RankingTask([pool], np.zeros(4, np.int64), np.array([12, 13, 14, 11]))
    ranks = rank_task(task, PopularityScorer(task)).ranks
    # 12 first; 13 and 14 tie (pessimistic: each ranks after the other); 11 last
    assert ranks.tolist() == [0, 2, 2, 3]
    scores = PopularityScorer(task)(0, np.array([0, 3]))
    assert scores.shape == (2, 4)
    torch.testing.assert_close(scores[0], scores[1])
