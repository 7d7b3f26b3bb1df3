"""``feed bench …``: each benchmark writes reports/bench/<name>.json (and a plot where one helps)."""

from __future__ import annotations

from pathlib import Path
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


def index(
    ctx: typer.Context,
    sizes: Annotated[
        str, typer.Option(help="Synthetic sizes, comma-separated (each × 384 clustered unit vectors)")
    ] = "100000,1000000",
    quick: Annotated[
        bool, typer.Option(help="Smoke run: 20k vectors, few queries → <home>/artifacts/reports/bench/")
    ] = False,
    backends: Annotated[
        str | None, typer.Option(help="Comma-separated subset of backends [default: all]")
    ] = None,
    gpu_json: Annotated[
        Path | None, typer.Option(help="bench/gpu_knn.py's JSON from a GPU host, merged as `gpu_knn`")
    ] = None,
    merge_gpu_json: Annotated[
        Path | None,
        typer.Option(
            help="Only fold this bench/gpu_knn.py JSON into the existing --report (no CPU re-run); "
            "re-draws the plot"
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Report --merge-gpu-json merges into [default: reports/bench/index.json]"),
    ] = None,
    gpu_commit: Annotated[
        str | None,
        typer.Option(
            help="With --merge-gpu-json: the git commit the GPU run used (gpu_knn.py does not record it)"
        ),
    ] = None,
    real: Annotated[bool, typer.Option(help="Also the home's post_embeddings, when present")] = True,
    hnsw_ef: Annotated[
        int | None, typer.Option(help="HNSW efSearch for every HNSW backend [default: the replica's]")
    ] = None,
) -> None:
    """Milvus Lite (FLAT/HNSW/IVF) vs FAISS (exact/HNSW), the HNSW replica and exact torch search at 100k and
    1M × 384: build time, p50/p99, batch-32 QPS, recall@100, ± filter → index.{json,png}.

    `--merge-gpu-json PATH` folds a GPU run of bench/gpu_knn.py into the existing report instead."""
    from dataclasses import replace

    from bench.index import ALL_BACKENDS, REPORT_NAME, IndexBenchConfig, quick_config, run
    from bench.index import merge_gpu_json as merge_into
    from feed.config import REPORTS_DIR

    if merge_gpu_json is not None:
        target = report or REPORTS_DIR / "bench" / f"{REPORT_NAME}.json"
        if gpu_json is not None:
            raise typer.BadParameter("give --gpu-json (full run) or --merge-gpu-json (merge only), not both")
        try:
            out = merge_into(target, merge_gpu_json, gpu_commit=gpu_commit)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}")
            raise typer.Exit(code=2) from exc
        print(f"merged {merge_gpu_json} into {out} (and {out.with_suffix('.png').name})")
        return

    cfg = quick_config() if quick else IndexBenchConfig()
    changes: dict = {"real": real, "backends": tuple(backends.split(",")) if backends else ALL_BACKENDS}
    if hnsw_ef is not None:
        changes["hnsw_ef_search"] = hnsw_ef
    if not quick or sizes != "100000,1000000":
        changes["sizes"] = tuple(int(s.replace("_", "")) for s in sizes.split(",") if s.strip())
    try:
        cfg = replace(cfg, **changes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    kw = {"reports_dir": ctx.obj.paths().artifacts / "reports"} if quick else {}  # quick: not in the repo
    out = run(ctx.obj, cfg, quick=quick, gpu_json=gpu_json, **kw)
    print(f"wrote {out}")


def freshness(
    ctx: typer.Context,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="30 posts (a smoke run) → <home>/artifacts/reports/bench/, not the repo"
        ),
    ] = False,
    posts: Annotated[
        int | None, typer.Option(help="New posts to time [default: 200; --quick: 30]", min=1)
    ] = None,
    rate: Annotated[float | None, typer.Option(help="New posts per second [default: 2]", min=0.01)] = None,
) -> None:
    """New post appended → retrievable (serving replica and Milvus) with `feed nearline run-all` running;
    p50/p95 over ≥ 200 posts → freshness.json + .png."""
    from dataclasses import replace

    from bench.freshness import FreshnessBenchError, FreshnessConfig, run

    cfg = FreshnessConfig.quick() if quick else FreshnessConfig()
    if posts is not None:
        cfg = replace(cfg, posts=posts)
    if rate is not None:
        cfg = replace(cfg, rate_per_s=rate)
    try:
        paths = ctx.obj.paths()
        kw = {"reports_dir": paths.artifacts / "reports"} if quick else {}  # quick: not in the repo
        out = run(paths, cfg, quick=quick, **kw)
    except FreshnessBenchError as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    print(f"wrote {out}")


def scoring(
    ctx: typer.Context,
    history: Annotated[int, typer.Option(help="Interactions in the member's history", min=0)] = 1000,
    candidates: Annotated[int, typer.Option(help="Candidates scored per request", min=1)] = 500,
    reps: Annotated[int, typer.Option(help="Timed shared-context passes", min=1)] = 30,
    per_candidate_reps: Annotated[int, typer.Option(help="Timed per-candidate sweeps", min=1)] = 2,
    chunk: Annotated[int, typer.Option(help="Per-candidate sequences per batch", min=1)] = 50,
) -> None:
    """One shared-context pass (history once + all candidates) vs one pass per candidate, on the served GR
    (or the default config untrained) → scoring.json (speedup, shared p50/p99)."""
    from bench.scoring import run

    out = run(
        ctx.obj,
        history=history,
        candidates=candidates,
        reps=reps,
        per_candidate_reps=per_candidate_reps,
        chunk=chunk,
    )
    print(f"wrote {out}")
