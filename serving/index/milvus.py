"""Milvus as the system of record for post embeddings: collections, the serving alias, filtered search.

One collection per model version, ``posts_<model_version>`` (``.``/``-`` become ``_``; the exact version is
stored in every row and as a collection property), and the alias ``posts`` that readers use. A backfill
builds a new collection completely (insert → index → load) and then moves the alias in one call, so a reader
never sees a half-built index; the previous collection stays for rollback (``feed index use``).

The same code talks to the embedded Milvus Lite server (:mod:`serving.index.lite`) and to a Milvus cluster;
the differences are which index types the server can build — Milvus Lite builds FLAT, IVF_FLAT, IVF_SQ8,
HNSW, HNSW_SQ and AUTOINDEX and *accepts* GPU_CAGRA, DISKANN, SCANN, IVF_PQ at create time only to fail in
the background (STACK.md), so the type is checked against the server before anything is created — and that
on a cluster an index build is asynchronous: :func:`create_vector_index` waits for it and surfaces failure.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.index.base import (
    IndexConfigError,
    IndexInputError,
    ModelVersionMismatchError,
    PostMeta,
    SearchFilter,
    SearchResult,
    check_k,
    normalize_filters,
    normalize_queries,
    validate_ids,
    validate_vectors,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from feed.config import FeedPaths

log = logging.getLogger(__name__)

ALIAS = "posts"
COLLECTION_PREFIX = "posts_"
VECTOR_FIELD = "embedding"
FORMAT_MAX_LEN = 32
MAX_TOPK = 16384  # Milvus' limit on limit (topk)
MODEL_VERSION_MAX_LEN = 128
MODEL_VERSION_PROPERTY = "feed.model_version"  # collection property (Milvus Lite drops descriptions)

# Index types Milvus knows, and the subset Milvus Lite can actually build.
KNOWN_INDEX_TYPES: frozenset[str] = frozenset(
    {
        "FLAT",
        "IVF_FLAT",
        "IVF_SQ8",
        "IVF_PQ",
        "IVF_RABITQ",
        "HNSW",
        "HNSW_SQ",
        "HNSW_PQ",
        "HNSW_PRQ",
        "DISKANN",
        "SCANN",
        "AUTOINDEX",
        "GPU_CAGRA",
        "GPU_IVF_FLAT",
        "GPU_IVF_PQ",
        "GPU_BRUTE_FORCE",
    }
)
LITE_INDEX_TYPES: frozenset[str] = frozenset({"FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "HNSW_SQ", "AUTOINDEX"})
# Build parameters per index type (Milvus' names); search parameters the same way.
DEFAULT_BUILD_PARAMS: dict[str, dict[str, Any]] = {
    "HNSW": {"M": 32, "efConstruction": 200},
    "HNSW_SQ": {"M": 32, "efConstruction": 200, "sq_type": "SQ8"},
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
    "GPU_CAGRA": {"intermediate_graph_degree": 64, "graph_degree": 32},
}
DEFAULT_SEARCH_PARAMS: dict[str, dict[str, Any]] = {
    "HNSW": {"ef": 256},
    "HNSW_SQ": {"ef": 256},
    "IVF_FLAT": {"nprobe": 32},
    "IVF_SQ8": {"nprobe": 32},
    "GPU_CAGRA": {"itopk_size": 128},
}
_FORMAT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # formats go into a boolean expression: plain words only


class MilvusUnavailableError(ConnectionError):
    """The Milvus server cannot be reached (or stopped answering). Callers that must not lose work (the
    nearline index worker) retry with backoff; the message names the URI."""


class IndexBuildError(RuntimeError):
    """The server failed to build the vector index (its failure reason is in the message)."""


@dataclass(frozen=True)
class IndexConfig:
    """Where the index lives and how it is built. ``uri`` None = this home's local Milvus Lite server."""

    uri: str | None = None
    token: str = ""  # "user:password" or an API key on a cluster
    index_type: str = "HNSW"  # on a GPU cluster: GPU_CAGRA
    params: dict[str, Any] = field(default_factory=dict)  # build params; {} = DEFAULT_BUILD_PARAMS[type]
    search_params: dict[str, Any] = field(default_factory=dict)  # {} = DEFAULT_SEARCH_PARAMS[type]
    metric: str = "COSINE"
    alias: str = ALIAS
    timeout_s: float = 30.0  # per RPC
    build_timeout_s: float = 1800.0  # waiting for an asynchronous index build on a cluster
    insert_batch: int = 5000  # rows per insert RPC (≈7.7 MB of 384-d float32 — under the 64 MB gRPC limit)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_type", self.index_type.upper())
        if self.index_type not in KNOWN_INDEX_TYPES:
            raise IndexConfigError(
                f"unknown index type {self.index_type!r}; known: {sorted(KNOWN_INDEX_TYPES)}"
            )
        if self.metric != "COSINE":
            raise IndexConfigError(
                f"metric must be COSINE (scores are cosine similarities), got {self.metric!r}"
            )
        if self.insert_batch < 1 or self.timeout_s <= 0:
            raise IndexConfigError("insert_batch must be >= 1 and timeout_s > 0")

    @property
    def build_params(self) -> dict[str, Any]:
        return self.params or DEFAULT_BUILD_PARAMS.get(self.index_type, {})

    @property
    def query_params(self) -> dict[str, Any]:
        return self.search_params or DEFAULT_SEARCH_PARAMS.get(self.index_type, {})


