"""``feed serve``: the online feed service (FastAPI under uvicorn) over this home's Feast store, Milvus index
and promoted models. Settings: ``FEED_SERVE_*`` environment variables (serving/settings.py); the options here
override the common ones."""

from __future__ import annotations

import logging
from typing import Annotated

import typer


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000]")] = None,
    top_n: Annotated[int | None, typer.Option(help="Candidates retrieved from Milvus [default: 500]")] = None,
    milvus_uri: Annotated[
        str | None, typer.Option(help="Milvus URI (a cluster) [default: this home's Milvus Lite server]")
    ] = None,
    clock: Annotated[
        str | None,
        typer.Option(
            help="Request time: 'data' (the newest materialized features) or 'wall' [default: data]"
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    detach: Annotated[
        bool, typer.Option("--detach", help="Start in the background (pid/log in data/serving/) and return")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop this home's background service")] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Is this home's background service running?")
    ] = False,
) -> None:
    """Run the feed service: POST /v1/feed, /ui, /docs, /metrics, /healthz, /readyz."""
    import uvicorn
    from pydantic import ValidationError

    from serving import server

    paths = ctx.obj.paths()
    if stop or status:
        proc = server.stop(paths) if stop else server.running(paths)
        if proc is None:
            typer.echo("no feed service running for this home")
            raise typer.Exit(code=0 if stop else 1)
        typer.echo(f"{'stopped' if stop else 'running:'} pid {proc.pid} at {proc.url} (log {proc.log_file})")
        return
    if detach:
        extra = [
            f"--{k.replace('_', '-')}={v}"
            for k, v in {"top_n": top_n, "milvus_uri": milvus_uri, "clock": clock}.items()
            if v is not None
        ]
        try:
            proc = server.start(paths, host=host or "127.0.0.1", port=port or 8000, extra=extra)
        except server.ServiceStartError as exc:
            typer.echo(f"error: {exc}")
            raise typer.Exit(code=2) from exc
        typer.echo(f"feed service pid {proc.pid} at {proc.url} (/ui, /docs; log {proc.log_file})")
        return

    from serving.app import create_app
    from serving.settings import ServingSettings

    overrides = {
        k: v
        for k, v in {
            "home": ctx.obj.home,
            "host": host,
            "port": port,
            "top_n": top_n,
            "milvus_uri": milvus_uri,
            "clock": clock,
        }.items()
        if v is not None
    }
    try:
        settings = ServingSettings(**overrides)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    # pymilvus logs a full traceback per failed call (≈ 230 kB per 10 s of a Milvus outage); the service logs
    # one warning per failed stage with the reason, and counts it in /metrics.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    typer.echo(
        f"feed service on http://{settings.host}:{settings.port} (home {settings.home}): "
        f"/ui, /docs, /metrics — loading models and features…"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)
