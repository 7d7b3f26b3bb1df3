"""``feed index backfill|search|status|use|server``: the Milvus post index and its local server.

The embedded default is a Milvus Lite server process per home (``feed index server start``; ``backfill``
starts one when none runs). ``--uri`` points every command at a Milvus cluster instead.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from feed.config import FeedPaths
    from serving.index.milvus import IndexConfig

UriOpt = Annotated[
    str | None, typer.Option(help="Milvus URI (a cluster) [default: this home's Milvus Lite server]")
]
TokenOpt = Annotated[str, typer.Option(help="Milvus token (user:password or API key) for a cluster")]
IndexTypeOpt = Annotated[
    str,
    typer.Option(help="FLAT | IVF_FLAT | IVF_SQ8 | HNSW | HNSW_SQ | AUTOINDEX; GPU_CAGRA on a GPU cluster"),
]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", help="Index build parameter KEY=VALUE (repeatable), e.g. M=32")
]
VersionOpt = Annotated[
    str | None, typer.Option(help="Model version [default: the promoted one, artifacts/retrieval/CURRENT]")
]

server_app = typer.Typer(help="The local Milvus Lite server process of this home.", no_args_is_help=True)


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    print(f"error: {exc}")
    return typer.Exit(code=code)


def _parse_params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param must be KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _config(
    uri: str | None, token: str = "", index_type: str = "HNSW", params: list[str] | None = None
) -> IndexConfig:
    from serving.index.milvus import IndexConfig

    return IndexConfig(uri=uri, token=token, index_type=index_type, params=_parse_params(params))


def backfill(
    ctx: typer.Context,
    version: VersionOpt = None,
    uri: UriOpt = None,
    token: TokenOpt = "",
    index_type: IndexTypeOpt = "HNSW",
    param: ParamOpt = None,
    allow_non_current: Annotated[
        bool, typer.Option(help="Allow a version other than the promoted one (a deliberate rollback)")
    ] = False,
) -> None:
    """post_embeddings ⋈ raw_posts → new collection posts_<version> → index → load → swap alias `posts`."""
    import logging

    from serving.index.backfill import backfill as run_backfill
    from serving.index.lite import LiteServerError
    from serving.index.milvus import IndexBuildError, MilvusUnavailableError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    paths = ctx.obj.paths()
    try:
        cfg = _config(uri, token, index_type, param)
        result = run_backfill(paths, cfg, model_version=version, allow_non_current=allow_non_current)
    except (ValueError, MilvusUnavailableError, LiteServerError, IndexBuildError) as exc:
        raise _fail(exc) from exc
    skipped = ", ".join(f"{k}={v:,}" for k, v in result.skipped.items()) or "none"
    print(
        f"{result.collection}: {result.rows:,} posts × {result.dim} ({result.index_type}, model "
        f"{result.model_version}); alias {result.alias} → {result.collection} (was {result.previous})"
    )
    print(f"skipped: {skipped}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"{stages}; insert {result.insert_rows_per_s:,.0f} rows/s")


def _member_vector(paths: FeedPaths, member_id: int, version: str) -> Any:
    import numpy as np
    import pyarrow.compute as pc

    from pipelines import delta_io

    table = paths.table("member_embeddings")
    if not delta_io.exists(table):
        raise ValueError(f"no member_embeddings table at {table}; run `feed embed members` first")
    rows = delta_io.read(
        table,
        columns=["embedding"],
        filter=(pc.field("member_id") == member_id) & (pc.field("model_version") == version),
    )
    if not rows.num_rows:
        raise ValueError(f"member {member_id} has no {version} embedding in member_embeddings")
    return np.asarray(rows["embedding"][0].as_py(), dtype=np.float32)


def seen_post_ids(paths: FeedPaths, member_id: int) -> frozenset[int]:
    """Posts the member was already shown (raw_impressions): the "exclude already-seen" filter."""
    import pyarrow.compute as pc

    from pipelines import delta_io

    table = paths.table("raw_impressions")
    if not delta_io.exists(table):
        return frozenset()
    rows = delta_io.read(table, columns=["post_id"], filter=pc.field("member_id") == member_id)
    return frozenset(rows["post_id"].to_pylist())


def member_top_posts(
    paths: FeedPaths,
    index: Any,
    member_id: int,
    k: int = 10,
    *,
    include_own: bool = False,
    exclude_seen: bool = True,
    recent_days: int | None = None,
    formats: list[str] | None = None,
    exclude_posts: list[int] | None = None,
) -> tuple[Any, Any]:
    """A member's top-k posts from ``index`` (any PostIndex) with the serving filters; returns (the
    SearchResult, a pandas frame of raw_posts rows in rank order with a ``score`` column). The member's query
    vector is their member_embeddings row of the index's model version; ``recent_days`` counts back from the
    newest post. Used by ``feed index search`` and the demo."""
    from serving.index.base import SearchFilter

    query = _member_vector(paths, member_id, index.model_version)
    posts = _posts(paths)
    created_after = None
    if recent_days is not None:
        created_after = int(posts["created_at"].max()) - recent_days * 86400
    excluded = set(exclude_posts or [])
    if exclude_seen:
        excluded |= seen_post_ids(paths, member_id)
    flt = SearchFilter(
        exclude_post_ids=frozenset(excluded),
        exclude_author_id=None if include_own else member_id,
        created_after=created_after,
        formats=frozenset(formats) if formats else None,
    )
    (result,) = index.search(query, k, flt)
    by_id = posts.set_index("post_id")
    ranked = by_id.reindex(result.post_ids.tolist())
    ranked["score"] = result.scores
    return result, ranked.reset_index()


def search(
    ctx: typer.Context,
    member_id: Annotated[int, typer.Option(help="Retrieve for this member (their member_embeddings row)")],
    k: Annotated[int, typer.Option(help="How many posts", min=1)] = 10,
    uri: UriOpt = None,
    token: TokenOpt = "",
    include_own: Annotated[bool, typer.Option(help="Keep the member's own posts")] = False,
    exclude_seen: Annotated[
        bool, typer.Option(help="Drop posts the member was already shown (raw_impressions)")
    ] = True,
    recent_days: Annotated[
        int | None, typer.Option(help="Only posts created in the N days before the newest post", min=1)
    ] = None,
    format: Annotated[
        list[str] | None, typer.Option(help="Allowed post format (repeatable) [default: all]")
    ] = None,
    exclude_post: Annotated[list[int] | None, typer.Option(help="Post id to exclude (repeatable)")] = None,
    replica: Annotated[
        bool, typer.Option(help="Search the in-process FAISS HNSW replica built from Delta instead of Milvus")
    ] = False,
) -> None:
    """A member's top-k posts from the served index, with the serving filters."""
    from serving.index.backfill import current_model_version
    from serving.index.milvus import MilvusPostIndex, MilvusUnavailableError

    paths = ctx.obj.paths()
    try:
        if replica:
            from serving.index.replica import HnswReplica

            index: Any = HnswReplica.from_delta(paths, current_model_version(paths))
        else:
            try:
                expect = current_model_version(paths)
            except ValueError:
                expect = None
            index = MilvusPostIndex.open(_config(uri, token), paths, expect_model_version=expect)
        _, ranked = member_top_posts(
            paths,
            index,
            member_id,
            k,
            include_own=include_own,
            exclude_seen=exclude_seen,
            recent_days=recent_days,
            formats=format,
            exclude_posts=exclude_post,
        )
    except (ValueError, MilvusUnavailableError) as exc:
        raise _fail(exc) from exc
    print(
        f"member {member_id}: top-{k} of {len(index):,} posts ({type(index).__name__}, {index.model_version})"
    )
    for rank, row in enumerate(ranked.itertuples(index=False), start=1):
        text = str(row.text or row.article_title or "")[:70].replace("\n", " ")
        print(
            f"{rank:>3}. post {row.post_id:<8} {row.score:.3f}  author {row.author_id} {row.format:<8} {text}"
        )


