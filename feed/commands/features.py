"""``feed features build``: the Spark feature pipeline, gated into the feature Delta tables."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

import typer

DATE_FORMATS = ["%Y-%m-%d"]


def build(
    ctx: typer.Context,
    start: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=DATE_FORMATS, help="First snapshot (UTC date) [default: day after first impression]"
        ),
    ] = None,
    end: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=DATE_FORMATS, help="Last snapshot (UTC date) [default: day after last impression]"
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Names the staging/quarantine folders [default: time]")
    ] = None,
) -> None:
    """Build the feature tables for daily snapshots; each passes the quality gate or is quarantined."""
    from pipelines.features.build import EmptyRawDataError, build_features
    from pipelines.features.common import MissingRawTableError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = ctx.obj
    try:
        report = build_features(
            settings.paths(),
            settings.spark(),
            start=start.date() if start else None,
            end=end.date() if end else None,
            run_id=run_id,
        )
    except (MissingRawTableError, EmptyRawDataError, ValueError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc

    snaps = report.snapshots
    print(f"run {report.run_id}: snapshots {snaps.start} .. {snaps.end} ({len(snaps.days())} days)")
    print(f"  {'table':<16} {'rows':>10} {'seconds':>8}  {'gate':<8} {'version':>7}  staged")
    for t in report.tables:
        gate = "passed" if t.passed else "REFUSED"
        version = "-" if t.gate.version is None else str(t.gate.version)
        print(f"  {t.table:<16} {t.rows:>10,} {t.seconds:>8.1f}  {gate:<8} {version:>7}  {t.staged}")
    print(f"{report.rows:,} rows in {report.seconds:.1f} s")
    refused = [t for t in report.tables if not t.passed]
    for t in refused:
        print(f"refused {t.table}: {t.gate.summary} (quarantined in {t.gate.quarantine_path})")
    if refused:
        raise typer.Exit(code=1)
