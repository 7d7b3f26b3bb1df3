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


def retrieval_ablations(
    ctx: typer.Context,
    profile: Annotated[str, typer.Option(help="cpu | gpu")] = "cpu",
    seeds: Annotated[int, typer.Option(help="Seeds per arm (mean ± sd)", min=1)] = 3,
    set_name: Annotated[
        str, typer.Option("--set", help="Retrieval set to train and evaluate on")
    ] = "default",
    fresh: Annotated[bool, typer.Option(help="Retrain arms already cached")] = False,
) -> None:
    """The seed's claims side by side: raw counts vs percentile tokens, 0/1/2 hard negatives, engaged-only vs
    all-impression histories → retrieval_ablations.{json,md,png}."""
    from bench.retrieval_ablations import run

    out = run(ctx.obj, profile=profile, seeds=seeds, set_name=set_name, reuse_runs=not fresh)
    print(f"wrote {out}")
