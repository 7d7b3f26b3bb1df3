"""``feed erase member|post ID`` on a small real home: Delta lake (raw, features, embeddings, nearline logs),
landing/staging copies, training sets, a Feast SQLite online store, a Milvus Lite server with two posts
collections, and a saved HNSW replica. After an erasure the id must be absent everywhere — checked here with
an independent scan of every Parquet file on disk, Feast online reads, Milvus queries and searches."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from feed.config import FeedPaths, FeedSettings
from pipelines import delta_io, schemas
from pipelines.erase import ARRAY_RULES, EraseOptions, Targets, erase, resolve_rewritten, scrub

MEMBER = 1  # authors posts 101 and 104 (fabricate) and 106 (nearline only)
MEMBER_POSTS = {101, 104, 106}
POST = 103  # by member 3; member 2's nearline prompt quotes it


# --- unit: the row rules ------------------------------------------------------------------------------


def test_scrub_cuts_ids_out_of_parallel_lists_and_deletes_rows() -> None:
    table = pa.table(
        {
            "member_id": [1, 2, 3, 4],
            "post_ids": [[101, 7, 101], [8], None, [101]],
            "actions": [[1, 2, 3], [4], None, [5, 6]],  # row 4: lengths differ → cannot cut → deleted
            "timestamps": [[10, 20, 30], [40], None, [50]],
            "sequence_length": [9, 1, 0, 4],
        }
    )
    out = scrub(table, "member_sequence", Targets("post", 101, post_ids=frozenset({101})))
    assert out.deleted == 1
    assert out.rewritten == 1
    assert out.table.to_pydict() == {
        "member_id": [1, 2, 3],
        "post_ids": [[7], [8], None],
        "actions": [[2], [4], None],
        "timestamps": [[20], [40], None],
        "sequence_length": [7, 1, 0],
    }
    # a member erasure deletes the member's own row; an id list without a rule deletes the rows holding it
    other = pa.table({"member_id": [1, 2, 3], "friend_member_ids": [[5], [1, 5], []]})
    done = scrub(other, "somewhere", Targets("member", 1, member_ids=frozenset({1})))
    assert done.table["member_id"].to_pylist() == [3]
    assert done.notes


def test_scrub_keeps_unrelated_rows_and_order() -> None:
    table = pa.table(
        {
            "kind": ["post", "member", "stats", "member", "post"],
            "entity_id": [101, 101, 101, 2, 5],
            "author_id": [9, None, None, None, 1],
            "prompt": [None, "m101", None, "history: video #ai: post 103 #ai", "p"],
        }
    )
    targets = Targets("post", 101, post_ids=frozenset({101, 103}), snippets=(": post 103 #ai",))
    out = scrub(table, "nearline_prompts", targets)
    # post/stats rows of 101 go; member 101 is another entity; member 2's prompt quotes post 103
    assert out.table.to_pydict()["entity_id"] == [101, 5]
    assert out.table.to_pydict()["kind"] == ["member", "post"]
    assert {r.table for r in ARRAY_RULES} == {"member_history", "member_sequence", "member_affinity"}


# --- the home ------------------------------------------------------------------------------------------


def _ts(days: float = 0.0) -> dt.datetime:
    return dt.datetime(2026, 9, 1, tzinfo=dt.UTC) + dt.timedelta(days=days)


def _write(paths: FeedPaths, name: str, rows: dict[str, list[Any]], schema: pa.Schema) -> None:
    delta_io.write(paths.table(name), delta_io.conform(pa.table(rows), schema), mode="append", schema=schema)


def _impressions(rows: list[tuple[int, int, int]], start_id: int) -> dict[str, list[Any]]:
    """(member, post, click) → raw_impressions columns."""
    n = len(rows)
    out: dict[str, list[Any]] = {
        "event_id": list(range(start_id, start_id + n)),
        "member_id": [r[0] for r in rows],
        "post_id": [r[1] for r in rows],
        "event_timestamp": [_ts(i) for i in range(n)],
        "session_id": [7] * n,
        "device_type": ["mobile_app"] * n,
        "position": list(range(n)),
        "request_id": [None] * n,
    }
    for label in schemas.LABELS:
        out[label] = [r[2] if label == "click" else 0 for r in rows]
    return out


def _write_raw(paths: FeedPaths, post_author: dict[int, int]) -> None:
    posts = [*sorted(post_author), 105]
    authors = {**post_author, 105: 2}
    _write(
        paths,
        "raw_members",
        {
            "member_id": [1, 2, 3],
            "headline": ["headline m1", "headline m2", "headline m3"],
            "current_role": ["r1", "r2", "r3"],
            "industry": ["software", "finance", "health"],
            "skills": [["a"], ["b"], ["c"]],
            "education": [[], [], []],
            "work_history": [[], [], []],
            "created_at": [_ts()] * 3,
        },
        schemas.RAW_MEMBERS,
    )
    _write(
        paths,
        "raw_posts",
        {
            "post_id": posts,
            "author_id": [authors[p] for p in posts],
            "format": ["text"] * len(posts),
            "text": [f"post {p} #ai" for p in posts],
            "article_title": [None] * len(posts),
            "article_domain": [None] * len(posts),
            "created_at": [_ts()] * len(posts),
        },
        schemas.RAW_POSTS,
    )
    _write(
        paths,
        "raw_follows",
        {"member_id": [2, 3, 1, 3], "author_id": [1, 1, 2, 2], "created_at": [_ts()] * 4},
        schemas.RAW_FOLLOWS,
    )
    # two commits: the erasure must also remove the older version's file from disk
    _write(
        paths,
        "raw_impressions",
        _impressions([(2, 101, 1), (3, 104, 0), (1, 102, 1)], 1),
        schemas.RAW_IMPRESSIONS,
    )
    _write(
        paths,
        "raw_impressions",
        _impressions([(3, 103, 1), (2, 105, 1), (2, 103, 0)], 10),
        schemas.RAW_IMPRESSIONS,
    )
    _write(
        paths,
        "raw_profile_updates",
        {
            "member_id": [1],
            "event_timestamp": [_ts(2)],
            "headline": ["headline m1 new"],
            "current_role": [None],
            "industry": [None],
            "skills": [None],
            "work_history": [None],
        },
        schemas.RAW_PROFILE_UPDATES,
    )
    _write(
        paths,
        "audit_attributes",
        {"member_id": [1, 2, 3], "attribute": ["group"] * 3, "value": ["a", "b", "a"]},
        schemas.AUDIT_ATTRIBUTES,
    )
    _write(
        paths,
        "truth_members",
        {"member_id": [1, 2, 3], "interests": [[0.5], [0.5], [0.5]], "activity": [1.0] * 3},
        schemas.TRUTH_MEMBERS,
    )
    _write(
        paths,
        "truth_posts",
        {"post_id": posts, "topic": ["ai"] * len(posts), "quality": [0.5] * len(posts)},
        schemas.TRUTH_POSTS,
    )


def _write_nearline(paths: FeedPaths) -> None:
    from serving.nearline import log as nlog
    from serving.nearline.schemas import (
        NEARLINE_EMBEDDINGS,
        NEARLINE_EVENTS,
        NEARLINE_INDEXED,
        NEARLINE_PROMPTS,
    )

    t = _ts(10)

    def event(eid: str, kind: str, member: int, post: int | None, **kw: Any) -> dict[str, Any]:
        return {"event_id": eid, "kind": kind, "event_time": t, "published_at": t, "member_id": member,
                "post_id": post, **kw}  # fmt: skip

    events = nlog.append(
        paths.table("nearline_events"),
        pa.Table.from_pylist(
            [
                event("e1", "post", 1, 106, format="text", text="post 106 #ai written nearline"),
                event("e2", "engagement", 2, 101, action="like"),
            ],
            schema=NEARLINE_EVENTS,
        ),
        NEARLINE_EVENTS,
    )
    nlog.append(
        paths.table("nearline_events"),
        pa.Table.from_pylist(
            [
                event("e3", "profile", 1, None, headline="new"),
                event("e4", "engagement", 3, 102, action="click"),
            ],
            schema=NEARLINE_EVENTS,
        ),
        NEARLINE_EVENTS,
    )
    assert events == 0

    def row(kind: str, entity: int, author: int | None, prompt: str | None) -> dict[str, Any]:
        return {
            "prompt_id": f"e/{kind}/{entity}",
            "kind": kind,
            "entity_id": entity,
            "model_version": "v2",
            "prompt": prompt,
            "author_id": author,
            "created_at": t if author else None,
            "format": "text" if author else None,
            "source_event_id": "e1",
            "event_time": t,
            "published_at": t,
            "events_version": 0,
            "prompted_at": t,
        }

    prompts = [
        row("post", 106, 1, "post 106 #ai written nearline"),
        row("member", 1, None, "member: headline m1"),
        row("member", 2, None, "member: headline m2\nhistory:\ntext #ai by headline m3: post 103 #ai"),
        row("member", 3, None, "member: headline m3\nhistory:\ntext #ai by headline m2: post 105 #ai"),
        row("stats", 101, None, None),
    ]
    nlog.append(paths.table("nearline_prompts"), pa.Table.from_pylist(prompts, schema=NEARLINE_PROMPTS),
                NEARLINE_PROMPTS)  # fmt: skip
    embedded = [
        {**{k: v for k, v in p.items() if k not in ("prompt", "events_version")}, "prompts_version": 0,
         "embedded_at": t, "embedding": None if p["kind"] == "stats" else [0.1, 0.2, 0.3, 0.4]}
        for p in prompts
    ]  # fmt: skip
    table = pa.Table.from_pylist(embedded, schema=NEARLINE_EMBEDDINGS)
    nlog.append(paths.table("nearline_embeddings"), table, NEARLINE_EMBEDDINGS)
    indexed = [
        {"prompt_id": p["prompt_id"], "kind": p["kind"], "entity_id": p["entity_id"], "model_version": "v2",
         "outcome": "indexed", "reason": None, "event_time": t, "published_at": t, "prompted_at": t,
         "embedded_at": t, "embeddings_version": 0, "indexed_at": t}
        for p in prompts
    ]  # fmt: skip
    nlog.append(paths.table("nearline_indexed"), pa.Table.from_pylist(indexed, schema=NEARLINE_INDEXED),
                NEARLINE_INDEXED)  # fmt: skip


def _write_copies(paths: FeedPaths) -> None:
    """A landing batch, a staging run (with Spark's .crc sidecar) and two training sets."""
    batch = paths.landing / "batch-1"
    (batch / "raw_impressions").mkdir(parents=True)
    pq.write_table(delta_io.read(paths.table("raw_posts")), batch / "raw_posts.parquet")
    pq.write_table(
        delta_io.read(paths.table("raw_impressions")), batch / "raw_impressions" / "part-00000.parquet"
    )
    run = paths.staging / "member_history" / "run-1"
    run.mkdir(parents=True)
    pq.write_table(delta_io.read(paths.table("member_history")), run / "part-00000.parquet")
    (run / ".part-00000.parquet.crc").write_bytes(b"crc")
    ranking = paths.data / "training" / "ranking" / "t1" / "train"
    ranking.mkdir(parents=True)
    pq.write_table(
        pa.table({"member_id": [1, 2], "post_id": [[102, 103], [101, 105]]}), ranking / "part-00000.parquet"
    )
    retrieval = paths.data / "training" / "retrieval" / "t2" / "train"
    retrieval.mkdir(parents=True)
    pq.write_table(
        pa.table({"member_id": [3], "positive_post_id": [103], "hard_negative_post_ids": [[105]]}),
        retrieval / "anchors.parquet",
    )


@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory, fabricate: Any) -> FeedPaths:
    """The home every test copies (its Milvus Lite server is stopped once it is built)."""
    from pipelines import feature_store
    from serving.index import lite
    from serving.index.backfill import backfill
    from serving.index.base import PostMeta
    from serving.index.milvus import IndexConfig, MilvusPostIndex
    from serving.index.replica import HnswReplica

    paths = FeedPaths(home=tmp_path_factory.mktemp("erase_base"))
    fab = fabricate.write_feature_tables(paths)
    assert fab.post_author[101] == MEMBER
    assert fab.post_author[104] == MEMBER
    assert fab.post_author[POST] == 3
    _write_raw(paths, fab.post_author)
    _write_nearline(paths)
    _write_copies(paths)
    feature_store.apply(paths)
    feature_store.materialize_incremental(paths, fab.t + dt.timedelta(hours=1))
    for version in ("v1", "v2"):
        (paths.artifacts / "retrieval" / version).mkdir(parents=True)
        (paths.artifacts / "retrieval" / version / "config.json").write_text(json.dumps({"version": version}))
    (paths.artifacts / "retrieval" / "CURRENT").write_text("v2")
    lite.ensure_server(paths)
    try:
        flat = IndexConfig(index_type="FLAT")
        backfill(paths, flat, model_version="v1", allow_non_current=True)
        backfill(paths, flat)  # v2, served by the alias `posts`; posts_v1 kept for rollback
        index = MilvusPostIndex.open(flat, paths)
        meta = PostMeta.of(np.array([MEMBER]), np.array([int(_ts(10).timestamp())]), np.array(["text"]))
        index.upsert(np.array([106]), np.array([[0.1, 0.2, 0.3, 0.4]], np.float32), meta)  # nearline post
        index.flush()
    finally:
        lite.stop_server(paths)
    HnswReplica.from_delta(paths, "v2", follow=False).save(paths.data / "replica" / "v2")
    return paths


