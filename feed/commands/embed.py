"""``feed embed posts|members``: embed every live post / every member with a model version, as of a time.

Writes the Delta tables post_embeddings / member_embeddings (one model version's rows replaced at once),
ready for ``feed index`` and the Feast push. The default model is the promoted one
(artifacts/retrieval/CURRENT); the default time is the latest feature snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from training.retrieval.export import ExportResult

VersionOpt = Annotated[
    str | None,
    typer.Option(help="Model version under artifacts/retrieval/ [default: the promoted one, CURRENT]"),
]
AtOpt = Annotated[
    str | None,
    typer.Option(help="As-of time, ISO (2026-03-01 or 2026-03-01T06:00:00Z) [default: latest snapshot]"),
]
BatchOpt = Annotated[int, typer.Option(help="Texts per forward pass", min=1)]


def posts(
    ctx: typer.Context, version: VersionOpt = None, at: AtOpt = None, batch_size: BatchOpt = 64
) -> None:
    """Embed every post live at the as-of time (created in the 28 days before) → post_embeddings."""
    _run(ctx, "post", version, at, batch_size)


def members(
    ctx: typer.Context, version: VersionOpt = None, at: AtOpt = None, batch_size: BatchOpt = 64
) -> None:
    """Embed every member with a profile at the as-of time (profile + engaged history) → member_embeddings."""
    _run(ctx, "member", version, at, batch_size)


def _run(ctx: typer.Context, kind: str, version: str | None, at: str | None, batch_size: int) -> None:
    import logging

    from pipelines.feature_store import FeatureStoreError
    from training.retrieval.export import ExportConfig, export_members, export_posts, parse_at

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    paths = ctx.obj.paths()
    try:
        cfg = ExportConfig(version=version, at=parse_at(at) if at else None, batch_size=batch_size)
        export = export_posts if kind == "post" else export_members
        result = export(paths, cfg)
    except (ValueError, FeatureStoreError, FileNotFoundError) as exc:  # ExportError is a ValueError
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    _print_result(result)


def _print_result(result: ExportResult) -> None:
    skipped = ", ".join(f"{k}={v:,}" for k, v in result.skipped.items()) or "none"
    total = result.seconds.get("total", 0.0)
    print(
        f"{result.kind} embeddings of {result.model_version} as of {result.at.isoformat()}: "
        f"{result.rows:,} rows × {result.dim} dims → {result.table} (Delta version {result.delta_version})"
    )
    print(f"skipped: {skipped}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items() if k != "total")
    print(f"{total:.1f} s ({stages}), {result.rows_per_second:,.1f} rows/s")
