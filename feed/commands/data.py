"""``feed data …``: synthetic data, real-data loaders, and ingestion into the raw Delta tables."""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated

import typer


class Scale(enum.StrEnum):
    tiny = "tiny"
    small = "small"
    medium = "medium"


def _print_rows(rows: dict[str, int], seconds: float, where: Path) -> None:
    for name, count in rows.items():
        print(f"  {name:<22} {count:>12,}")
    print(f"{sum(rows.values()):,} rows in {seconds:.1f} s → {where}")


def synth(
    ctx: typer.Context,
    scale: Annotated[Scale, typer.Option(help="tiny ≈1k members, small ≈20k, medium ≈200k")] = Scale.tiny,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Landing folder [default: data/landing/synth-<scale>-<seed>]")
    ] = None,
) -> None:
    """Generate the synthetic LinkedIn-like data set into a landing folder."""
    from pipelines.synth import synth_config, write_synth

    out = out or ctx.obj.paths().landing / f"synth-{scale.value}-{seed}"
    began = time.perf_counter()
    rows = write_synth(synth_config(scale.value, seed), out)
    _print_rows(rows, time.perf_counter() - began, out)


def _source_path(ctx: typer.Context, path: Path | None) -> Path:
    path = path or ctx.obj.data_dir
    if path is None:
        raise typer.BadParameter("give --path or set FEED_DATA_DIR", param_hint="--path")
    return Path(path)


def _run_loader(loader: str, path: Path, out: Path) -> None:
    from pipelines.ingest import RawDataError

    began = time.perf_counter()
    try:
        if loader == "movielens":
            from pipelines.loaders.movielens import load_movielens as load
        else:
            from pipelines.loaders.mind import load_mind as load
        rows = load(path, out)
    except RawDataError as exc:
        print(exc)
        raise typer.Exit(1) from exc
    _print_rows(rows, time.perf_counter() - began, out)


def load_movielens(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Option(help="MovieLens folder [default: FEED_DATA_DIR]")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Landing folder [default: data/landing/movielens-<name>]")
    ] = None,
) -> None:
    """Load MovieLens (ML-1M/10M .dat, ML-20M .csv, RecBole ML-100K atomic files) into a landing folder."""
    path = _source_path(ctx, path)
    _run_loader("movielens", path, out or ctx.obj.paths().landing / f"movielens-{path.name}")


def load_mind(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Option(help="MIND split folder(s) [default: FEED_DATA_DIR]")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Landing folder [default: data/landing/mind-<name>]")
    ] = None,
) -> None:
    """Load MIND (behaviors.tsv + news.tsv) into a landing folder."""
    path = _source_path(ctx, path)
    _run_loader("mind", path, out or ctx.obj.paths().landing / f"mind-{path.name}")


def ingest(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(help="Landing folder to validate and commit")],
) -> None:
    """Validate every file of a landing folder, then commit each table to the lake (all or nothing)."""
    from pipelines.ingest import RawDataError
    from pipelines.ingest import ingest as run_ingest

    paths = ctx.obj.paths()
    try:
        result = run_ingest(paths, src)
    except RawDataError as exc:
        print(exc)
        raise typer.Exit(1) from exc
    _print_rows(result.rows, result.seconds, paths.lake)
    for name, version in result.versions.items():
        print(f"  {name}: Delta version {version}")