def _posts(paths: FeedPaths) -> Any:
    """raw_posts with ``created_at`` as epoch seconds (sub-second parts truncated, as in the index)."""
    import pyarrow as pa

    from pipelines import delta_io
    from serving.index.replica import epoch_seconds

    raw = delta_io.read(
        paths.table("raw_posts"),
        columns=["post_id", "author_id", "format", "text", "article_title", "created_at"],
    )
    secs = pa.array(epoch_seconds(raw["created_at"]), type=pa.int64())
    return raw.set_column(raw.schema.get_field_index("created_at"), "created_at", secs).to_pandas()


def status(ctx: typer.Context, uri: UriOpt = None, token: TokenOpt = "") -> None:
    """Server, alias target and every posts collection (model version, rows, index type)."""
    from serving.index import lite
    from serving.index.backfill import index_status
    from serving.index.milvus import MilvusUnavailableError, connect, resolve_uri

    paths = ctx.obj.paths()
    cfg = _config(uri, token)
    if cfg.uri is None:
        server = lite.running_server(paths)
        where = f"pid {server.pid} at {server.uri}" if server else "not running"
        print(f"local Milvus Lite server: {where}")
    try:
        info = index_status(connect(resolve_uri(cfg, paths), token=token))
    except (ValueError, MilvusUnavailableError) as exc:
        raise _fail(exc) from exc
    print(f"server {info['server_version']}; alias {info['alias']} → {info['target']}")
    for c in info["collections"]:
        mark = "*" if c["served"] else " "
        print(
            f" {mark} {c['collection']:<28} model {c['model_version']:<20} {c['rows']:>10,} rows  "
            f"dim {c['dim']}  {c['index_type']}"
        )


