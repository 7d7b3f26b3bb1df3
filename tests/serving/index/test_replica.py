"""HnswReplica (FAISS HNSW, the default serving path): exact-equal top-k at high ef, filters, upsert/delete
semantics, rebuild, Delta bootstrap and the nearline log tail."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pytest

from feed.config import FeedPaths
from serving.index.base import IndexInputError, ModelVersionMismatchError, PostMeta, SearchFilter
from serving.index.replica import (
    SKIP_DELETED,
    SKIP_NON_FINITE,
    SKIP_ZERO,
    HnswConfig,
    HnswReplica,
    ReplicaSourceError,
    exact_top_k,
)

K = 20
# ef ≥ N makes HNSW visit the whole (small) graph: the answer must equal exact search.
EXACT_CFG = HnswConfig(M=16, ef_construction=200, ef_search=1000, exact_below_rows=0, exact_cost_ratio=0.0)


def _replica(posts: SimpleNamespace, cfg: HnswConfig = EXACT_CFG) -> HnswReplica:
    r = HnswReplica(posts.vectors.shape[1], "v1", cfg)
    assert r.upsert(posts.post_ids, posts.vectors, posts.meta) == len(posts.post_ids)
    return r


def _assert_same(got: list, want: list) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.post_ids.tolist() == w.post_ids.tolist()
        np.testing.assert_allclose(g.scores, w.scores, atol=1e-5)


def test_top_k_equals_exact_cosine(post_set: SimpleNamespace) -> None:
    r = _replica(post_set)
    assert len(r) == len(post_set.post_ids)
    got = r.search(post_set.queries, K)
    want = exact_top_k(post_set.post_ids, post_set.vectors, post_set.meta, post_set.queries, K)
    _assert_same(got, want)
    assert all(len(g) == K for g in got)
    # scores are cosines of the (unnormalised) query: scale does not matter
    _assert_same(r.search(post_set.queries * 7.0, K), want)


FILTERS = {
    "seen": SearchFilter(exclude_post_ids=frozenset()),  # filled per test from the unfiltered answer
    "own": SearchFilter(exclude_author_id=3),
    "recency": SearchFilter(created_after=0),  # filled per test: median created_at
    "format": SearchFilter(formats=frozenset({"video", "image"})),
    "rare_format": SearchFilter(formats=frozenset({"document"})),  # ≈1% of posts: the exact-subset path
    "all": SearchFilter(exclude_author_id=5, formats=frozenset({"text", "article"})),
}


@pytest.mark.parametrize("kind", sorted(FILTERS))
@pytest.mark.parametrize("exact_fallback", [False, True])
def test_filters_honoured(post_set: SimpleNamespace, kind: str, exact_fallback: bool) -> None:
    cfg = HnswConfig(M=16, ef_construction=200, ef_search=1000) if exact_fallback else EXACT_CFG
    r = _replica(post_set, cfg)
    f = FILTERS[kind]
    if kind == "seen":
        seen = r.search(post_set.queries[0], K)[0].post_ids[:10]
        f = SearchFilter(exclude_post_ids=frozenset(seen.tolist()))
    if kind == "recency":
        f = SearchFilter(created_after=int(np.median(post_set.meta.created_at)))
    got = r.search(post_set.queries, K, f)
    allowed = set(post_set.post_ids[f.mask(post_set.post_ids, post_set.meta)].tolist())
    for g in got:
        assert set(g.post_ids.tolist()) <= allowed
    _assert_same(got, exact_top_k(post_set.post_ids, post_set.vectors, post_set.meta, post_set.queries, K, f))
    if kind == "rare_format" and exact_fallback:
        assert got[0].extra["path"] == "exact_subset"
        assert len(got[0]) == len(allowed) < K  # fewer than k when the filter leaves fewer


def test_one_filter_per_query(post_set: SimpleNamespace) -> None:
    r = _replica(post_set)
    q = post_set.queries[:3]
    filters = [None, SearchFilter(exclude_author_id=2), SearchFilter(formats={"text"})]
    got = r.search(q, K, filters)
    for i, f in enumerate(filters):
        want = exact_top_k(post_set.post_ids, post_set.vectors, post_set.meta, q[i : i + 1], K, f)
        _assert_same(got[i : i + 1], want)


def test_upsert_replaces_vector_and_metadata(post_set: SimpleNamespace) -> None:
    r = _replica(post_set)
    target = int(post_set.post_ids[0])
    q = post_set.queries[0] / np.linalg.norm(post_set.queries[0])
    # move the post onto the query and change its author: it must rank first, once, with the new author
    r.upsert(np.array([target]), q[None, :], PostMeta.of([999], [0], ["poll"]))
    assert len(r) == len(post_set.post_ids)
    assert r.tombstones == 1
    top = r.search(q, K)[0]
    assert top.post_ids[0] == target
    assert top.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert top.post_ids.tolist().count(target) == 1
    assert target not in r.search(q, K, SearchFilter(exclude_author_id=999))[0].post_ids
    assert target in r.search(q, K, SearchFilter(formats={"poll"}))[0].post_ids


def test_delete_and_rebuild_keep_answers_exact(post_set: SimpleNamespace) -> None:
    cfg = HnswConfig(
        M=16, ef_construction=200, ef_search=1000, rebuild_tombstone_fraction=0.3, background_rebuild=False
    )
    r = _replica(post_set, cfg)
    gone = post_set.post_ids[::4]  # 25%: below the rebuild threshold
    assert r.delete(np.concatenate([gone, [123456789]])) == len(gone)  # unknown id ignored
    assert r.tombstones == len(gone)
    keep = ~np.isin(post_set.post_ids, gone)
    want = exact_top_k(
        post_set.post_ids[keep], post_set.vectors[keep], post_set.meta.take(keep), post_set.queries, K
    )
    _assert_same(r.search(post_set.queries, K), want)
    more = post_set.post_ids[1::4]  # now 50% dead → rebuild
    r.delete(more)
    assert r.tombstones == 0
    keep &= ~np.isin(post_set.post_ids, more)
    assert len(r) == keep.sum()
    want = exact_top_k(
        post_set.post_ids[keep], post_set.vectors[keep], post_set.meta.take(keep), post_set.queries, K
    )
    _assert_same(r.search(post_set.queries, K), want)


def test_writes_during_a_background_rebuild_are_kept(post_set: SimpleNamespace) -> None:
    r = _replica(post_set)
    r.delete(post_set.post_ids[:100])
    snap = r._rebuild_begin()  # phase 1: snapshot of the live posts, journal on
    assert snap is not None
    assert r._rebuild_begin() is None  # one rebuild at a time
    # writes while the new graph is being built: served by the old graph right away ...
    q = post_set.queries[0] / np.linalg.norm(post_set.queries[0])
    moved = int(post_set.post_ids[200])
    r.upsert(np.array([moved]), q[None, :], PostMeta.of([777], [0], ["poll"]))
    r.delete(post_set.post_ids[300:310])
    r.upsert(post_set.post_ids[:5], post_set.vectors[:5], post_set.meta.take(np.arange(5)))  # re-add deleted
    assert r.search(q, 1)[0].post_ids.tolist() == [moved]
    # ... and replayed onto the new graph when it is swapped in
    r._rebuild_finish(snap, r._rebuild_build(snap))
    assert r.tombstones == 11  # the snapshot's 100 are gone; the replayed replace + 10 deletes remain
    keep = np.ones(len(post_set.post_ids), bool)
    keep[5:100] = False
    keep[300:310] = False
    assert len(r) == keep.sum()
    vecs = post_set.vectors.copy()
    vecs[200] = q
    meta = PostMeta.of(post_set.meta.author_id.copy(), post_set.meta.created_at, post_set.meta.format.copy())
    meta.author_id[200], meta.format[200] = 777, "poll"
    want = exact_top_k(post_set.post_ids[keep], vecs[keep], meta.take(keep), post_set.queries, K)
    _assert_same(r.search(post_set.queries, K), want)
    f = SearchFilter(exclude_author_id=777)
    want_f = exact_top_k(post_set.post_ids[keep], vecs[keep], meta.take(keep), post_set.queries, K, f)
    _assert_same(r.search(post_set.queries, K, f), want_f)


def test_background_rebuild_triggers_and_converges(post_set: SimpleNamespace) -> None:
    cfg = HnswConfig(M=16, ef_construction=200, ef_search=1000, rebuild_tombstone_fraction=0.2)
    r = _replica(post_set, cfg)
    r.delete(post_set.post_ids[:200])  # 33% dead → a rebuild thread starts
    r.upsert(post_set.post_ids[:50], post_set.vectors[:50], post_set.meta.take(np.arange(50)))
    r.join_rebuild(timeout=60)
    keep = np.ones(len(post_set.post_ids), bool)
    keep[50:200] = False
    assert len(r) == keep.sum()
    want = exact_top_k(
        post_set.post_ids[keep], post_set.vectors[keep], post_set.meta.take(keep), post_set.queries, K
    )
    _assert_same(r.search(post_set.queries, K), want)


def test_bad_input_rejected_and_index_unchanged(post_set: SimpleNamespace) -> None:
    r = _replica(post_set)
    before = r.search(post_set.queries[0], K)[0].post_ids.tolist()
    bad = post_set.vectors[:2].copy()
    bad[1, 0] = np.nan
    with pytest.raises(IndexInputError, match=rf"post ids \[{post_set.post_ids[1]}\]"):
        r.upsert(post_set.post_ids[:2], bad, post_set.meta.take(np.arange(2)))
    with pytest.raises(IndexInputError, match="dimension 8 != index dimension 16"):
        r.upsert(np.array([1]), np.ones((1, 8)), PostMeta.of([1], [1], ["text"]))
    with pytest.raises(IndexInputError, match="k must be a positive integer"):
        r.search(post_set.queries[0], 0)
    assert r.search(post_set.queries[0], K)[0].post_ids.tolist() == before


def test_empty_replica_answers_nothing() -> None:
    from serving.index.base import PostIndex

    r = HnswReplica(4, "v1")
    assert isinstance(r, PostIndex)
    (res,) = r.search(np.ones(4), 5)
    assert len(res) == 0


# --- Delta bootstrap and the nearline log --------------------------------------------------------------


def test_from_delta_skips_deleted_and_bad_rows(tmp_path, serving_data: SimpleNamespace) -> None:
    posts = serving_data.make_posts(n=200, dim=16)
    paths = FeedPaths(home=tmp_path)
    nan_id, zero_id = int(posts.post_ids[10]), int(posts.post_ids[11])
    serving_data.write_post_tables(
        paths, posts, "v1", drop_from_raw=3, overrides={nan_id: [float("nan")] * 16, zero_id: [0.0] * 16}
    )
    r = HnswReplica.from_delta(paths, "v1", EXACT_CFG, follow=False)
    assert r.skipped == {SKIP_DELETED: 3, SKIP_NON_FINITE: 1, SKIP_ZERO: 1}
    assert len(r) == 195
    keep = ~np.isin(posts.post_ids, [*posts.post_ids[:3], nan_id, zero_id])
    want = exact_top_k(posts.post_ids[keep], posts.vectors[keep], posts.meta.take(keep), posts.queries, K)
    _assert_same(r.search(posts.queries, K), want)
    # metadata came from raw_posts (created_at as epoch seconds)
    f = SearchFilter(created_after=int(np.median(posts.meta.created_at)))
    want_f = exact_top_k(
        posts.post_ids[keep], posts.vectors[keep], posts.meta.take(keep), posts.queries, K, f
    )
    _assert_same(r.search(posts.queries, K, f), want_f)
    with pytest.raises(ModelVersionMismatchError, match=r"no rows for model_version 'v2' \(has \['v1'\]\)"):
        HnswReplica.from_delta(paths, "v2", follow=False)


def test_from_delta_without_tables(tmp_path) -> None:
    with pytest.raises(ReplicaSourceError, match="no Delta table"):
        HnswReplica.from_delta(FeedPaths(home=tmp_path), "v1")


def _log_rows(posts: SimpleNamespace, idx: np.ndarray, version: str, kind: str = "post", vec=None) -> object:
    """Rows of the nearline embedding log in its real schema (serving/nearline/schemas.py)."""
    import pyarrow as pa

    from serving.nearline.schemas import NEARLINE_EMBEDDINGS

    now = dt.datetime(2026, 4, 2, tzinfo=dt.UTC)
    n = len(idx)
    vecs = posts.vectors[idx] if vec is None else np.repeat(vec[None, :], n, axis=0)
    cols: dict[str, object] = {}
    for field in NEARLINE_EMBEDDINGS:
        if field.name == "kind":
            cols["kind"] = [kind] * n
        elif field.name == "entity_id":
            cols["entity_id"] = posts.post_ids[idx]
        elif field.name == "model_version":
            cols["model_version"] = [version] * n
        elif field.name == "embedding":
            cols["embedding"] = [v.tolist() for v in vecs]
        elif field.name == "author_id":
            cols["author_id"] = posts.meta.author_id[idx]
        elif field.name == "created_at":
            cols["created_at"] = [
                dt.datetime.fromtimestamp(int(t), tz=dt.UTC) for t in posts.meta.created_at[idx]
            ]
        elif field.name == "format":
            cols["format"] = posts.meta.format[idx].astype(str)
        elif pa.types.is_timestamp(field.type):
            cols[field.name] = [now] * n
        elif pa.types.is_integer(field.type):
            cols[field.name] = [0] * n
        else:
            cols[field.name] = [f"{field.name}-{i}" for i in range(n)]
    return pa.table(cols, schema=NEARLINE_EMBEDDINGS)


def test_follow_applies_only_new_log_versions(tmp_path, serving_data: SimpleNamespace) -> None:
    from pipelines import delta_io
    from serving.nearline.schemas import EMBEDDINGS_TABLE

    posts = serving_data.make_posts(n=300, dim=16, seed=3)
    paths = FeedPaths(home=tmp_path)
    base = np.arange(200)
    sub = serving_data.PostSet(
        posts.post_ids[base], posts.vectors[base], posts.meta.take(base), posts.queries
    )
    serving_data.write_post_tables(paths, sub, "v1")
    r = HnswReplica.from_delta(paths, "v1", EXACT_CFG)  # follows; no log yet → nothing applied
    assert len(r) == 200
    assert r.applied_version is None or r.applied_version == -1

    log = paths.table(EMBEDDINGS_TABLE)
    delta_io.write(log, _log_rows(posts, np.arange(200, 250), "v1"))  # 50 new posts
    delta_io.write(log, _log_rows(posts, np.arange(250, 260), "v2"))  # another model version: ignored
    delta_io.write(log, _log_rows(posts, np.arange(260, 270), "v1", kind="member"))  # not posts: ignored
    assert r.refresh() == 50
    assert len(r) == 250
    assert r.refresh() == 0  # nothing new: nothing re-applied
    # a post re-embedded twice in one new version range: the later row wins
    q = posts.queries[0] / np.linalg.norm(posts.queries[0])
    delta_io.write(log, _log_rows(posts, np.array([5]), "v1", vec=-q))
    delta_io.write(log, _log_rows(posts, np.array([5]), "v1", vec=q))
    assert r.refresh() == 1
    assert len(r) == 250
    top = r.search(q, 1)[0]
    assert top.post_ids.tolist() == [posts.post_ids[5]]
    assert top.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert r.applied_version == delta_io.version(log)
    keep = np.arange(250)
    vecs = posts.vectors[keep].copy()
    vecs[5] = q
    want = exact_top_k(posts.post_ids[keep], vecs, posts.meta.take(keep), posts.queries, K)
    _assert_same(r.search(posts.queries, K), want)

    # a second replica resuming from a recorded version applies only what came after it
    r2 = HnswReplica(16, "v1", EXACT_CFG)
    r2.follow(paths, since_version=0)
    assert len(r2) == 1  # versions 1, 2 ignored (v2, member); 3 and 4 both touch post 5


def test_snapshot_round_trip_resumes_the_tail(tmp_path, serving_data: SimpleNamespace) -> None:
    from pipelines import delta_io
    from serving.nearline.schemas import EMBEDDINGS_TABLE

    posts = serving_data.make_posts(n=240, dim=16, seed=4)
    paths = FeedPaths(home=tmp_path / "home")
    base = np.arange(200)
    serving_data.write_post_tables(
        paths,
        serving_data.PostSet(posts.post_ids[base], posts.vectors[base], posts.meta.take(base), posts.queries),
        "v1",
    )
    log = paths.table(EMBEDDINGS_TABLE)
    delta_io.write(log, _log_rows(posts, np.arange(200, 220), "v1"))
    r = HnswReplica.from_delta(paths, "v1", EXACT_CFG)
    r.delete(posts.post_ids[:5])  # tombstones survive the round trip
    assert len(r) == 215
    before = r.search(posts.queries, K, SearchFilter(formats={"text", "video"}))

    loaded = HnswReplica.load(r.save(tmp_path / "snap"))
    assert (len(loaded), loaded.tombstones, loaded.applied_version) == (215, 5, 0)
    _assert_same(loaded.search(posts.queries, K, SearchFilter(formats={"text", "video"})), before)
    delta_io.write(log, _log_rows(posts, np.arange(220, 240), "v1"))
    assert loaded.refresh() == 20  # only the version written after the snapshot
    assert len(loaded) == 235
    keep = np.arange(5, 240)
    want = exact_top_k(posts.post_ids[keep], posts.vectors[keep], posts.meta.take(keep), posts.queries, K)
    _assert_same(loaded.search(posts.queries, K), want)
    with pytest.raises(ReplicaSourceError, match="no replica snapshot"):
        HnswReplica.load(tmp_path / "nothing")


def test_added_files_from_commits_match_snapshot_difference(tmp_path, serving_data: SimpleNamespace) -> None:
    from pipelines import delta_io
    from serving.index.replica import _added_files, _snapshot_diff

    posts = serving_data.make_posts(n=30, dim=4, seed=6)
    log = tmp_path / "nearline_embeddings"
    for i in range(3):
        delta_io.write(log, _log_rows(posts, np.arange(10 * i, 10 * i + 10), "v1"))
    assert len(_added_files(log, -1, 2)) == 3
    assert _added_files(log, 0, 2) == _snapshot_diff(log, 0, 2)
    assert _added_files(log, 1, 2) == _snapshot_diff(log, 1, 2)
    assert _added_files(log, 2, 2) == []


def test_bad_log_rows_are_skipped_not_a_poison_pill(tmp_path, serving_data: SimpleNamespace) -> None:
    import pyarrow as pa

    from pipelines import delta_io
    from serving.nearline.schemas import EMBEDDINGS_TABLE

    posts = serving_data.make_posts(n=20, dim=4, seed=7)
    paths = FeedPaths(home=tmp_path)
    rows = _log_rows(posts, np.arange(10), "v1")
    emb = [v.tolist() for v in posts.vectors[:10]]
    emb[1] = [float("nan")] * 4
    emb[2] = [1.0, 0.0]  # wrong dimension
    emb[3] = [0.0] * 4
    created = rows["created_at"].to_pylist()
    created[4] = None
    rows = rows.set_column(
        rows.schema.get_field_index("embedding"), "embedding", pa.array(emb, pa.list_(pa.float32()))
    )
    rows = rows.set_column(
        rows.schema.get_field_index("created_at"),
        "created_at",
        pa.array(created, rows.schema.field("created_at").type),
    )
    delta_io.write(paths.table(EMBEDDINGS_TABLE), rows)
    r = HnswReplica(4, "v1", EXACT_CFG)
    assert r.follow(paths) == 6
    assert r.skipped == {
        "nearline_non_finite_embedding": 1,
        "nearline_wrong_dimension": 1,
        "nearline_zero_norm_embedding": 1,
        "nearline_null_metadata": 1,
    }
    assert sorted(r.search(posts.queries[0], 20)[0].post_ids.tolist()) == sorted(
        posts.post_ids[[0, 5, 6, 7, 8, 9]].tolist()
    )
    delta_io.write(paths.table(EMBEDDINGS_TABLE), _log_rows(posts, np.arange(10, 20), "v1"))
    assert r.refresh() == 10  # the tail moved on past the bad rows
    assert len(r) == 16


def test_concurrent_searches_and_writes(post_set: SimpleNamespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cfg = HnswConfig(M=16, ef_construction=100, ef_search=1000, rebuild_tombstone_fraction=0.2)
    r = HnswReplica(post_set.vectors.shape[1], "v1", cfg)
    half = len(post_set.post_ids) // 2
    r.upsert(post_set.post_ids[:half], post_set.vectors[:half], post_set.meta.take(np.arange(half)))
    live_ids = set(post_set.post_ids.tolist())

    def write() -> None:
        for s in range(half, len(post_set.post_ids), 25):
            idx = np.arange(s, min(s + 25, len(post_set.post_ids)))
            r.upsert(post_set.post_ids[idx], post_set.vectors[idx], post_set.meta.take(idx))
            r.delete(post_set.post_ids[idx[:5] - half])  # tombstones: triggers background rebuilds

    def read(i: int) -> int:
        n = 0
        for _ in range(30):
            for res in r.search(post_set.queries, K, SearchFilter(exclude_author_id=i)):
                assert len(res) == len(set(res.post_ids.tolist())) <= K
                assert set(res.post_ids.tolist()) <= live_ids
                assert np.all(np.diff(res.scores) <= 1e-6)  # best first
                n += 1
        return n

    with ThreadPoolExecutor(4) as pool:
        readers = [pool.submit(read, i) for i in range(3)]
        pool.submit(write).result()
        assert sum(f.result() for f in readers) == 3 * 30 * len(post_set.queries)
    r.join_rebuild(timeout=60)
    deleted = {
        int(post_set.post_ids[j])
        for s in range(half, len(post_set.post_ids), 25)
        for j in range(s - half, min(s - half + 5, half))
    }
    keep = ~np.isin(post_set.post_ids, list(deleted))
    assert len(r) == keep.sum()
    want = exact_top_k(
        post_set.post_ids[keep], post_set.vectors[keep], post_set.meta.take(keep), post_set.queries, K
    )
    _assert_same(r.search(post_set.queries, K), want)
