"""`feed features apply|materialize|online|historical`: the Feast store of the current home.

Thin wrappers over ``pipelines.feature_store``; Feast and pandas are imported inside the commands (~5 s).
"""

from __future__ import annotations

from typing import Annotated

import typer

Variant = Annotated[str, typer.Option(help="feature_store.yaml variant: local | redis | spark")]
RedisConnection = Annotated[
    str | None, typer.Option(help="host:port[,password=...] for --variant redis (default: the YAML's)")
]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _parse_time(text: str) -> object:
    """ISO-8601 → aware UTC datetime (a naive time is taken as UTC)."""
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO-8601 time (e.g. 2026-03-01T12:00:00)") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _broadcast(name: str, values: list, n: int) -> list:
    if len(values) == n:
        return values
    if len(values) == 1:
        return values * n
    raise typer.BadParameter(f"give one --{name} or as many as --member-id ({n}); got {len(values)}")


def apply(ctx: typer.Context, variant: Variant = "local", redis_connection: RedisConnection = None) -> None:
    """Register the feature repo's definitions for this home (idempotent)."""
    from pipelines import feature_store

    try:
        views = feature_store.apply(ctx.obj.paths(), variant, redis_connection=redis_connection)
    except feature_store.FeatureStoreError as exc:
        raise _fail(str(exc)) from exc
    print(f"applied {len(views)} feature views ({variant}): {', '.join(views)}")


def materialize(
    ctx: typer.Context,
    end: Annotated[str | None, typer.Option(help="ISO-8601 end time, UTC [default: now]")] = None,
    variant: Variant = "local",
    redis_connection: RedisConnection = None,
) -> None:
    """Load the newest feature rows up to END into the online store, continuing from the last run."""
    import datetime as dt

    from pipelines import feature_store

    end_time = _parse_time(end) if end else dt.datetime.now(dt.UTC)
    try:
        starts = feature_store.materialize_incremental(
            ctx.obj.paths(), end_time, variant, redis_connection=redis_connection
        )
    except feature_store.FeatureStoreError as exc:
        raise _fail(str(exc)) from exc
    for view, start in sorted(starts.items()):
        print(f"{view}: {start.isoformat()} → {end_time.isoformat()}")
    if not starts:
        print(f"online store already up to date at {end_time.isoformat()}")


def online(
    ctx: typer.Context,
    member_id: Annotated[int, typer.Option(help="member to look up")],
    service: Annotated[str, typer.Option(help="feature service")] = "retrieval_member_v1",
    post_id: Annotated[int | None, typer.Option(help="post, for services with post features")] = None,
    author_id: Annotated[int | None, typer.Option(help="author, for services with author features")] = None,
    variant: Variant = "local",
    redis_connection: RedisConnection = None,
) -> None:
    """Print one entity's online features, one `view__feature: value` per line."""
    from pipelines import feature_store

    row = {"member_id": member_id, "post_id": post_id, "author_id": author_id}
    try:
        values = feature_store.online_features(
            ctx.obj.paths(),
            service,
            [{k: v for k, v in row.items() if v is not None}],
            variant,
            redis_connection=redis_connection,
        )
    except feature_store.FeatureStoreError as exc:
        raise _fail(str(exc)) from exc
    width = max(len(name) for name in values)
    for name, column in values.items():
        print(f"{name:<{width}}  {column[0]!r}")


def historical(
    ctx: typer.Context,
    member_id: Annotated[list[int], typer.Option(help="member ids (repeat the option)")],
    at: Annotated[list[str], typer.Option(help="ISO-8601 times, one or one per member id")],
    service: Annotated[str, typer.Option(help="feature service")] = "ranking_v1",
    post_id: Annotated[list[int] | None, typer.Option(help="post ids, one or one per member id")] = None,
    author_id: Annotated[list[int] | None, typer.Option(help="author ids, one or one per member id")] = None,
    variant: Variant = "local",
) -> None:
    """Print a point-in-time frame: each row's features as they were at its time."""
    import pandas as pd

    from pipelines import feature_store

    n = len(member_id)
    frame = {"member_id": member_id, "event_timestamp": _broadcast("at", [_parse_time(t) for t in at], n)}
    if post_id:
        frame["post_id"] = _broadcast("post-id", list(post_id), n)
    if author_id:
        frame["author_id"] = _broadcast("author-id", list(author_id), n)
    try:
        result = feature_store.historical_features(ctx.obj.paths(), pd.DataFrame(frame), service, variant)
    except feature_store.FeatureStoreError as exc:
        raise _fail(str(exc)) from exc
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
        print(result.T.to_string() if len(result.columns) > 12 else result.to_string(index=False))