def use(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="An existing posts_* collection")],
    uri: UriOpt = None,
    token: TokenOpt = "",
) -> None:
    """Point the alias `posts` at an existing collection (rollback to a previous build)."""
    from serving.index.backfill import use_collection
    from serving.index.milvus import MilvusUnavailableError, connect, resolve_uri

    paths = ctx.obj.paths()
    try:
        cfg = _config(uri, token)
        client = connect(resolve_uri(cfg, paths), token=token)
        if not client.has_collection(collection):
            raise ValueError(f"no collection {collection!r}")
        previous = use_collection(client, collection, cfg.alias)
    except (ValueError, MilvusUnavailableError) as exc:
        raise _fail(exc) from exc
    print(f"alias {cfg.alias} → {collection} (was {previous})")


@server_app.command("start")
def server_start(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Port [default: 19530 when free, else any free port]")
    ] = None,
) -> None:
    """Start this home's Milvus Lite server in the background (no-op when it already runs)."""
    from serving.index import lite

    paths = ctx.obj.paths()
    try:
        server = lite.ensure_server(paths, port=port)
    except lite.LiteServerError as exc:
        raise _fail(exc) from exc
    print(
        f"Milvus Lite server pid {server.pid} at {server.uri} (data {server.data_dir}, log {server.log_file})"
    )


@server_app.command("stop")
def server_stop(ctx: typer.Context) -> None:
    """Stop this home's Milvus Lite server."""
    from serving.index import lite

    server = lite.stop_server(ctx.obj.paths())
    print("no server recorded" if server is None else f"stopped pid {server.pid} ({server.uri})")


@server_app.command("status")
def server_status(ctx: typer.Context) -> None:
    """Is this home's Milvus Lite server running?"""
    from serving.index import lite

    paths = ctx.obj.paths()
    server = lite.running_server(paths)
    if server is None:
        print("not running")
        raise typer.Exit(code=1)
    print(f"running: pid {server.pid} at {server.uri} (data {server.data_dir})")