# --- connection and server capabilities ---------------------------------------------------------------


def resolve_uri(config: IndexConfig, paths: FeedPaths | None = None, *, start: bool = False) -> str:
    """``config.uri``, or this home's Lite server (started when ``start``)."""
    if config.uri:
        return config.uri
    if paths is None:
        raise IndexConfigError("no Milvus uri configured and no feed home to find a local Milvus Lite server")
    from serving.index import lite

    server = lite.ensure_server(paths) if start else lite.running_server(paths)
    if server is None:
        raise MilvusUnavailableError(
            f"no Milvus Lite server running for {paths.home}; start one with `feed index server start` "
            "or pass --uri"
        )
    return server.uri


def connect(uri: str, *, token: str = "", timeout_s: float = 30.0) -> MilvusClient:
    """A client for ``uri``; :class:`MilvusUnavailableError` when nothing answers there."""
    from pymilvus import MilvusClient, MilvusException

    try:
        client = MilvusClient(uri=uri, token=token, timeout=timeout_s)
        client.get_server_version()
    except MilvusException as exc:
        raise MilvusUnavailableError(f"Milvus unreachable at {uri}: {exc.message}") from exc
    return client


def is_lite(client: MilvusClient) -> bool:
    """Milvus Lite reports its version as ``milvus_lite-<x.y.z>``."""
    return "lite" in str(client.get_server_version()).lower()


