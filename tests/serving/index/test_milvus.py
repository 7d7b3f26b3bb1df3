"""MilvusPostIndex against a real Milvus Lite server process: exact top-k, filters as Milvus expressions,
upsert/delete, aliases, index-type validation, unreachable server."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from serving.index import lite
from serving.index.base import (
    IndexConfigError,
    IndexInputError,
    ModelVersionMismatchError,
    PostMeta,
    SearchFilter,
)
from serving.index.milvus import (
    IndexConfig,
    MilvusPostIndex,
    MilvusUnavailableError,
    alias_target,
    check_index_type,
    collection_for,
    collection_name,
    connect,
    create_posts_collection,
    create_vector_index,
    filter_expression,
    point_alias,
)
from serving.index.replica import exact_top_k

pytestmark = pytest.mark.integration

K = 20


def _build(client, posts: SimpleNamespace, version: str, index_type: str = "FLAT", **params):
    cfg = IndexConfig(uri="unused", index_type=index_type, params=params)
    name = collection_name(version)
    create_posts_collection(client, name, version, posts.vectors.shape[1], cfg)
    index = MilvusPostIndex(client, name, cfg)
    assert index.insert(posts.post_ids, posts.vectors, posts.meta) == len(posts.post_ids)
    client.flush(name)
    create_vector_index(client, name, cfg)
    client.load_collection(name)
    return index


@pytest.fixture(scope="module")
def flat_index(milvus_server, post_set: SimpleNamespace, serving_data: SimpleNamespace) -> MilvusPostIndex:
    client = connect(milvus_server.uri)
    return _build(client, post_set, serving_data.unique_name("flat"))


def _assert_same(got: list, want: list) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.post_ids.tolist() == w.post_ids.tolist()
        np.testing.assert_allclose(g.scores, w.scores, atol=1e-4)


def test_top_k_equals_exact_cosine(flat_index: MilvusPostIndex, post_set: SimpleNamespace) -> None:
    assert len(flat_index) == len(post_set.post_ids)
    got = flat_index.search(post_set.queries, K)
    _assert_same(got, exact_top_k(post_set.post_ids, post_set.vectors, post_set.meta, post_set.queries, K))


def test_hnsw_at_high_ef_equals_exact(milvus_client, post_set: SimpleNamespace, serving_data) -> None:
    index = _build(
        milvus_client, post_set, serving_data.unique_name("hnsw"), "HNSW", M=16, efConstruction=200
    )
    index = MilvusPostIndex(index.client, index.name, IndexConfig(uri="unused", search_params={"ef": 1000}))
    got = index.search(post_set.queries, K)
    _assert_same(got, exact_top_k(post_set.post_ids, post_set.vectors, post_set.meta, post_set.queries, K))


@pytest.mark.parametrize(
    "flt",
    [
        SearchFilter(exclude_post_ids=frozenset()),  # replaced by the unfiltered top-10 in the test
        SearchFilter(exclude_author_id=3),
        SearchFilter(created_after=0),  # replaced by the median created_at
        SearchFilter(formats=frozenset({"video", "image"})),
        SearchFilter(exclude_author_id=5, formats=frozenset({"text", "article"}), created_after=0),
    ],
    ids=["seen", "own", "recency", "format", "combined"],
)
def test_filters_honoured(flat_index: MilvusPostIndex, post_set: SimpleNamespace, flt: SearchFilter) -> None:
    if flt.exclude_post_ids == frozenset() and flt.exclude_author_id is None and flt.formats is None:
        flt = SearchFilter(
            exclude_post_ids=frozenset(flat_index.search(post_set.queries[0], K)[0].post_ids[:10])
        )
    if flt.created_after == 0:
        flt = SearchFilter(
            exclude_author_id=flt.exclude_author_id,
            formats=flt.formats,
            created_after=int(np.median(post_set.meta.created_at)),
        )
    got = flat_index.search(post_set.queries, K, flt)
    allowed = set(post_set.post_ids[flt.mask(post_set.post_ids, post_set.meta)].tolist())
    assert all(set(g.post_ids.tolist()) <= allowed for g in got)
    _assert_same(
        got, exact_top_k(post_set.post_ids, post_set.vectors, post_set.meta, post_set.queries, K, flt)
    )


def test_filter_expression_text() -> None:
    f = SearchFilter(
        exclude_post_ids={3, 1}, exclude_author_id=7, created_after=100, formats={"video", "text"}
    )
    assert filter_expression(f) == (
        'author_id != 7 and created_at >= 100 and format in ["text", "video"] and post_id not in [1, 3]'
    )
    assert filter_expression(None) == ""
    with pytest.raises(IndexInputError, match="plain words"):
        filter_expression(SearchFilter(formats={'text" or 1==1 or "'}))


def test_upsert_replaces_and_delete_counts(milvus_client, serving_data) -> None:
    posts = serving_data.make_posts(n=120, dim=8, seed=5)
    index = _build(milvus_client, posts, serving_data.unique_name("ups"))
    target = int(posts.post_ids[0])
    q = posts.queries[0] / np.linalg.norm(posts.queries[0])
    assert index.upsert(np.array([target]), q[None, :], PostMeta.of([999], [0], ["poll"])) == 1
    assert len(index) == 120  # replaced, not duplicated
    top = index.search(q, 3)[0]
    assert top.post_ids[0] == target
    assert top.scores[0] == pytest.approx(1.0, abs=1e-4)
    assert target not in index.search(q, K, SearchFilter(exclude_author_id=999))[0].post_ids
    # replaying the same upsert changes nothing (idempotent sink)
    index.upsert(np.array([target]), q[None, :], PostMeta.of([999], [0], ["poll"]))
    assert len(index) == 120
    index.flush()
    assert index.search(q, 1)[0].post_ids.tolist() == [target]
    with pytest.raises(IndexInputError, match="top-k limit 16384"):
        index.search(q, 20000)
    assert index.delete(np.array([target, 10**9])) == 1  # unknown id not counted
    assert len(index) == 119
    assert target not in index.search(q, K)[0].post_ids


def test_bad_input_rejected(flat_index: MilvusPostIndex, post_set: SimpleNamespace) -> None:
    n = len(flat_index)
    bad = post_set.vectors[:2].copy()
    bad[0, 1] = np.inf
    with pytest.raises(IndexInputError, match=rf"post ids \[{post_set.post_ids[0]}\]"):
        flat_index.upsert(post_set.post_ids[:2], bad, post_set.meta.take(np.arange(2)))
    with pytest.raises(IndexInputError, match="dimension 3 != index dimension 16"):
        flat_index.upsert(np.array([1]), np.ones((1, 3)), PostMeta.of([1], [1], ["text"]))
    with pytest.raises(IndexInputError, match="duplicate post ids"):
        flat_index.upsert(np.array([1, 1]), np.ones((2, 16)), PostMeta.of([1, 1], [1, 1], ["text", "text"]))
    with pytest.raises(IndexInputError, match="format longer than 32"):
        flat_index.upsert(np.array([1]), np.ones((1, 16)), PostMeta.of([1], [1], ["x" * 40]))
    assert len(flat_index) == n


def test_create_index_resent_after_the_server_took_it(milvus_client, serving_data) -> None:
    """pymilvus re-sends a create_index whose connection dropped during a long build; the server then says
    "index already exists". Our own index type is accepted (and awaited); another type is a clear error."""
    from serving.index.milvus import IndexBuildError

    posts = serving_data.make_posts(200, 8, seed=3)
    version = serving_data.unique_name("resent")
    index = _build(milvus_client, posts, version, "HNSW", M=8, efConstruction=32)
    name = collection_name(version)
    create_vector_index(milvus_client, name, index.config)  # the re-sent call: no error, index still there
    (hit,) = index.search(posts.vectors[:1], 1)
    assert hit.post_ids.tolist() == [posts.post_ids[0]]
    with pytest.raises(IndexBuildError, match="already has a HNSW index"):
        create_vector_index(milvus_client, name, IndexConfig(uri="unused", index_type="IVF_FLAT"))


def test_gpu_cagra_rejected_on_lite_before_anything_is_created(milvus_client, serving_data) -> None:
    version = serving_data.unique_name("cagra")
    cfg = IndexConfig(uri="unused", index_type="GPU_CAGRA")
    with pytest.raises(IndexConfigError, match="GPU_CAGRA cannot be built by Milvus Lite"):
        create_posts_collection(milvus_client, collection_name(version), version, 8, cfg)
    assert not milvus_client.has_collection(collection_name(version))
    for ok in ("FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX"):
        check_index_type(milvus_client, ok)
    for bad in ("DISKANN", "SCANN", "IVF_PQ"):
        with pytest.raises(IndexConfigError, match="cannot be built by Milvus Lite"):
            check_index_type(milvus_client, bad)
    with pytest.raises(IndexConfigError, match="unknown index type 'NOPE'"):
        IndexConfig(index_type="nope")


def test_alias_swap_and_model_version(milvus_server, milvus_client, serving_data) -> None:
    alias = serving_data.unique_name("alias")
    a = serving_data.make_posts(n=50, dim=8, seed=1)
    b = serving_data.make_posts(n=70, dim=8, seed=2)
    va, vb = serving_data.unique_name("va"), serving_data.unique_name("vb")
    ia, ib = _build(milvus_client, a, va), _build(milvus_client, b, vb)
    assert alias_target(milvus_client, alias) is None
    assert point_alias(milvus_client, alias, ia.name) is None
    reader = MilvusPostIndex(milvus_client, alias, IndexConfig(uri="unused", alias=alias))
    assert (reader.model_version, len(reader)) == (va, 50)
    assert point_alias(milvus_client, alias, ib.name) == ia.name
    reader = MilvusPostIndex(milvus_client, alias, IndexConfig(uri="unused", alias=alias))
    assert (reader.model_version, len(reader)) == (vb, 70)
    assert set(reader.search(b.queries[0], 5)[0].post_ids) <= set(b.post_ids.tolist())
    assert milvus_client.has_collection(ia.name)  # the previous build is kept for rollback
    with pytest.raises(ModelVersionMismatchError, match=f"holds model version '{vb}'.*encoder is '{va}'"):
        MilvusPostIndex.open(IndexConfig(uri=milvus_server.uri, alias=alias), expect_model_version=va)
    assert collection_for(milvus_client, vb, alias) == ib.name
    assert collection_for(milvus_client, va, alias) == ia.name
    assert collection_for(milvus_client, "never-built", alias) is None


def test_unreachable_server_is_a_clear_error(serving_data, tmp_path) -> None:
    port = lite.free_port()
    with pytest.raises(MilvusUnavailableError, match=f"Milvus unreachable at http://127.0.0.1:{port}"):
        connect(f"http://127.0.0.1:{port}")
    # a server that dies under a client: the next call is MilvusUnavailableError too
    server = lite.start_server(tmp_path / "milvus", run=tmp_path / "run", detach=False)
    try:
        client = connect(server.uri, timeout_s=5)
        posts = serving_data.make_posts(n=20, dim=4)
        index = _build(client, posts, "dying")
    finally:
        assert lite.stop_process(server.pid)
    with pytest.raises(MilvusUnavailableError):
        index.search(posts.queries[0], 3)
