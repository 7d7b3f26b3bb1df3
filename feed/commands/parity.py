"""``feed parity``: training–serving skew check — online features (the service's SQLite reads) against
``get_historical_features`` (DuckDB) for sampled members, posts and authors at the same time T; writes
``reports/parity.json`` and ``reports/parity.md``.

Thin wrapper over :mod:`serving.parity`; Feast and pandas are imported inside the command (~5 s).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from serving.parity import ParityResult


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def parse_at(text: str | None) -> dt.datetime | None:
    """ISO-8601 → aware UTC datetime (a naive time is taken as UTC); ``now`` is the wall clock."""
    if text is None:
        return None
    if text.strip().lower() == "now":
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-09-29T00:00:00) or 'now'", param_hint="--at"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parity(
    ctx: typer.Context,
    members: Annotated[int, typer.Option(help="Members to sample", min=0)] = 100,
    posts: Annotated[int, typer.Option(help="Random posts, beside the members' history posts", min=0)] = 100,
    history_posts: Annotated[
        int, typer.Option(help="At most this many of the posts the sampled histories reference", min=0)
    ] = 200,
    seed: Annotated[int, typer.Option(help="Sampling seed")] = 0,
    at: Annotated[
        str | None,
        typer.Option(
            help="Compare at this ISO-8601 time (UTC) or 'now' [default: end of the last materialization]"
        ),
    ] = None,
    rtol: Annotated[float, typer.Option(help="Relative tolerance for floats", min=0)] = 1e-6,
    atol: Annotated[float, typer.Option(help="Absolute tolerance for floats", min=0)] = 1e-6,
    timestamp_resolution_s: Annotated[
        float, typer.Option(help="Compare timestamps at this resolution (0: exactly)", min=0)
    ] = 1.0,
    fail_on_mismatch: Annotated[
        bool, typer.Option("--fail-on-mismatch", help="Exit 1 when any value differs")
    ] = False,
    variant: Annotated[str, typer.Option(help="feature_store.yaml variant: local | redis | spark")] = "local",
    redis_connection: Annotated[
        str | None, typer.Option(help="host:port[,password=...] for --variant redis (default: the YAML's)")
    ] = None,
    reports_dir: Annotated[
        Path | None, typer.Option(help="Write parity.json/.md here [default: the project's reports/]")
    ] = None,
) -> None:
    """Online vs offline features at the same time T for sampled entities: mismatches, online-only
    (TTL expired or newer than T), offline-only (not materialized) per view; writes reports/parity.json."""
    from pipelines.feature_store import FeatureStoreError
    from serving import parity as parity_lib

    try:
        cfg = parity_lib.ParityConfig(
            members=members,
            posts=posts,
            history_posts=history_posts,
            seed=seed,
            at=parse_at(at),
            rtol=rtol,
            atol=atol,
            timestamp_resolution_s=timestamp_resolution_s,
            variant=variant,
            redis_connection=redis_connection,
        )
        result = parity_lib.run_parity(ctx.obj.paths(), cfg)
    except (FeatureStoreError, parity_lib.ParityError) as exc:
        raise _fail(str(exc)) from exc
    kwargs = {"reports_dir": reports_dir} if reports_dir is not None else {}
    json_path, md_path = parity_lib.write_reports(result, cfg, **kwargs)
    _print(result)
    print(f"wrote {json_path} and {md_path}")
    if fail_on_mismatch and result.mismatches:
        raise _fail(f"{result.mismatches} online/offline mismatches (see {md_path})")


def _print(result: ParityResult) -> None:
    from serving.parity import explain

    s = result.summary()
    print(
        f"T = {s['at']} ({s['at_source']}); {s['members']} members, {s['posts']} posts, "
        f"{s['authors']} authors"
    )
    print(
        f"{'view':<18} {'entity':<10} {'compared':>9} {'equal':>8} {'mismatch':>9} {'online':>8} "
        f"{'offline':>8}"
    )
    for view, c in result.per_view.items():
        print(
            f"{view:<18} {result.view_entity[view]:<10} {c.compared:>9} {c.equal:>8} {c.mismatch:>9} "
            f"{c.online_only:>8} {c.offline_only:>8}"
        )
    print(
        f"{'all':<18} {'':<10} {s['features_compared']:>9} {s['equal']:>8} {s['mismatches']:>9} "
        f"{s['online_only']:>8} {s['offline_only']:>8}   mismatch rate {s['mismatch_rate']:.4%}"
    )
    for line in explain(result):
        print(f"  {line}")