def check_index_type(client: MilvusClient, index_type: str) -> None:
    """Raise :class:`IndexConfigError` when the server cannot build ``index_type``."""
    index_type = index_type.upper()
    if index_type not in KNOWN_INDEX_TYPES:
        raise IndexConfigError(f"unknown index type {index_type!r}; known: {sorted(KNOWN_INDEX_TYPES)}")
    if is_lite(client) and index_type not in LITE_INDEX_TYPES:
        raise IndexConfigError(
            f"index type {index_type} cannot be built by Milvus Lite ({client.get_server_version()}): it "
            f"accepts it and then fails in the background. Lite builds {sorted(LITE_INDEX_TYPES)}; use "
            f"{index_type} on a Milvus cluster (--uri) with the hardware it needs"
        )


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one RPC, turning connection failures into :class:`MilvusUnavailableError`."""
    from pymilvus import MilvusException

    try:
        return fn(*args, **kwargs)
    except MilvusException as exc:
        text = str(exc).lower()
        if any(s in text for s in ("unavailable", "connect", "deadline", "fail connecting", "closed")):
            raise MilvusUnavailableError(f"Milvus unreachable during {what}: {exc.message}") from exc
        raise


# --- names, schema, aliases ---------------------------------------------------------------------------


def collection_name(model_version: str, suffix: str = "") -> str:
    """``posts_<model_version>`` with characters Milvus names reject (``.``, ``-``) turned into ``_``."""
    from training.retrieval.embed import check_model_version

    check_model_version(model_version)
    return COLLECTION_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", model_version) + suffix


def post_schema(dim: int) -> Any:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("post_id", DataType.INT64, is_primary=True)
    schema.add_field("author_id", DataType.INT64)
    schema.add_field("created_at", DataType.INT64)  # epoch seconds (recency filter)
    schema.add_field("format", DataType.VARCHAR, max_length=FORMAT_MAX_LEN)
    schema.add_field("model_version", DataType.VARCHAR, max_length=MODEL_VERSION_MAX_LEN)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    return schema


def describe_posts(client: MilvusClient, name: str) -> dict[str, Any]:
    """{"model_version", "dim"} of a posts collection: the version from the collection property
    :data:`MODEL_VERSION_PROPERTY`, the dimension from the vector field."""
    desc = _call("describe_collection", client.describe_collection, name)
    version = (desc.get("properties") or {}).get(MODEL_VERSION_PROPERTY)
    dims = [f.get("params", {}).get("dim") for f in desc.get("fields", []) if f.get("name") == VECTOR_FIELD]
    if not version or not dims:
        raise IndexConfigError(
            f"collection {name!r} is not a feed posts collection (no {MODEL_VERSION_PROPERTY!r} property "
            f"or no {VECTOR_FIELD!r} field)"
        )
    return {"model_version": version, "dim": int(dims[0])}


def alias_target(client: MilvusClient, alias: str = ALIAS) -> str | None:
    """The collection ``alias`` points to, or None when no alias of that name exists."""
    if not _call("has_collection", client.has_collection, alias):
        return None
    target = _call("describe_collection", client.describe_collection, alias).get("collection_name")
    return None if target in (None, "", alias) else target


def point_alias(client: MilvusClient, alias: str, collection: str) -> str | None:
    """Point ``alias`` at ``collection`` in one server call (create or alter); returns the previous target."""
    previous = alias_target(client, alias)
    if previous is None:
        _call("create_alias", client.create_alias, collection, alias)
    elif previous != collection:
        _call("alter_alias", client.alter_alias, collection, alias)
    return previous


def posts_collections(client: MilvusClient) -> list[str]:
    return sorted(
        c for c in _call("list_collections", client.list_collections) if c.startswith(COLLECTION_PREFIX)
    )


def collection_for(client: MilvusClient, model_version: str, alias: str = ALIAS) -> str | None:
    """Where writers of ``model_version`` upsert: the served collection when it holds that version, else the
    newest ``posts_<version>[_r<n>]`` (a backfill in progress or a version not yet served); None = none."""
    target = alias_target(client, alias)
    if target is not None and describe_posts(client, target)["model_version"] == model_version:
        return target
    base = collection_name(model_version)
    names = [c for c in posts_collections(client) if c == base or re.fullmatch(re.escape(base) + r"_r\d+", c)]
    if not names:
        return None
    return max(names, key=lambda c: int(c.rsplit("_r", 1)[1]) if c != base else 1)


def _create_index_once(client: MilvusClient, name: str, params: Any, config: IndexConfig) -> None:
    """``create_index``, tolerant of its own retry: a long build (minutes at 1M rows) can outlive the gRPC
    connection (Milvus Lite answers pymilvus' keep-alive pings with GOAWAY too_many_pings), pymilvus then
    re-sends the call, and the server — already building the first request — answers "index already exists".
    That index is ours when it has the requested type; any other existing index is an error."""
    from pymilvus import MilvusException

    try:
        _call("create_index", client.create_index, name, params)
    except MilvusException as exc:
        if "already exists" not in str(exc).lower():
            raise
        info = _call("describe_index", client.describe_index, name, VECTOR_FIELD)
        if str(info.get("index_type", "")).upper() != config.index_type.upper():
            raise IndexBuildError(
                f"{name} already has a {info.get('index_type')} index on {VECTOR_FIELD}; drop it before "
                f"building {config.index_type}"
            ) from exc
        log.warning("create_index on %s was re-sent after the server took it; waiting for that build", name)


def create_vector_index(client: MilvusClient, name: str, config: IndexConfig) -> None:
    """Build the configured vector index on ``name`` and wait until the server reports it built."""
    check_index_type(client, config.index_type)
    params = client.prepare_index_params()
    params.add_index(
        VECTOR_FIELD, index_type=config.index_type, metric_type=config.metric, params=config.build_params
    )
    _create_index_once(client, name, params, config)
    deadline = time.monotonic() + config.build_timeout_s
    while True:
        info = _call("describe_index", client.describe_index, name, VECTOR_FIELD)
        state = str(info.get("state", "Finished"))
        if state.endswith("Failed"):
            raise IndexBuildError(
                f"{config.index_type} index build on {name} failed: {info.get('fail_reason')}"
            )
        if state.endswith("Finished") and not info.get("pending_index_rows"):
            return
        if time.monotonic() > deadline:
            raise IndexBuildError(
                f"{config.index_type} index on {name} not built after {config.build_timeout_s:.0f} s ({info})"
            )
        time.sleep(1.0)


def create_posts_collection(
    client: MilvusClient, name: str, model_version: str, dim: int, config: IndexConfig
) -> None:
    """A new, empty posts collection (no index yet: bulk inserts first, index after — faster on a cluster)."""
    check_index_type(client, config.index_type)  # fail before creating anything
    if _call("has_collection", client.has_collection, name):
        raise IndexConfigError(f"collection {name!r} already exists")
    _call(
        "create_collection",
        client.create_collection,
        name,
        schema=post_schema(dim),
        properties={MODEL_VERSION_PROPERTY: model_version},
        consistency_level="Strong",  # a freshly upserted post is searchable on the next query
    )


# --- the index ------------------------------------------------------------------------------------------


def filter_expression(f: SearchFilter | None) -> str:
    """A Milvus boolean expression for ``f`` ("" = no filter). Formats must be plain words."""
    if f is None or f.is_empty:
        return ""
    parts = []
    if f.exclude_author_id is not None:
        parts.append(f"author_id != {int(f.exclude_author_id)}")
    if f.created_after is not None:
        parts.append(f"created_at >= {int(f.created_after)}")
    if f.formats is not None:
        bad = sorted(x for x in f.formats if not _FORMAT_RE.match(x))
        if bad:
            raise IndexInputError(f"formats must be plain words ([A-Za-z0-9_-]{{1,32}}), got {bad}")
        parts.append("format in [" + ", ".join(json.dumps(x) for x in sorted(f.formats)) + "]")
    if f.exclude_post_ids:
        parts.append("post_id not in [" + ", ".join(str(i) for i in sorted(f.exclude_post_ids)) + "]")
    return " and ".join(parts)


class MilvusPostIndex:
    """``PostIndex`` over one Milvus collection (or an alias of one)."""

    def __init__(self, client: MilvusClient, name: str, config: IndexConfig | None = None) -> None:
        self.client = client
        self.name = name  # a collection or an alias
        self.config = config or IndexConfig()
        info = describe_posts(client, name)
        self.model_version: str = info["model_version"]
        self.dim: int = int(info["dim"])

    @classmethod
    def open(
        cls,
        config: IndexConfig | None = None,
        paths: FeedPaths | None = None,
        *,
        name: str | None = None,
        expect_model_version: str | None = None,
    ) -> MilvusPostIndex:
        """Connect and open ``name`` (default: the serving alias). ``expect_model_version`` → raise
        :class:`ModelVersionMismatchError` when the index holds another model version's vectors."""
        config = config or IndexConfig()
        client = connect(resolve_uri(config, paths), token=config.token, timeout_s=config.timeout_s)
        name = name or config.alias
        if not _call("has_collection", client.has_collection, name):
            raise IndexConfigError(
                f"no collection or alias {name!r} on {resolve_uri(config, paths)}; run `feed index backfill`"
            )
        index = cls(client, name, config)
        if expect_model_version is not None:
            index.check_model_version(expect_model_version)
        _call("load_collection", client.load_collection, name)
        return index

    def check_model_version(self, model_version: str) -> None:
        if model_version != self.model_version:
            raise ModelVersionMismatchError(
                f"{self.name} holds model version {self.model_version!r} embeddings but the encoder is "
                f"{model_version!r}: query and post vectors would live in different spaces. Rebuild with "
                f"`feed index backfill --version {model_version}` (new collection + alias swap)"
            )

    @property
    def collection(self) -> str:
        """The collection behind ``name`` (resolves the alias)."""
        return alias_target(self.client, self.name) or self.name

    def __len__(self) -> int:
        rows = _call("count", self.client.query, self.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _rows(self, ids: np.ndarray, vecs: np.ndarray, meta: PostMeta) -> Iterator[list[dict[str, Any]]]:
        step = self.config.insert_batch
        for s in range(0, len(ids), step):
            e = min(s + step, len(ids))
            yield [
                {
                    "post_id": int(ids[i]),
                    "author_id": int(meta.author_id[i]),
                    "created_at": int(meta.created_at[i]),
                    "format": str(meta.format[i]),
                    "model_version": self.model_version,
                    VECTOR_FIELD: vecs[i],
                }
                for i in range(s, e)
            ]

    def _check_formats(self, ids: np.ndarray, meta: PostMeta) -> None:
        bad = [i for i, f in enumerate(meta.format) if len(f) > FORMAT_MAX_LEN]
        if bad:
            raise IndexInputError(
                f"format longer than {FORMAT_MAX_LEN} characters for post ids {ids[bad][:10]}"
            )

    def upsert(self, post_ids: np.ndarray, vectors: np.ndarray, meta: PostMeta) -> int:
        """Insert or replace by primary key (idempotent: replaying a batch changes nothing)."""
        return self._write("upsert", post_ids, vectors, meta)

    def insert(self, post_ids: np.ndarray, vectors: np.ndarray, meta: PostMeta) -> int:
        """Plain insert for a fresh collection (backfill): no primary-key lookup per row."""
        return self._write("insert", post_ids, vectors, meta)

    def _write(self, op: str, post_ids: np.ndarray, vectors: np.ndarray, meta: PostMeta) -> int:
        """Validate, then send the rows in batches through ``client.<op>``; returns the rows written."""
        ids, vecs = validate_vectors(post_ids, vectors, self.dim)
        meta = meta.validate(len(ids), ids)
        self._check_formats(ids, meta)
        send = getattr(self.client, op)
        n = 0
        for rows in self._rows(ids, vecs, meta):
            res = _call(op, send, self.name, rows, timeout=self.config.timeout_s)
            n += int(res.get(f"{op}_count", len(rows)))
        return n

    def flush(self) -> None:
        """Seal the rows written so far. Milvus Lite searches unflushed rows by brute force in Python (≈1 s a
        query at 20k unflushed rows vs ≈20 ms flushed + HNSW), so writers flush after each batch."""
        _call("flush", self.client.flush, self.collection)

    def delete(self, post_ids: np.ndarray) -> int:
        """Remove by primary key; returns how many of the ids were present."""
        ids = validate_ids(post_ids)
        if not len(ids):
            return 0
        present = _call("query", self.client.query, self.name, ids=ids.tolist(), output_fields=["post_id"])
        if present:
            _call("delete", self.client.delete, self.name, ids=[r["post_id"] for r in present])
        return len(present)

    def search(
        self, queries: np.ndarray, k: int, filters: Sequence[SearchFilter] | SearchFilter | None = None
    ) -> list[SearchResult]:
        """Cosine top-``k`` per query; queries sharing a filter go to the server as one batch."""
        k = check_k(k)
        if k > MAX_TOPK:
            raise IndexInputError(f"k={k} exceeds Milvus' top-k limit {MAX_TOPK}")
        q = normalize_queries(queries, self.dim)
        per_query = normalize_filters(filters, len(q))
        groups: dict[SearchFilter | None, list[int]] = {}
        for i, f in enumerate(per_query):
            groups.setdefault(f, []).append(i)
        out: list[SearchResult | None] = [None] * len(q)
        params = {"metric_type": self.config.metric, "params": self._search_params(k)}
        for f, rows in groups.items():
            hits = _call(
                "search",
                self.client.search,
                self.name,
                data=[q[i] for i in rows],
                filter=filter_expression(f),
                limit=k,
                output_fields=["post_id"],
                search_params=params,
                anns_field=VECTOR_FIELD,
                timeout=self.config.timeout_s,
            )
            for i, hit in zip(rows, hits, strict=True):
                out[i] = SearchResult(
                    post_ids=np.fromiter((h["post_id"] for h in hit), dtype=np.int64, count=len(hit)),
                    scores=np.fromiter((h["distance"] for h in hit), dtype=np.float32, count=len(hit)),
                )
        return out  # type: ignore[return-value]

    def _search_params(self, k: int) -> dict[str, Any]:
        params = dict(self.config.query_params)
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k)  # HNSW returns at most ef results
        return params
