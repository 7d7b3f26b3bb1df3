"""Fixtures shared by the serving tests: ONE real Milvus Lite server process per test session, and small
post data sets (vectors + metadata, optionally written as the Delta tables a backfill reads)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pytest

from feed.config import FeedPaths
from serving.index.base import PostMeta

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from serving.index.lite import LiteServer

FORMATS = ("text", "article", "image", "video", "poll", "document")
T0 = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp())
_names = itertools.count()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteServer]:
    """A real ``python -m milvus_lite server`` on a free port for the whole session (stopped at the end).
    Yields :class:`serving.index.lite.LiteServer`; connect with ``server.uri``. Tests share it: name your
    collections uniquely (:func:`unique_name`)."""
    from serving.index import lite

    root = tmp_path_factory.mktemp("milvus_lite")
    server = lite.start_server(root / "milvus", run=root / "run", detach=False)
    yield server
    lite.stop_process(server.pid)


@pytest.fixture
def milvus_client(milvus_server: LiteServer) -> Iterator[MilvusClient]:
    """A client of the session server (closed after the test)."""
    from serving.index.milvus import connect

    client = connect(milvus_server.uri)
    yield client
    client.close()


def unique_name(prefix: str = "t") -> str:
    """A model-version-like name no other test in the session uses."""
    return f"{prefix}{next(_names)}"


@dataclass(frozen=True)
class PostSet:
    """Clustered unit vectors with metadata: posts of ``n_clusters`` topics, like real embeddings."""

    post_ids: np.ndarray
    vectors: np.ndarray  # float32 (N, D), unit rows
    meta: PostMeta
    queries: np.ndarray  # float32 (Q, D)


def make_posts(
    n: int = 600, dim: int = 16, n_queries: int = 8, seed: int = 0, n_clusters: int = 12
) -> PostSet:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = centres[rng.integers(0, n_clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.choice(np.arange(1000, 1000 + 10 * n), size=n, replace=False).astype(np.int64)
    meta = PostMeta.of(
        author_id=rng.integers(1, 40, n),
        created_at=T0 + rng.integers(0, 30 * 86400, n),
        format=rng.choice(FORMATS, n, p=[0.4, 0.2, 0.2, 0.15, 0.04, 0.01]),
    )
    q = centres[rng.integers(0, n_clusters, n_queries)] + 0.6 * rng.normal(size=(n_queries, dim))
    return PostSet(ids, x.astype(np.float32), meta, q.astype(np.float32))


@pytest.fixture(scope="session")
def post_set() -> PostSet:
    return make_posts()


def write_post_tables(
    paths: FeedPaths,
    posts: PostSet,
    model_version: str,
    *,
    promote: bool = True,
    drop_from_raw: int = 0,
    overrides: dict[int, list[float] | None] | None = None,
) -> None:
    """Write ``raw_posts`` and ``post_embeddings`` (rows of ``model_version``) as the real Delta tables, and
    (``promote``) make ``model_version`` the promoted retrieval model (artifacts/retrieval/CURRENT). The
    first ``drop_from_raw`` posts are embedded but missing from raw_posts (deleted). ``overrides`` replace
    the embedding of a post id (a bad vector)."""
    import pyarrow as pa

    from pipelines import delta_io
    from pipelines.schemas import EMBEDDING_POST, RAW_POSTS

    n = len(posts.post_ids)
    # real posts carry microseconds; the index keeps whole epoch seconds (truncated)
    created = [
        dt.datetime.fromtimestamp(int(t), tz=dt.UTC) + dt.timedelta(microseconds=(i * 7919) % 1_000_000)
        for i, t in enumerate(posts.meta.created_at)
    ]
    keep = slice(drop_from_raw, n)
    raw = pa.table(
        {
            "post_id": posts.post_ids[keep],
            "author_id": posts.meta.author_id[keep],
            "format": posts.meta.format[keep].astype(str),
            "text": [f"post {i}" for i in posts.post_ids[keep]],
            "article_title": [None] * (n - drop_from_raw),
            "article_domain": [None] * (n - drop_from_raw),
            "created_at": created[keep],
        }
    )
    mode = "overwrite" if delta_io.exists(paths.table("raw_posts")) else "append"
    delta_io.write(paths.table("raw_posts"), raw, schema=RAW_POSTS, mode=mode)
    emb = [v.tolist() for v in posts.vectors]
    for pid, vec in (overrides or {}).items():
        emb[int(np.flatnonzero(posts.post_ids == pid)[0])] = vec
    now = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    table = pa.table(
        {
            "post_id": posts.post_ids,
            "model_version": [model_version] * n,
            "embedding": emb,
            "event_timestamp": [now] * n,
            "created": [now] * n,
        }
    )
    delta_io.write(
        paths.table("post_embeddings"),
        table,
        schema=EMBEDDING_POST,
        mode="overwrite" if delta_io.exists(paths.table("post_embeddings")) else "append",
        predicate=f"model_version = '{model_version}'"
        if delta_io.exists(paths.table("post_embeddings"))
        else None,
    )
    if promote:
        promote_version(paths, model_version)


def promote_version(paths: FeedPaths, model_version: str) -> None:
    """Mark ``model_version`` as the promoted encoder (what ``current_model_version`` reads): a saved version
    folder with its config.json, named in artifacts/retrieval/CURRENT."""
    root = paths.artifacts / "retrieval"
    (root / model_version).mkdir(parents=True, exist_ok=True)
    (root / model_version / "config.json").write_text(json.dumps({"version": model_version}))
    (root / "CURRENT").write_text(model_version)


@pytest.fixture(scope="session")
def serving_data() -> SimpleNamespace:
    """The helpers above for test modules (tests/ is not a package, so they cannot import this file):
    ``make_posts``, ``write_post_tables``, ``promote_version``, ``unique_name``, ``PostSet``, ``T0``."""
    return SimpleNamespace(
        make_posts=make_posts,
        write_post_tables=write_post_tables,
        promote_version=promote_version,
        unique_name=unique_name,
        PostSet=PostSet,
        T0=T0,
        FORMATS=FORMATS,
    )
