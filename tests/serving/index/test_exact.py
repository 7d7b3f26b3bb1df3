"""serving/index/exact.py: exhaustive torch search vs a numpy cosine reference, filters, writes, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from serving.index.base import IndexConfigError, IndexInputError, PostIndex, PostMeta, SearchFilter
from serving.index.exact import ExactConfig, ExactIndex

DIM = 16
FORMATS = np.array(["text", "image", "video", "article"], dtype=object)


def make_posts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, PostMeta]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64)  # not 0..n-1: the id map matters
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    meta = PostMeta.of(
        author_id=rng.integers(0, 20, size=n),
        created_at=rng.integers(1_000, 2_000, size=n),
        format=FORMATS[rng.integers(0, len(FORMATS), size=n)],
    )
    return ids, vecs, meta


def reference(
    ids: np.ndarray, vecs: np.ndarray, meta: PostMeta, q: np.ndarray, k: int, f: SearchFilter | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k in numpy float64, filtered by the interface's reference mask."""
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    scores = unit.astype(np.float64) @ (q / np.linalg.norm(q)).astype(np.float64)
    keep = np.ones(len(ids), dtype=bool) if f is None else f.mask(ids, meta)
    pos = np.flatnonzero(keep)
    order = pos[np.argsort(-scores[pos], kind="stable")][:k]
    return ids[order], scores[order]


@pytest.fixture
def posts() -> tuple[np.ndarray, np.ndarray, PostMeta]:
    return make_posts(500)


# small blocks: many row blocks and query blocks, so the running top-k merge is what gets tested
SMALL_BLOCKS = ExactConfig(block_elems=64, query_block=3, initial_capacity=7)


@pytest.mark.parametrize("config", [ExactConfig(), SMALL_BLOCKS], ids=["one-block", "many-blocks"])
def test_top_k_equals_numpy_cosine(
    posts: tuple[np.ndarray, np.ndarray, PostMeta], config: ExactConfig
) -> None:
    ids, vecs, meta = posts
    index = ExactIndex.build(ids, vecs * 3.0, meta, "v1", config)  # unnormalised input: the index normalises
    assert isinstance(index, PostIndex)
    assert len(index) == 500
    queries = np.random.default_rng(1).normal(size=(10, DIM)).astype(np.float32)
    results = index.search(queries, k=25)
    assert len(results) == 10
    for q, res in zip(queries, results, strict=True):
        want_ids, want_scores = reference(ids, vecs, meta, q, 25)
        np.testing.assert_array_equal(res.post_ids, want_ids)
        np.testing.assert_allclose(res.scores, want_scores, atol=1e-5)
        assert res.scores.dtype == np.float32
        assert res.post_ids.dtype == np.int64


