"""``feed audit``: the Responsible-AI audit — the static sensitive-attribute check, creator exposure by
group, Gini of creator exposure, popularity bias and model quality per member group → ``reports/audit/``.

Exit status: 0 when the static check passed, 1 when a sensitive attribute reached a feature service, prompt
template or model input (the report is still written, with ``static_check_passed: false``), 2 when the audit
could not run (no lake, no logged feeds, bad options).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def audit(
    ctx: typer.Context,
    members: Annotated[int, typer.Option(help="Members whose feeds are served (seeded sample)", min=1)] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the member sample and of the test-anchor sample")] = 0,
    k: Annotated[int, typer.Option(help="Feed length asked of the service", min=1, max=500)] = 50,
    source: Annotated[
        str,
        typer.Option(
            help="served: feeds served now in-process; logged: served impressions in raw_impressions"
        ),
    ] = "served",
    attribute: Annotated[str, typer.Option(help="audit_attributes attribute defining the groups")] = "group",
    max_anchors: Annotated[
        int, typer.Option(help="Retrieval test anchors for Recall@k per member group", min=1)
    ] = 500,
    device: Annotated[
        str, typer.Option(help="auto, cpu or cuda: where the promoted models are evaluated")
    ] = "auto",
    quality: Annotated[
        bool, typer.Option(help="Recall/AUC per member group (the slow part: encodes the test pools)")
    ] = True,
    static_only: Annotated[
        bool, typer.Option("--static-only", help="Only the static sensitive-attribute check; no report")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Report folder [default: reports/audit]")] = None,
) -> None:
    """Audit the served feeds for creator exposure fairness, popularity bias and per-group quality."""
    import logging

    from feed.flows.audit import AuditRunConfig, run_audit
    from pipelines.audit.feeds import NoLoggedFeedsError
    from pipelines.audit.lake import AuditDataError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    paths = ctx.obj.paths()
    try:
        cfg = AuditRunConfig(
            members=members,
            seed=seed,
            k=k,
            source=source,  # type: ignore[arg-type]
            attribute=attribute,
            max_anchors=max_anchors,
            device=device,
            quality=quality,
            reports_dir=str(out) if out is not None else None,
        )
        outcome = run_audit(
            paths if paths.lake.is_dir() or not static_only else None, cfg, static_only=static_only
        )
    except (ValueError, AuditDataError, NoLoggedFeedsError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    static = outcome.static
    scanned = sum(static["scanned"].values())
    if outcome.passed:
        print(f"static sensitive-attribute check passed: {scanned} names in {static['places']} places")
    else:
        print(f"static sensitive-attribute check FAILED ({len(static['violations'])} violation(s)):")
        for violation in static["violations"]:
            print(f"  - {violation['message']}")
    if outcome.published is not None:
        report = outcome.published["report"]
        print(f"gini_exposure {outcome.published['gini_exposure']}")
        print(f"exposure_ratio_by_group {outcome.published['exposure_ratio_by_group']}")
        print(f"report: {report['json']} and {report['markdown']}")
    if not outcome.passed:
        raise typer.Exit(code=1)