@pytest.fixture
def home(base_home: FeedPaths, tmp_path: Path) -> Iterator[FeedPaths]:
    """A private copy of the base home; its Milvus Lite server (if a test starts one) is stopped after."""
    from serving.index import lite

    paths = FeedPaths(home=tmp_path / "home")
    shutil.copytree(base_home.home, paths.home)
    yield paths
    lite.stop_server(paths)


# --- independent checks -----------------------------------------------------------------------------------


def _holds(table: pa.Table, members: set[int], posts: set[int]) -> int:
    """Rows holding an id: any column named like a member/author/post id (scalar or list), or a nearline
    (kind, entity_id) pair. Written independently of pipelines/erase.py on purpose."""
    found = np.zeros(table.num_rows, dtype=bool)
    for name in table.column_names:
        ids = (
            posts if "post_id" in name else members if ("member_id" in name or "author_id" in name) else None
        )
        col = table[name]
        if ids is None or not ids:
            continue
        values = col.to_pylist()
        for i, v in enumerate(values):
            if isinstance(v, list):
                found[i] |= any(x in ids for x in v if x is not None)
            elif v is not None and not isinstance(v, str):
                found[i] |= v in ids
    if {"kind", "entity_id"} <= set(table.column_names):
        for i, (k, e) in enumerate(
            zip(table["kind"].to_pylist(), table["entity_id"].to_pylist(), strict=True)
        ):
            found[i] |= (k == "member" and e in members) or (k in ("post", "stats") and e in posts)
    return int(found.sum())


