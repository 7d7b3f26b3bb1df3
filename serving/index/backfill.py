"""Full backfill: ``post_embeddings`` (one version) ⋈ ``raw_posts`` → a new Milvus collection → alias swap.

Order of work, and why:

1. read and clean the snapshot (:func:`serving.index.replica.load_post_snapshot`: deleted posts — those no
   longer in ``raw_posts`` — and unusable vectors are skipped and counted by reason);
2. check the index type against the server *before* creating anything (Milvus Lite accepts GPU_CAGRA and fails
   later, in the background);
3. create a NEW collection (``posts_<version>``; ``posts_<version>_r<n>`` when that name is the one being
   served), insert in batches, flush (Milvus Lite searches unflushed rows by brute force in Python: ≈1 s a
   query at 20k rows, vs ≈20 ms flushed + HNSW), build the index and wait for it, load, verify the row count;
4. only then point the alias ``posts`` at it — one ``alter_alias`` call, so readers switch from one complete
   index to the other. The previous collection is kept for rollback (``feed index use <collection>``).

A crash anywhere before step 4 leaves the alias on the old collection; the half-built one is not served and
the next backfill of that version drops it (an unaliased ``posts_<version>*`` collection is never served).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from serving.index.base import IndexConfigError, ModelVersionMismatchError
from serving.index.milvus import (
    IndexConfig,
    MilvusPostIndex,
    _call,
    alias_target,
    check_index_type,
    collection_name,
    connect,
    create_posts_collection,
    create_vector_index,
    describe_posts,
    point_alias,
    posts_collections,
    resolve_uri,
)
from serving.index.replica import load_post_snapshot

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from feed.config import FeedPaths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillResult:
    collection: str
    alias: str
    model_version: str
    rows: int
    dim: int
    index_type: str
    previous: str | None  # what the alias pointed to before (kept for rollback)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # read, insert, flush, index, load, total

    @property
    def insert_rows_per_s(self) -> float:
        s = self.seconds.get("insert", 0.0)
        return self.rows / s if s > 0 else float("nan")


def current_model_version(paths: FeedPaths) -> str:
    """The promoted retrieval model version (``artifacts/retrieval/CURRENT``)."""
    from training.retrieval.export import model_dir

    return model_dir(paths, None).name


def target_collection(client: MilvusClient, model_version: str, alias: str) -> str:
    """Name for the new collection: ``posts_<version>`` unless an alias serves that name, then the first
    ``posts_<version>_r<n>`` that is not served. An unserved leftover of the chosen name is dropped."""
    served = {alias_target(client, alias)}
    base = collection_name(model_version)
    name, n = base, 1
    while name in served:
        n += 1
        name = f"{base}_r{n}"
    if _call("has_collection", client.has_collection, name):
        if _call("list_aliases", client.list_aliases, name).get("aliases"):
            raise IndexConfigError(f"collection {name!r} is served by another alias; not overwriting it")
        log.info("dropping unserved leftover collection %s", name)
        _call("drop_collection", client.drop_collection, name)
    return name


def backfill(
    paths: FeedPaths,
    config: IndexConfig | None = None,
    *,
    model_version: str | None = None,
    allow_non_current: bool = False,
    start_server: bool = True,
) -> BackfillResult:
    """Build ``posts_<model_version>`` from the Delta tables and swap the serving alias to it.

    ``model_version`` None = the promoted one. Rule for a model-version mismatch: the alias must serve the
    encoder's promoted version, so a backfill of another version is refused unless ``allow_non_current``
    (a deliberate rollback).
    """
    config = config or IndexConfig()
    t0 = time.perf_counter()
    secs: dict[str, float] = {}
    current = None
    try:
        current = current_model_version(paths)
    except ValueError:
        if model_version is None:
            raise
    version = model_version or current
    assert version is not None
    if current is not None and version != current and not allow_non_current:
        raise ModelVersionMismatchError(
            f"model version {version!r} is not the promoted encoder ({current!r}): queries would be encoded "
            "by the promoted encoder into another space. Promote it first, or pass --allow-non-current for a "
            "deliberate rollback"
        )
    client = connect(
        resolve_uri(config, paths, start=start_server), token=config.token, timeout_s=config.timeout_s
    )
    check_index_type(client, config.index_type)  # before reading gigabytes or creating anything

    ids, vecs, meta, skipped = load_post_snapshot(paths, version)
    secs["read"] = time.perf_counter() - t0
    dim = int(vecs.shape[1])
    name = target_collection(client, version, config.alias)
    create_posts_collection(client, name, version, dim, config)
    index = MilvusPostIndex(client, name, config)

    t = time.perf_counter()
    inserted = index.insert(ids, vecs, meta)
    secs["insert"] = time.perf_counter() - t
    t = time.perf_counter()
    _call("flush", client.flush, name)
    secs["flush"] = time.perf_counter() - t
    t = time.perf_counter()
    create_vector_index(client, name, config)
    secs["index"] = time.perf_counter() - t
    t = time.perf_counter()
    _call("load_collection", client.load_collection, name)
    secs["load"] = time.perf_counter() - t
    stored = len(index)
    if stored != len(ids) or inserted != len(ids):
        raise IndexConfigError(
            f"{name}: {len(ids)} posts to index but {inserted} inserted / {stored} stored; alias not moved"
        )
    previous = point_alias(client, config.alias, name)
    secs["total"] = time.perf_counter() - t0
    result = BackfillResult(
        collection=name,
        alias=config.alias,
        model_version=version,
        rows=stored,
        dim=dim,
        index_type=config.index_type,
        previous=previous,
        skipped=skipped,
        seconds={k: round(v, 3) for k, v in secs.items()},
    )
    log.info("backfill %s: %d rows, alias %s → %s (was %s)", version, stored, config.alias, name, previous)
    return result


def use_collection(client: MilvusClient, collection: str, alias: str = "posts") -> str | None:
    """Point the alias at an existing posts collection (rollback); returns the previous target."""
    describe_posts(client, collection)  # refuses anything that is not a posts collection
    _call("load_collection", client.load_collection, collection)
    return point_alias(client, alias, collection)


def index_status(client: MilvusClient, alias: str = "posts") -> dict:
    """Alias target and every posts collection with its model version, rows and index."""
    target = alias_target(client, alias)
    cols = []
    for name in posts_collections(client):
        info = describe_posts(client, name)
        rows = _call("count", client.query, name, filter="", output_fields=["count(*)"])
        idx = _call("list_indexes", client.list_indexes, name)
        index_type = (
            _call("describe_index", client.describe_index, name, idx[0]).get("index_type") if idx else None
        )
        cols.append(
            {
                "collection": name,
                **info,
                "rows": int(rows[0]["count(*)"]),
                "index_type": index_type,
                "served": name == target,
            }
        )
    return {
        "server_version": str(client.get_server_version()),
        "alias": alias,
        "target": target,
        "collections": cols,
    }
