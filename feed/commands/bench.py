"""``feed bench …``: each benchmark writes reports/bench/<name>.json (and a plot where one helps)."""

from __future__ import annotations

from typing import Annotated

import typer

from feed.commands.pipeline import ensure_raw_data


def features(
    ctx: typer.Context,
    scale: Annotated[
        str, typer.Option(help="Synthetic scale to build (generated + ingested if absent)")
    ] = "small",
    seed: Annotated[int, typer.Option(help="Generator seed")] = 0,
) -> None:
    """Spark feature build on `small` vs the same percentile computation in DuckDB → features.json."""
    from bench.features import run

    settings = ctx.obj
    ensure_raw_data(settings, scale=scale, seed=seed)
    out = run(settings, scale=scale)
    print(f"wrote {out}")


def feast_online(ctx: typer.Context) -> None:
    """p50/p99 of Feast online reads (SQLite in-process vs Redis) → feast_online.json."""
    from bench.feast_online import run

    out = run(ctx.obj)
    print(f"wrote {out}")
