"""The workers in-process, one behaviour at a time: what the prompt worker emits for each event kind and
how its state survives a restart, the embed worker's size/deadline micro-batching, and the index worker's
rejection rules and behaviour while Milvus is unreachable."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from pipelines import delta_io
from serving.nearline import log as nlog
from serving.nearline.config import NearlineConfig
from serving.nearline.events import Engagement, EventPublisher, NewPost, ProfileChange
from serving.nearline.schemas import EMBEDDINGS_TABLE, INDEXED_TABLE, NEARLINE_EMBEDDINGS, PROMPTS_TABLE

from .conftest import NearlineHome

POST_TEXT = "Spent the week deep in quantum error correction. #quantumcomputing"


def _new_rows(paths, table: str, before: int) -> list[dict]:
    rows = delta_io.read(paths.table(table)).sort_by("prompted_at").to_pylist()
    return rows[before:]


def test_prompt_worker_reprompts_on_bucket_moves_and_survives_restart(nearline_home: NearlineHome) -> None:
    from serving.nearline.prompts import PromptWorker

    paths = nearline_home.paths
    cfg = NearlineConfig()
    pub = EventPublisher(paths)
    pub.publish([NewPost(900, 1, "text", POST_TEXT)])
    worker = PromptWorker(paths, cfg)
    assert worker.step() == 1
    rows = _new_rows(paths, PROMPTS_TABLE, 0)
    assert sorted((r["kind"], r["entity_id"]) for r in rows) == [("post", 900), ("stats", 900)]
    post = next(r for r in rows if r["kind"] == "post")
    # counts start at 0: bucket 1 against the fabricated cohort (views 2, 12, 22, 32)
    assert "<view_percentile>1</view_percentile>" in post["prompt"]
    assert "quantum error correction" in post["prompt"]

    # one view: views 0 → 1 stays in bucket 1 → fresh stats only; "view" is no engagement → no member prompt
    pub.publish([Engagement(2, 900, "view")])
    worker.step()
    rows = _new_rows(paths, PROMPTS_TABLE, 2)
    assert [(r["kind"], r["entity_id"], r["views"]) for r in rows] == [("stats", 900, 1)]

    # two likes: views 3 > 2 moves the view bucket to 34 → post re-prompted; member 2's history grows
    pub.publish([Engagement(2, 900, "like"), Engagement(2, 900, "like")])
    worker.step()
    rows = {(r["kind"], r["entity_id"]): r for r in _new_rows(paths, PROMPTS_TABLE, 3)}
    assert set(rows) == {("post", 900), ("stats", 900), ("member", 2)}
    assert "<view_percentile>34</view_percentile>" in rows[("post", 900)]["prompt"]
    assert (rows[("stats", 900)]["views"], rows[("stats", 900)]["likes"]) == (3, 2)
    assert (rows[("stats", 900)]["view_percentile"], rows[("stats", 900)]["like_percentile"]) == (34, 1)
    assert "quantum error correction" in rows[("member", 2)]["prompt"]  # the engaged post, in the history

    pub.publish([ProfileChange(3, headline="Quantum Chef at Qubit Kitchen")])
    worker.step()
    rows = _new_rows(paths, PROMPTS_TABLE, 6)
    assert [(r["kind"], r["entity_id"]) for r in rows] == [("member", 3)]
    assert rows[0]["prompt"].startswith("member: Quantum Chef at Qubit Kitchen")

    restarted = PromptWorker(paths, cfg)  # state rebuilt by replaying events up to the committed offset
    assert restarted.offset == worker.offset == 3
    assert restarted.state.post(900).counts == worker.state.post(900).counts
    assert restarted.state.history(2) == worker.state.history(2)
    assert restarted.step() == 0  # nothing new: nothing emitted twice


def _prompts(paths, n: int) -> None:
    from serving.nearline.prompts import PromptWorker

    pub = EventPublisher(paths)
    pub.publish([NewPost(900 + i, 1 + i % 3, "text", f"{POST_TEXT} {i}") for i in range(n)])
    PromptWorker(paths, NearlineConfig()).step()


def test_embed_worker_flushes_by_size_or_deadline(nearline_home: NearlineHome) -> None:
    from serving.nearline.embed import EmbedWorker

    paths = nearline_home.paths
    _prompts(paths, 2)  # 2 post rows + 2 stats rows in one prompts commit
    waiting = EmbedWorker(paths, NearlineConfig(embed_batch_size=8, embed_deadline_s=3600))
    assert waiting.step() == 0  # 4 rows < 8 and the deadline is far: keep buffering
    assert len(waiting.buffer) == 1
    assert not delta_io.exists(paths.table(EMBEDDINGS_TABLE))
    by_size = EmbedWorker(paths, NearlineConfig(embed_batch_size=4, embed_deadline_s=3600))
    assert by_size.step() == 1
    rows = delta_io.read(paths.table(EMBEDDINGS_TABLE)).to_pylist()
    assert sorted((r["kind"], r["entity_id"]) for r in rows) == [
        ("post", 900),
        ("post", 901),
        ("stats", 900),
        ("stats", 901),
    ]
    vecs = np.array([r["embedding"] for r in rows if r["kind"] == "post"], dtype=np.float32)
    assert vecs.shape == (2, nearline_home.dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert all(r["embedding"] is None for r in rows if r["kind"] == "stats")
    # the committed offset makes the slower worker's buffer obsolete: a restart reads nothing new
    assert EmbedWorker(paths, NearlineConfig()).step(drain=True) == 0


def _embedding_rows(versions_dims: list[tuple[int, str, int]]) -> pa.Table:
    now = dt.datetime.now(dt.UTC)
    rng = np.random.default_rng(0)
    rows = []
    for post_id, version, dim in versions_dims:
        vec = rng.standard_normal(dim).astype(np.float32)
        rows.append(
            {
                "prompt_id": f"e{post_id}/post/{post_id}",
                "kind": "post",
                "entity_id": post_id,
                "model_version": version,
                "embedding": (vec / np.linalg.norm(vec)).tolist(),
                "author_id": 1,
                "created_at": now,
                "format": "text",
                "source_event_id": f"e{post_id}",
                "event_time": now,
                "published_at": now,
                "prompted_at": now,
                "prompts_version": 0,
                "embedded_at": now,
            }
        )
    return pa.Table.from_pylist(rows, schema=NEARLINE_EMBEDDINGS)


def test_index_worker_keeps_its_offset_while_milvus_is_unreachable(nearline_home: NearlineHome) -> None:
    from serving.index.lite import free_port
    from serving.nearline.index import IndexWorker, SinkUnavailableError

    paths = nearline_home.paths
    nlog.append(
        paths.table(EMBEDDINGS_TABLE),
        _embedding_rows([(900, nearline_home.model_version, nearline_home.dim)]),
        NEARLINE_EMBEDDINGS,
    )
    cfg = NearlineConfig(
        milvus_uri=f"http://127.0.0.1:{free_port()}",
        retry_attempts=3,
        retry_initial_s=0.01,
        push_to_feast=False,
    )
    worker = IndexWorker(paths, cfg)
    with pytest.raises(SinkUnavailableError, match="3 attempts"):
        worker.step()
    assert worker.offset == -1
    assert nlog.committed_offset(paths.table(INDEXED_TABLE), "feed.nearline.index") == -1
    assert not delta_io.exists(paths.table(INDEXED_TABLE))


def test_index_worker_rejects_unknown_versions_and_bad_vectors(milvus_home: NearlineHome) -> None:
    from serving.nearline.index import IndexWorker

    paths, version, dim = milvus_home.paths, milvus_home.model_version, milvus_home.dim
    rows = _embedding_rows(
        [(900, version, dim), (901, "ghost-v9", dim), (902, version, dim + 1), (903, version, dim)]
    )
    nlog.append(paths.table(EMBEDDINGS_TABLE), rows, NEARLINE_EMBEDDINGS)
    worker = IndexWorker(paths, NearlineConfig(push_to_feast=False))
    assert worker.step() == 1
    outcome = {
        r["entity_id"]: (r["outcome"], r["reason"])
        for r in delta_io.read(paths.table(INDEXED_TABLE)).to_pylist()
    }
    assert outcome[900] == ("indexed", None)
    assert outcome[903] == ("indexed", None)
    assert outcome[901][0] == "rejected"
    assert "no Milvus collection posts_ghost_v9" in outcome[901][1]
    assert outcome[902] == ("rejected", f"embedding has {dim + 1} dims, the collection {dim}")
    assert worker._index(version) is not None
    assert len(worker._index(version)) == 2
    assert worker.offset == 0