def test_single_query_and_k_larger_than_index(posts: tuple[np.ndarray, np.ndarray, PostMeta]) -> None:
    ids, vecs, meta = posts
    index = ExactIndex.build(ids[:7], vecs[:7], meta.take(np.arange(7)), "v1")
    (res,) = index.search(vecs[3], k=100)  # 1-D = one query
    assert len(res) == 7
    assert res.post_ids[0] == ids[3]
    assert res.scores[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_close_to_fp32(posts: tuple[np.ndarray, np.ndarray, PostMeta], dtype: str) -> None:
    ids, vecs, meta = posts
    index = ExactIndex.build(ids, vecs, meta, "v1", ExactConfig(dtype=dtype, block_elems=200))  # type: ignore[arg-type]
    q = np.random.default_rng(2).normal(size=(5, DIM)).astype(np.float32)
    for row, res in zip(q, index.search(q, k=20), strict=True):
        want_ids, want_scores = reference(ids, vecs, meta, row, 20)
        assert len(set(res.post_ids) & set(want_ids)) >= 17  # near-ties may swap at the k-th place
        np.testing.assert_allclose(res.scores[:5], want_scores[:5], atol=2e-2)
        assert np.all(np.diff(res.scores) <= 0)


FILTERS = {
    "seen": SearchFilter(exclude_post_ids=frozenset()),  # filled in the test from the unfiltered answer
    "author": SearchFilter(exclude_author_id=3),
    "recency": SearchFilter(created_after=1_700),
    "formats": SearchFilter(formats=frozenset({"video", "article"})),
    "unknown_format": SearchFilter(formats=frozenset({"podcast"})),
    "all": SearchFilter(exclude_author_id=3, created_after=1_500, formats=frozenset({"text", "image"})),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_is_exact(posts: tuple[np.ndarray, np.ndarray, PostMeta], name: str) -> None:
    ids, vecs, meta = posts
    index = ExactIndex.build(ids, vecs, meta, "v1", SMALL_BLOCKS)
    q = np.random.default_rng(3).normal(size=DIM).astype(np.float32)
    f = FILTERS[name]
    if name == "seen":
        (top,) = index.search(q, k=10)
        f = SearchFilter(exclude_post_ids=frozenset(top.post_ids[::2].tolist()) | {10**9})  # + an unknown id
    (res,) = index.search(q, k=30, filters=f)
    want_ids, _ = reference(ids, vecs, meta, q, 30, f)
    np.testing.assert_array_equal(res.post_ids, want_ids)
    passing = f.mask(ids, meta)
    assert set(res.post_ids) <= set(ids[passing])
    if name == "unknown_format":
        assert len(res) == 0


def test_per_query_filters_and_too_few_passing(posts: tuple[np.ndarray, np.ndarray, PostMeta]) -> None:
    ids, vecs, meta = posts
    index = ExactIndex.build(ids, vecs, meta, "v1", SMALL_BLOCKS)
    q = np.random.default_rng(4).normal(size=(5, DIM)).astype(np.float32)
    narrow = SearchFilter(exclude_author_id=None, created_after=1_990)  # only a handful of posts pass
    filters = [None, FILTERS["author"], narrow, FILTERS["author"], SearchFilter()]
    results = index.search(q, k=50, filters=filters)
    for row, f, res in zip(q, filters, results, strict=True):
        want_ids, _ = reference(ids, vecs, meta, row, 50, f)
        np.testing.assert_array_equal(res.post_ids, want_ids)
    # every filter kind mixed in one batch (3 query blocks of 3), each query with its own seen set
    q = np.random.default_rng(8).normal(size=(8, DIM)).astype(np.float32)
    mixed: list[SearchFilter | None] = [
        SearchFilter(exclude_post_ids=frozenset(ids[j::7][:40].tolist()), formats=FILTERS["formats"].formats)
        for j in range(3)
    ] + [FILTERS["all"], FILTERS["unknown_format"], None, FILTERS["recency"], FILTERS["author"]]
    for row, f, res in zip(q, mixed, index.search(q, k=25, filters=mixed), strict=True):
        want_ids, _ = reference(ids, vecs, meta, row, 25, f)
        np.testing.assert_array_equal(res.post_ids, want_ids)
    n_narrow = int(narrow.mask(ids, meta).sum())
    assert 0 < n_narrow < 50
    assert len(results[2]) == n_narrow


def test_upsert_overwrites_and_delete_keeps_search_exact(
    posts: tuple[np.ndarray, np.ndarray, PostMeta],
) -> None:
    ids, vecs, meta = posts
    index = ExactIndex(DIM, "v1", SMALL_BLOCKS)
    assert index.upsert(ids[:300], vecs[:300], meta.take(np.arange(300))) == 300
    assert index.upsert(ids[200:], vecs[200:], meta.take(np.arange(200, 500))) == 300  # 100 overlap
    assert len(index) == 500

    # overwrite one post with a new vector and a new author: search sees both
    target = int(ids[42])
    new_vec = np.random.default_rng(5).normal(size=(1, DIM)).astype(np.float32)
    index.upsert(np.array([target]), new_vec, PostMeta.of([99], [1_234], ["video"]))
    vecs, meta = vecs.copy(), PostMeta.of(meta.author_id.copy(), meta.created_at.copy(), meta.format.copy())
    vecs[42], meta.author_id[42], meta.created_at[42], meta.format[42] = new_vec[0], 99, 1_234, "video"
    assert len(index) == 500
    (res,) = index.search(new_vec, k=1)
    assert res.post_ids[0] == target
    (res,) = index.search(new_vec, k=5, filters=SearchFilter(exclude_author_id=99))
    assert target not in res.post_ids

    # delete a scattered set (holes before and inside the tail) + an unknown id
    gone = np.concatenate([ids[[0, 5, 42, 250, 497, 499]], [10**9]])
    assert index.delete(gone) == 6
    assert index.delete(gone) == 0
    assert len(index) == 494
    keep = ~np.isin(ids, gone)
    kept_meta = meta.take(keep)
    q = np.random.default_rng(6).normal(size=(4, DIM)).astype(np.float32)
    for row, res in zip(q, index.search(q, k=40, filters=FILTERS["recency"]), strict=True):
        want_ids, _ = reference(ids[keep], vecs[keep], kept_meta, row, 40, FILTERS["recency"])
        np.testing.assert_array_equal(res.post_ids, want_ids)

    assert index.delete(ids) == 494
    assert len(index) == 0
    assert [len(r) for r in index.search(q, k=3)] == [0, 0, 0, 0]


def test_torch_queries_accepted(posts: tuple[np.ndarray, np.ndarray, PostMeta]) -> None:
    ids, vecs, meta = posts
    index = ExactIndex.build(ids, vecs, meta, "v1")
    (res,) = index.search(torch.from_numpy(vecs[7]), k=1)
    assert res.post_ids[0] == ids[7]


def test_bad_input_is_rejected_with_a_clear_error(posts: tuple[np.ndarray, np.ndarray, PostMeta]) -> None:
    ids, vecs, meta = posts
    index = ExactIndex.build(ids[:10], vecs[:10], meta.take(np.arange(10)), "v1")
    three = meta.take(np.arange(3))
    with pytest.raises(IndexInputError, match="dimension 8"):
        index.upsert(np.array([1, 2, 3]), np.ones((3, 8), np.float32), three)
    nan = np.ones((3, DIM), np.float32)
    nan[1, 0] = np.nan
    with pytest.raises(IndexInputError, match=r"NaN or inf .*\[2\]"):
        index.upsert(np.array([1, 2, 3]), nan, three)
    zero = np.ones((3, DIM), np.float32)
    zero[2] = 0
    with pytest.raises(IndexInputError, match=r"zero-norm .*\[3\]"):
        index.upsert(np.array([1, 2, 3]), zero, three)
    with pytest.raises(IndexInputError, match=r"duplicate post ids .*\[2\]"):
        index.upsert(np.array([1, 2, 2]), np.ones((3, DIM), np.float32), three)
    with pytest.raises(IndexInputError, match="author_id has 3 rows but there are 2"):
        index.upsert(np.array([1, 2]), np.ones((2, DIM), np.float32), three)
    assert len(index) == 10  # nothing written by the rejected batches

    with pytest.raises(IndexInputError, match=r"shape \(Q, 16\)"):
        index.search(np.ones((2, 8), np.float32), k=5)
    bad_q = np.ones((3, DIM), np.float32)
    bad_q[2] = np.inf
    with pytest.raises(IndexInputError, match=r"query rows \[2\]"):
        index.search(bad_q, k=5)
    with pytest.raises(IndexInputError, match="query rows"):
        index.search(np.zeros(DIM, np.float32), k=5)
    with pytest.raises(IndexInputError, match="queries must be numeric"):
        index.search(np.array([["a"] * DIM]), k=5)
    with pytest.raises(IndexInputError, match="k must be a positive integer"):
        index.search(vecs[0], k=0)
    with pytest.raises(IndexInputError, match="2 filters for 3 queries"):
        index.search(vecs[:3], k=5, filters=[None, None])

    with pytest.raises(IndexConfigError, match="dtype"):
        ExactConfig(dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(IndexConfigError, match="dim"):
        ExactIndex(0, "v1")
    if not torch.cuda.is_available():
        with pytest.raises(IndexConfigError, match="no CUDA"):
            ExactIndex(DIM, "v1", ExactConfig(device="cuda"))


def test_imports_with_torch_and_numpy_alone() -> None:
    code = (
        "import sys, serving.index.exact as m; "
        "heavy = [x for x in ('faiss', 'pymilvus', 'milvus_lite', 'feast', 'pyspark', 'pandas') "
        "if x in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_cuda_matches_cpu(posts: tuple[np.ndarray, np.ndarray, PostMeta], dtype: str) -> None:
    ids, vecs, meta = posts
    q = np.random.default_rng(7).normal(size=(8, DIM)).astype(np.float32)
    f = FILTERS["all"]
    cpu = ExactIndex.build(ids, vecs, meta, "v1").search(q, k=20, filters=f)
    gpu = ExactIndex.build(ids, vecs, meta, "v1", ExactConfig(device="cuda", dtype=dtype)).search(  # type: ignore[arg-type]
        q, k=20, filters=f
    )
    for a, b in zip(cpu, gpu, strict=True):
        assert len(set(a.post_ids) & set(b.post_ids)) >= 17
        assert set(b.post_ids) <= set(ids[f.mask(ids, meta)])