def _files_holding(root: Path, members: set[int], posts: set[int]) -> list[str]:
    out = []
    for file in sorted(root.rglob("*.parquet")):
        if "_delta_log" in file.parts or "erasure" in file.parts:
            continue
        if _holds(pq.read_table(file), members, posts):
            out.append(str(file.relative_to(root)))
    return out


def _versions(paths: FeedPaths) -> dict[str, int | None]:
    return {p.parent.name: delta_io.version(p.parent) for p in sorted(paths.lake.glob("*/_delta_log"))}


def _digest(paths: FeedPaths) -> dict[str, str]:
    """Content hash of every file under data/ except the Milvus server's run folder (pid, log)."""
    out = {}
    for file in sorted(paths.data.rglob("*")):
        if file.is_file() and "milvus_server" not in file.parts and file.name != "LOCK":
            out[str(file.relative_to(paths.data))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return out


def _cli(paths: FeedPaths, *args: str) -> Any:
    """``feed erase …`` through a Typer app wired like feed/cli.py (home from --home)."""
    from feed.commands.erase import erase_app

    app = typer.Typer()

    @app.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = FeedSettings(home=paths.home)

    app.add_typer(erase_app, name="erase")
    return CliRunner().invoke(app, ["erase", *args])


def _milvus_rows(paths: FeedPaths, expr: str) -> dict[str, list[int]]:
    from serving.index import lite
    from serving.index.milvus import connect, posts_collections

    client = connect(lite.ensure_server(paths).uri)
    try:
        out = {}
        for name in posts_collections(client):
            client.load_collection(name)
            out[name] = [r["post_id"] for r in client.query(name, filter=expr, output_fields=["post_id"])]
        return out
    finally:
        client.close()


# --- integration ---------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_unknown_id_is_refused_and_nothing_changes(home: FeedPaths) -> None:
    before, versions = _digest(home), _versions(home)
    result = _cli(home, "member", "424242")
    assert result.exit_code == 2, result.output
    assert "member 424242 is unknown" in result.output
    assert _versions(home) == versions
    assert {k: v for k, v in _digest(home).items() if not k.startswith("milvus/")} == {
        k: v for k, v in before.items() if not k.startswith("milvus/")
    }
    assert not (home.data / "erasure").exists()
    assert _cli(home, "post", "not-a-number").exit_code == 2


@pytest.mark.integration
@pytest.mark.slow
def test_dry_run_reports_every_store_and_changes_nothing(home: FeedPaths) -> None:
    before = _digest(home)
    result = _cli(home, "member", str(MEMBER), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["status"] == "dry_run"
    assert set(plan["cascade"]["post_ids"]) == MEMBER_POSTS
    stores = {s["store"] for s in plan["steps"]}
    assert {"delta", "feast_online", "milvus", "loose", "training", "replica"} <= stores
    targets = {s["target"] for s in plan["steps"]}
    assert {"raw_members", "member_history", "member_sequence", "nearline_events", "ranking/t1"} <= {
        t.removeprefix("training/") for t in targets
    }
    assert _digest(home) == before  # no receipt, no commit, no server started, no file touched


@pytest.mark.integration
@pytest.mark.slow
def test_member_erasure_removes_it_everywhere_and_a_rerun_is_a_noop(home: FeedPaths) -> None:
    from pipelines import feature_store
    from serving.index import lite
    from serving.index.milvus import IndexConfig, MilvusPostIndex
    from serving.index.replica import HnswReplica
    from serving.nearline import log as nlog
    from serving.nearline.schemas import NEARLINE_EVENTS

    lite.ensure_server(home)  # a running deployment: the erasure uses its server
    events_v0_files = delta_io.data_files(home.table("nearline_events"), version=0)
    events_v1_files = delta_io.data_files(home.table("nearline_events"), version=1)
    post_101_vec = np.array([[1 / 8, 2 / 8, -0.5, 0.0]], np.float32)  # fabricate's v2 vector of post 101

    result = _cli(home, "member", str(MEMBER))
    assert result.exit_code == 0, result.output
    receipts = sorted((home.data / "erasure").glob(f"member-{MEMBER}-*.json"))
    assert len(receipts) == 1
    receipt = json.loads(receipts[0].read_text())
    assert receipt["status"] == "complete", receipt["verification"]
    assert set(receipt["cascade"]["post_ids"]) == MEMBER_POSTS
    assert receipt["totals"]["delta"]["deleted"] > 0
    assert receipt["totals"]["vacuum"]["files"] > 0
    assert receipt["options"]["retention_hours"] == 0

    members, posts = {MEMBER}, set(MEMBER_POSTS)
    # Delta: the current version of every table, and no data file on disk (old versions included)
    for table in lake_table_names(home):
        assert _holds(delta_io.read(home.table(table)), members, posts) == 0, table
    assert _files_holding(home.data, members, posts) == []  # lake, landing, staging, training, Milvus Lite
    with pytest.raises(Exception, match=r"(?i)not found|no such file|does not exist"):
        delta_io.read(home.table("raw_impressions"), version=0)  # time travel to before the erasure is gone
    # other members' rows stay, with the ids cut out of their lists (parallel lists cut alike)
    history = delta_io.read(home.table("member_history")).to_pydict()
    assert set(history["member_id"]) == {2, 3}
    assert all(not set(ids or []) & posts for ids in history["engaged_post_ids"])
    sequence = delta_io.read(home.table("member_sequence")).to_pydict()
    for ids, actions, stamps in zip(
        sequence["post_ids"], sequence["actions"], sequence["timestamps"], strict=True
    ):
        assert 101 not in ids
        assert len(ids) == len(actions) == len(stamps)
    affinity = delta_io.read(home.table("member_affinity")).to_pydict()
    for ids, scores in zip(affinity["top_author_ids"], affinity["top_author_scores"], strict=True):
        assert MEMBER not in ids
        assert len(ids) == len(scores)
    assert sorted(delta_io.read(home.table("raw_members"))["member_id"].to_pylist()) == [2, 3]
    # staging copies lose Spark's checksum (it would no longer match); training sets holding it are deleted
    assert not (home.staging / "member_history" / "run-1" / ".part-00000.parquet.crc").exists()
    assert not (home.data / "training" / "ranking" / "t1").exists()
    assert (home.data / "training" / "retrieval" / "t2").exists()

    # Feast online: the entity reads as nulls; other members' lists no longer hold its posts
    online = feature_store.online_features(
        home,
        ["member_profile:headline", "member_embedding:embedding", "member_history:engaged_post_ids",
         "member_sequence:post_ids", "member_affinity:top_author_ids"],
        [{"member_id": MEMBER}, {"member_id": 2}],
    )  # fmt: skip
    assert online["member_profile__headline"][0] is None
    assert online["member_embedding__embedding"][0] is None
    assert online["member_profile__headline"][1] is not None
    assert not set(online["member_history__engaged_post_ids"][1] or []) & posts
    assert 101 not in (online["member_sequence__post_ids"][1] or [])
    assert MEMBER not in (online["member_affinity__top_author_ids"][1] or [])
    post_online = feature_store.online_features(
        home, ["post_content:text", "post_engagement:views"], [{"post_id": p} for p in (101, 104, 102)]
    )
    assert post_online["post_content__text"] == [None, None, "post 102 #ai"]
    author = feature_store.online_features(home, ["author_stats:followers"], [{"author_id": MEMBER}])
    assert author["author_stats__followers"] == [None]

    # Milvus: no collection holds the posts (query by id, by author), search never returns them
    expr = f"post_id in {sorted(posts)} or author_id == {MEMBER}"
    assert all(rows == [] for rows in _milvus_rows(home, expr).values())
    assert set(_milvus_rows(home, "post_id > 0")) == {"posts_v1_r2", "posts_v2_r2"}
    index = MilvusPostIndex.open(IndexConfig(index_type="FLAT"), home)
    found = index.search(post_101_vec, k=10)[0].post_ids.tolist()
    assert found
    assert not set(found) & posts
    assert index.model_version == "v2"
    # the saved replica was rebuilt without them
    replica = HnswReplica.load(home.data / "replica" / "v2")
    assert not set(replica._slot_post.tolist()) & posts
    assert not set(replica.search(post_101_vec, k=10)[0].post_ids.tolist()) & posts

    # nearline logs: consumers skip the erasure commit, and an old commit resolves to the rewritten file
    head = nlog.head_version(home.table("nearline_events"))
    assert nlog.read_commit(home.table("nearline_events"), head, NEARLINE_EVENTS).rows.num_rows == 0
    v0 = {Path(f).name for f in events_v0_files}
    v1 = [Path(f).name for f in events_v1_files if Path(f).name not in v0]
    assert resolve_rewritten(home.table("nearline_events"), sorted(v0)) == []  # e1, e2: all erased
    resolved = resolve_rewritten(home.table("nearline_events"), v1)
    assert resolved != v1
    rows = pa.concat_tables([pq.read_table(home.table("nearline_events") / f) for f in resolved])
    assert rows["event_id"].to_pylist() == ["e4"]  # e3 (member 1's profile) erased, e4 (member 3) kept

    # a rerun finds nothing: no commit, no receipt, nothing touched
    before, versions = _digest(home), _versions(home)
    again = _cli(home, "member", str(MEMBER))
    assert again.exit_code == 0, again.output
    assert "already erased" in again.output
    assert _versions(home) == versions
    assert len(list((home.data / "erasure").glob("*.json"))) == 1
    assert {k: v for k, v in _digest(home).items() if not k.startswith("milvus/")} == {
        k: v for k, v in before.items() if not k.startswith("milvus/")
    }


def lake_table_names(paths: FeedPaths) -> list[str]:
    return sorted(p.parent.name for p in paths.lake.glob("*/_delta_log"))


@pytest.mark.integration
@pytest.mark.slow
def test_post_erasure_with_a_retention_then_finished_by_a_rerun(home: FeedPaths) -> None:
    posts = {POST}
    first = erase(home, "post", POST, EraseOptions(retention_hours=24))
    assert first.status == "pending_vacuum", first.verification
    assert first.verification["old_delta_files"]  # the removed files stay for the retention
    for table in lake_table_names(home):
        assert _holds(delta_io.read(home.table(table)), set(), posts) == 0, table
    # the post's author and other members stay; the member prompt quoting the post is gone
    assert sorted(delta_io.read(home.table("raw_members"))["member_id"].to_pylist()) == [1, 2, 3]
    prompts = delta_io.read(home.table("nearline_prompts"))
    members = pc.equal(prompts["kind"], "member")
    assert sorted(prompts.filter(members)["entity_id"].to_pylist()) == [1, 3]
    assert not (home.data / "training" / "retrieval" / "t2").exists()

    second = erase(home, "post", POST)  # retention 0: the old files go now
    assert second.status == "complete", second.verification
    assert _files_holding(home.data, set(), posts) == []
    assert erase(home, "post", POST).status == "noop"
    assert len(list((home.data / "erasure").glob(f"post-{POST}-*.json"))) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_a_failed_step_is_reported_and_a_rerun_finishes(
    home: FeedPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines import erase as erase_mod

    def broken(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("apply"):
            raise RuntimeError("online store unavailable")
        return real(*args, **kwargs)

    real = erase_mod.scrub_feast_online
    monkeypatch.setattr(erase_mod, "scrub_feast_online", broken)
    result = _cli(home, "post", "102")
    assert result.exit_code == 1, result.output
    assert "online store unavailable" in result.output
    (receipt,) = (home.data / "erasure").glob("post-102-*.json")
    partial = json.loads(receipt.read_text())
    assert partial["status"] == "partial"
    assert partial["verification"]["feast_online"]  # still held there, and the receipt says so
    assert partial["totals"]["delta"]["deleted"] > 0  # what was done is recorded

    monkeypatch.setattr(erase_mod, "scrub_feast_online", real)
    done = _cli(home, "post", "102", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["status"] == "complete"


@pytest.mark.integration
@pytest.mark.slow
def test_redis_online_store_keys_are_deleted(home: FeedPaths, fabricate: Any, redis_server: str) -> None:
    from pipelines import feature_store

    feature_store.apply(home, "redis", redis_connection=redis_server)
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    feature_store.materialize_incremental(home, end, "redis", redis_connection=redis_server)
    refs = ["member_profile:headline", "member_history:engaged_post_ids"]
    rows = [{"member_id": MEMBER}, {"member_id": 2}]
    before = feature_store.online_features(home, refs, rows, "redis", redis_connection=redis_server)
    assert before["member_profile__headline"][0] is not None

    options = EraseOptions(feast_variant="redis", redis_connection=redis_server, start_milvus=False)
    result = erase(home, "member", MEMBER, options)
    assert not [s for s in result.steps if s.error and s.store == "feast_online"]
    after = feature_store.online_features(home, refs, rows, "redis", redis_connection=redis_server)
    assert after["member_profile__headline"] == [None, before["member_profile__headline"][1]]
    assert not set(after["member_history__engaged_post_ids"][1] or []) & MEMBER_POSTS
    assert result.verification["feast_online"] == {}


@pytest.mark.integration
@pytest.mark.slow
def test_the_next_feed_never_shows_an_erased_post_or_member(served_home: FeedPaths, tmp_path: Path) -> None:
    """Through the service: feeds before, erase the most served post and the author of another served post,
    feeds again (a fresh service, as after a deploy) — neither the post nor anything by the member comes
    back, and the impressions the first service logged to landing were scrubbed too."""
    from collections import Counter

    from serving.index import lite
    from serving.pipeline import FeedService
    from serving.schemas import FeedRequest
    from serving.settings import ServingSettings

    paths = FeedPaths(home=tmp_path / "served")
    # server.json stays behind: the copy must get its own Lite server, never the session's
    shutil.copytree(served_home.home, paths.home, ignore=shutil.ignore_patterns("server.json"))
    lite.ensure_server(paths)
    try:
        settings = ServingSettings(home=paths.home, impression_flush_s=0.5, erasure_poll_s=0.1)
        history = delta_io.read(paths.table("member_history"), columns=["member_id"])
        members = sorted(set(history["member_id"].to_pylist()))[:12]

        def feeds() -> dict[int, list[tuple[int, int]]]:
            with FeedService.open(settings) as svc:
                return {
                    m: [(i.post_id, i.author_id) for i in svc.feed(FeedRequest(member_id=m, k=30)).items]
                    for m in members
                }

        before = feeds()
        served = Counter(p for items in before.values() for p, _ in items)
        post = served.most_common(1)[0][0]
        authors = Counter(a for items in before.values() for p, a in items if p != post)
        author = next(a for a, _ in authors.most_common() if a not in members)
        assert list(paths.landing.glob("served-*/raw_impressions.parquet"))  # the service logged them

        running = FeedService(settings)  # a service that stays up across the erasures (caches warm)
        try:
            assert post in {
                i.post_id for m in members for i in running.feed(FeedRequest(member_id=m, k=30)).items
            }
            assert erase(paths, "post", post).status == "complete"
            erased_member = erase(paths, "member", author)
            assert erased_member.status == "complete", erased_member.verification
            authored = set(erased_member.cascade["post_ids"])
            assert authored
            deadline = time.monotonic() + 10
            while (post not in running.erasures.posts or author not in running.erasures.members) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.1)  # the receipt watch polls every 0.1 s here
            live = [running.feed(FeedRequest(member_id=m, k=30)).items for m in members]
        finally:
            running.close()
        assert all(live)
        assert post not in {i.post_id for items in live for i in items}
        assert not {i.post_id for items in live for i in items} & authored
        assert author not in {i.author_id for items in live for i in items}

        after = feeds()
        assert all(after.values())  # still a feed for everyone
        shown = {p for items in after.values() for p, _ in items}
        assert post not in shown
        assert not shown & authored
        assert author not in {a for items in after.values() for _, a in items}
        assert _files_holding(paths.landing, {author}, {post, *authored}) == []
    finally:
        lite.stop_server(paths)
