"""Retrieval baselines scored in the same run as the dual encoder (issue 4, "Evaluation").

- popularity: every member gets the same ranking, by the post's ``view_percentile`` as of the anchor day, raw
  ``views`` breaking ties inside a bucket — what a "trending" candidate source does;
- TF-IDF cosine and Okapi BM25 over the *same prompt texts* the encoder reads (member prompt = query, post
  prompt = document), so the comparison isolates what the learned encoder adds over word overlap.

Each baseline is a scorer ``(pool, anchors) -> Tensor (len(anchors), C)`` for
:func:`training.retrieval.evaluate.rank_task`. Lexical indexes are fitted per candidate pool: the corpus
statistics (document frequencies, average length) are those of the posts live at that time, as a search
index built that day would have them. Imports: numpy, scipy, scikit-learn, torch only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
import torch

if TYPE_CHECKING:
    from training.retrieval.evaluate import RankingTask

# scikit-learn's default word pattern (2+ word characters): percentile tags such as
# "<view_percentile>71</view_percentile>" become the tokens "view_percentile" and "71" for both baselines.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"

LexicalKind = Literal["tfidf", "bm25"]


@dataclass(frozen=True)
class BM25Config:
    k1: float = 1.2  # term-frequency saturation; 1.2 is Lucene's default
    b: float = 0.75  # document-length normalisation strength


class BM25:
    """Okapi BM25 over a fixed document set.

    score(q, d) = Σ_t qtf(t, q) · idf(t) · tf(t, d)·(k1 + 1) / (tf(t, d) + k1·(1 − b + b·|d| / avgdl)),
    idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))  (Lucene's form: never negative, so a word in
    every document cannot push a match below a non-match). Query words repeat with their count (qtf): a
    member history that mentions a topic five times asks for it more strongly than one that mentions it once.
    Query words absent from the documents contribute nothing.
    """

    def __init__(self, documents: Sequence[str], cfg: BM25Config | None = None) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.cfg = cfg or BM25Config()
        self.n_documents = len(documents)
        self._vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True)
        tf = _fit_counts(self._vectorizer, documents)  # (N, V) term counts
        self._weights = self._document_weights(tf) if tf is not None else None

    def _document_weights(self, tf: sp.csr_matrix) -> sp.csr_matrix:
        """(N, V) per-(document, term) BM25 weight, so a query's score is one sparse product."""
        k1, b = self.cfg.k1, self.cfg.b
        n = tf.shape[0]
        df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float64)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        doc_len = np.asarray(tf.sum(axis=1), dtype=np.float64).ravel()
        avgdl = doc_len.mean() if n else 0.0
        norm = k1 * (1.0 - b + b * doc_len / avgdl) if avgdl > 0 else np.full(n, k1)
        tf = tf.tocsr().astype(np.float64)
        rows = np.repeat(np.arange(n), np.diff(tf.indptr))
        tf.data = idf[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + norm[rows])
        return tf

    def score(self, queries: Sequence[str]) -> np.ndarray:
        """(Q, N) BM25 score of every query against every document."""
        if self._weights is None:
            return np.zeros((len(queries), self.n_documents), dtype=np.float32)
        q = self._vectorizer.transform(queries).astype(np.float64)  # (Q, V) query term counts
        return np.asarray((q @ self._weights.T).toarray(), dtype=np.float32)


class TfidfIndex:
    """TF-IDF cosine (sublinear tf, smoothed idf, L2-normalised rows) fitted on the documents."""

    def __init__(self, documents: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.n_documents = len(documents)
        self._vectorizer = TfidfVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True, sublinear_tf=True)
        self._docs = _fit_counts(self._vectorizer, documents)

    def score(self, queries: Sequence[str]) -> np.ndarray:
        """(Q, N) cosine between the TF-IDF vectors of queries and documents."""
        if self._docs is None:
            return np.zeros((len(queries), self.n_documents), dtype=np.float32)
        q = self._vectorizer.transform(queries)
        return np.asarray((q @ self._docs.T).toarray(), dtype=np.float32)


def _fit_counts(vectorizer: object, documents: Sequence[str]) -> sp.csr_matrix | None:
    """fit_transform, or None when the documents hold no token at all (scikit-learn raises "empty
    vocabulary"; every score is then 0, which the pessimistic tie rule ranks last)."""
    if not documents:
        return None
    try:
        return vectorizer.fit_transform(documents)  # type: ignore[attr-defined]
    except ValueError as exc:
        if "empty vocabulary" in str(exc):
            return None
        raise


class LexicalScorer:
    """TF-IDF or BM25 scorer over prompt texts, one index per candidate pool (built on first use)."""

    def __init__(
        self,
        kind: LexicalKind,
        member_texts: Sequence[str],
        pool_texts: Sequence[Sequence[str]],
        *,
        bm25: BM25Config | None = None,
    ) -> None:
        if kind not in ("tfidf", "bm25"):
            raise ValueError(f"unknown lexical baseline {kind!r}; expected 'tfidf' or 'bm25'")
        self.kind = kind
        self.member_texts = member_texts
        self.pool_texts = pool_texts
        self.bm25 = bm25
        self._indexes: dict[int, BM25 | TfidfIndex] = {}

    def _index(self, pool: int) -> BM25 | TfidfIndex:
        if pool not in self._indexes:
            docs = list(self.pool_texts[pool])
            self._indexes[pool] = TfidfIndex(docs) if self.kind == "tfidf" else BM25(docs, self.bm25)
        return self._indexes[pool]

    def __call__(self, pool: int, anchors: np.ndarray) -> torch.Tensor:
        queries = [self.member_texts[int(a)] for a in anchors]
        return torch.from_numpy(self._index(pool).score(queries))


def popularity_score(view_percentile: np.ndarray | None, views: np.ndarray | None = None) -> np.ndarray:
    """(C,) popularity score: the percentile bucket (1..100; missing → 0, below every real bucket), plus the
    raw views' rank scaled into [0, 1) so that views order posts inside a bucket without ever jumping a
    bucket. Either input may be None, not both."""
    if view_percentile is None and views is None:
        raise ValueError("popularity baseline needs view_percentile or views for the candidate pool")
    n = len(view_percentile) if view_percentile is not None else len(views)  # type: ignore[arg-type]
    score = np.zeros(n, dtype=np.float64)
    if view_percentile is not None:
        pct = np.asarray(view_percentile, dtype=np.float64)
        score += np.where(np.isfinite(pct), pct, 0.0)
    if views is not None:
        raw = np.asarray(views, dtype=np.float64)
        raw = np.where(np.isfinite(raw), raw, -1.0)
        # dense rank: equal views keep equal scores (a tie stays a tie for the pessimistic rule)
        dense = np.unique(raw, return_inverse=True)[1].astype(np.float64)
        score += dense / (dense.max() + 1.0) if n else dense
    return score


class PopularityScorer:
    """Ranks each pool's candidates by :func:`popularity_score`, the same list for every member."""

    def __init__(self, task: RankingTask) -> None:
        self._scores = [
            torch.from_numpy(popularity_score(pool.view_percentile, pool.views)) for pool in task.pools
        ]

    def __call__(self, pool: int, anchors: np.ndarray) -> torch.Tensor:
        return self._scores[pool].unsqueeze(0).expand(len(anchors), -1)  # (a, C)
