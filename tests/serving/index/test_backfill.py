"""Backfill (Delta → new collection → alias swap) and the ``feed index`` CLI, against a real Milvus Lite
server and real Delta tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from feed.cli import app
from feed.config import FeedPaths
from serving.index import lite
from serving.index.backfill import backfill
from serving.index.base import IndexConfigError, IndexInputError, ModelVersionMismatchError
from serving.index.milvus import IndexConfig, MilvusPostIndex, alias_target, collection_name
from serving.index.replica import SKIP_DELETED, SKIP_NON_FINITE, exact_top_k

pytestmark = pytest.mark.integration

K = 10


def _cfg(server: lite.LiteServer, alias: str, index_type: str = "FLAT") -> IndexConfig:
    return IndexConfig(uri=server.uri, alias=alias, index_type=index_type)


def test_backfill_swaps_alias_only_when_complete(
    milvus_server, milvus_client, tmp_path, serving_data
) -> None:
    posts = serving_data.make_posts(n=150, dim=8, seed=11)
    paths = FeedPaths(home=tmp_path)
    version, alias = serving_data.unique_name("bf"), serving_data.unique_name("posts")
    nan_id = int(posts.post_ids[20])
    serving_data.write_post_tables(
        paths, posts, version, drop_from_raw=4, overrides={nan_id: [float("nan")] * 8}
    )

    first = backfill(paths, _cfg(milvus_server, alias))
    assert first.collection == collection_name(version)
    assert first.previous is None
    assert first.rows == 145
    assert first.skipped == {SKIP_DELETED: 4, SKIP_NON_FINITE: 1}
    assert alias_target(milvus_client, alias) == first.collection

    reader = MilvusPostIndex(milvus_client, alias, _cfg(milvus_server, alias))
    keep = ~np.isin(posts.post_ids, [*posts.post_ids[:4], nan_id])
    want = exact_top_k(posts.post_ids[keep], posts.vectors[keep], posts.meta.take(keep), posts.queries, K)
    for g, w in zip(reader.search(posts.queries, K), want, strict=True):
        assert g.post_ids.tolist() == w.post_ids.tolist()

    # rebuilding the served version goes to a new collection; the old one stays for rollback
    second = backfill(paths, _cfg(milvus_server, alias))
    assert second.collection == collection_name(version) + "_r2"
    assert second.previous == first.collection
    assert alias_target(milvus_client, alias) == second.collection
    assert milvus_client.has_collection(first.collection)


def test_failed_backfill_leaves_alias_on_previous_build(
    milvus_server, milvus_client, tmp_path, serving_data
) -> None:
    alias = serving_data.unique_name("posts")
    good = serving_data.make_posts(n=60, dim=8, seed=12)
    old_home = FeedPaths(home=tmp_path / "old")
    v_old = serving_data.unique_name("old")
    serving_data.write_post_tables(old_home, good, v_old)
    built = backfill(old_home, _cfg(milvus_server, alias))

    # a new version whose raw_posts has a format Milvus cannot store (over 32 characters): fails at insert
    bad = serving_data.make_posts(n=60, dim=8, seed=13)
    bad.meta.format[7] = "x" * 40
    new_home = FeedPaths(home=tmp_path / "new")
    v_new = serving_data.unique_name("new")
    serving_data.write_post_tables(new_home, bad, v_new)
    with pytest.raises(IndexInputError, match="format longer than 32"):
        backfill(new_home, _cfg(milvus_server, alias))
    assert alias_target(milvus_client, alias) == built.collection  # readers still see the complete build
    reader = MilvusPostIndex(milvus_client, alias, _cfg(milvus_server, alias))
    assert (reader.model_version, len(reader)) == (v_old, 60)
    # the half-built collection is not served, and the next backfill of that version replaces it
    assert milvus_client.has_collection(collection_name(v_new))
    bad.meta.format[7] = "text"
    serving_data.write_post_tables(new_home, bad, v_new)
    rebuilt = backfill(new_home, _cfg(milvus_server, alias))
    assert rebuilt.collection == collection_name(v_new)
    assert rebuilt.rows == 60


def test_model_version_rules(milvus_server, milvus_client, tmp_path, serving_data) -> None:
    posts = serving_data.make_posts(n=40, dim=8, seed=14)
    paths = FeedPaths(home=tmp_path)
    alias = serving_data.unique_name("posts")
    v1, v2 = serving_data.unique_name("m"), serving_data.unique_name("m")
    serving_data.write_post_tables(paths, posts, v1, promote=False)
    serving_data.write_post_tables(paths, posts, v2)  # v2 is the promoted encoder
    with pytest.raises(ModelVersionMismatchError, match=f"{v1!r} is not the promoted encoder"):
        backfill(paths, _cfg(milvus_server, alias), model_version=v1)
    assert alias_target(milvus_client, alias) is None
    rollback = backfill(paths, _cfg(milvus_server, alias), model_version=v1, allow_non_current=True)
    assert rollback.model_version == v1
    with pytest.raises(ModelVersionMismatchError, match="Rebuild with `feed index backfill"):
        MilvusPostIndex.open(_cfg(milvus_server, alias), expect_model_version=v2)
    with pytest.raises(ModelVersionMismatchError, match="no rows for model_version 'nope'"):
        backfill(paths, _cfg(milvus_server, alias), model_version="nope", allow_non_current=True)


def test_gpu_cagra_refused_before_reading(milvus_server, milvus_client, tmp_path, serving_data) -> None:
    paths = FeedPaths(home=tmp_path)  # no tables at all: the index type is checked first
    serving_data.promote_version(paths, "cagra-v")
    with pytest.raises(IndexConfigError, match="GPU_CAGRA cannot be built by Milvus Lite"):
        backfill(paths, _cfg(milvus_server, serving_data.unique_name("posts"), "GPU_CAGRA"))
    assert not milvus_client.has_collection(collection_name("cagra-v"))


def _write_member_embeddings(paths: FeedPaths, version: str, members: dict[int, np.ndarray]) -> None:
    import pyarrow as pa

    from pipelines import delta_io
    from pipelines.schemas import EMBEDDING_MEMBER

    now = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    table = pa.table(
        {
            "member_id": list(members),
            "model_version": [version] * len(members),
            "embedding": [v.astype(np.float32).tolist() for v in members.values()],
            "event_timestamp": [now] * len(members),
            "created": [now] * len(members),
        }
    )
    delta_io.write(paths.table("member_embeddings"), table, schema=EMBEDDING_MEMBER)


def _write_impressions(paths: FeedPaths, member: int, post_ids: list[int]) -> None:
    import pyarrow as pa

    from pipelines import delta_io
    from pipelines.schemas import RAW_IMPRESSIONS

    n = len(post_ids)
    cols = {
        "event_id": list(range(n)),
        "member_id": [member] * n,
        "post_id": post_ids,
        "event_timestamp": [dt.datetime(2026, 3, 20, tzinfo=dt.UTC)] * n,
        "session_id": [1] * n,
        "device_type": ["mobile"] * n,
        "position": list(range(n)),
        "request_id": [None] * n,
    }
    for field in RAW_IMPRESSIONS:
        cols.setdefault(field.name, [0] * n)
    delta_io.write(paths.table("raw_impressions"), pa.table(cols), schema=RAW_IMPRESSIONS)


def test_cli_backfill_status_search(milvus_server, tmp_path: Path, serving_data: SimpleNamespace) -> None:
    posts = serving_data.make_posts(n=80, dim=8, seed=15)
    paths = FeedPaths(home=tmp_path)
    version = serving_data.unique_name("cli")
    serving_data.write_post_tables(paths, posts, version)
    member = int(posts.meta.author_id[0])  # a member who also authored posts
    _write_member_embeddings(paths, version, {member: posts.queries[0]})
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    res = runner.invoke(app, [*home, "index", "backfill", "--uri", milvus_server.uri, "--index-type", "FLAT"])
    assert res.exit_code == 0, res.output
    assert f"alias posts → {collection_name(version)}" in res.output

    res = runner.invoke(app, [*home, "index", "status", "--uri", milvus_server.uri])
    assert res.exit_code == 0, res.output
    assert f"* {collection_name(version)}" in res.output

    res = runner.invoke(
        app, [*home, "index", "search", "--uri", milvus_server.uri, "--member-id", str(member)]
    )
    assert res.exit_code == 0, res.output
    from serving.index.base import SearchFilter

    want = exact_top_k(
        posts.post_ids,
        posts.vectors,
        posts.meta,
        posts.queries[:1],
        K,
        SearchFilter(exclude_author_id=member),
    )
    listed = [int(line.split("post ")[1].split()[0]) for line in res.output.splitlines() if ". post " in line]
    assert listed == want[0].post_ids.tolist()  # own posts excluded by default

    # already-seen posts (raw_impressions) are excluded by default
    _write_impressions(paths, member, listed[:3])
    search = [*home, "index", "search", "--uri", milvus_server.uri, "--member-id", str(member)]
    res = runner.invoke(app, search)
    assert res.exit_code == 0, res.output
    seen_out = [
        int(line.split("post ")[1].split()[0]) for line in res.output.splitlines() if ". post " in line
    ]
    assert seen_out[:7] == listed[3:]
    assert not set(seen_out) & set(listed[:3])
    res = runner.invoke(app, [*search, "--no-exclude-seen"])
    assert [
        int(line.split("post ")[1].split()[0]) for line in res.output.splitlines() if ". post " in line
    ] == listed

    # the same answer from the in-process replica built from the same Delta tables
    res = runner.invoke(
        app, [*home, "index", "search", "--replica", "--no-exclude-seen", "--member-id", str(member)]
    )
    assert res.exit_code == 0, res.output
    assert "HnswReplica" in res.output
    assert [
        int(line.split("post ")[1].split()[0]) for line in res.output.splitlines() if ". post " in line
    ] == listed

    # rollback: point the alias at another posts collection, and refuse anything else
    res = runner.invoke(app, [*home, "index", "backfill", "--uri", milvus_server.uri, "--index-type", "FLAT"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*home, "index", "use", collection_name(version), "--uri", milvus_server.uri])
    assert res.exit_code == 0, res.output
    assert f"alias posts → {collection_name(version)} (was {collection_name(version)}_r2)" in res.output
    res = runner.invoke(app, [*home, "index", "use", "nope", "--uri", milvus_server.uri])
    assert res.exit_code == 2

    res = runner.invoke(app, [*home, "index", "search", "--uri", milvus_server.uri, "--member-id", "424242"])
    assert res.exit_code == 2
    assert "member 424242 has no" in res.output

    res = runner.invoke(
        app, [*home, "index", "backfill", "--uri", milvus_server.uri, "--index-type", "GPU_CAGRA"]
    )
    assert res.exit_code == 2
    assert "cannot be built by Milvus Lite" in res.output


def test_server_lifecycle(tmp_path: Path, serving_data: SimpleNamespace) -> None:
    paths = FeedPaths(home=tmp_path)
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    assert lite.running_server(paths) is None
    res = runner.invoke(app, [*home, "index", "status"])  # nothing running: a clear error, not a hang
    assert res.exit_code == 2
    assert "no Milvus Lite server running" in res.output
    assert runner.invoke(app, [*home, "index", "server", "status"]).exit_code == 1

    port = lite.free_port()
    res = runner.invoke(app, [*home, "index", "server", "start", "--port", str(port)])
    assert res.exit_code == 0, res.output
    server = lite.running_server(paths)
    try:
        assert server is not None
        assert server.port == port
        assert lite.ensure_server(paths) == server  # reused, not a second process
        assert (paths.data / "milvus").is_dir()
        with pytest.raises(lite.LiteServerError, match="already in use"):
            lite.start_server(tmp_path / "other", port=port)
        res = runner.invoke(app, [*home, "index", "status"])
        assert res.exit_code == 0, res.output
        assert f"pid {server.pid}" in res.output
        assert "alias posts → None" in res.output
    finally:
        res = runner.invoke(app, [*home, "index", "server", "stop"])
    assert res.exit_code == 0
    assert not lite.pid_alive(server.pid)
    assert lite.running_server(paths) is None

    # the data outlives the process: a backfilled index is served again after a restart (load on open)
    posts = serving_data.make_posts(n=40, dim=8, seed=16)
    serving_data.write_post_tables(paths, posts, "restart-v")
    built = backfill(paths)  # no uri: starts this home's server
    want = MilvusPostIndex.open(IndexConfig(), paths).search(posts.queries, 5)
    lite.stop_server(paths)
    restarted = lite.ensure_server(paths, port=lite.free_port())
    try:
        reopened = MilvusPostIndex.open(IndexConfig(), paths, expect_model_version="restart-v")
        assert reopened.collection == built.collection
        assert len(reopened) == 40
        got = reopened.search(posts.queries, 5)
        assert [g.post_ids.tolist() for g in got] == [w.post_ids.tolist() for w in want]
    finally:
        lite.stop_server(paths)
    assert not restarted.alive()
