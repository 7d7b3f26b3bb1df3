"""``feed bench serving``: the feed service under HTTP load (wrk), Schemathesis and fault runs →
reports/bench/serving.json + serving.png (bench/serving.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serving(
    ctx: typer.Context,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Smoke run of every phase (seconds each) → <home>/artifacts/reports/bench/, not the repo",
        ),
    ] = False,
    rate: Annotated[float | None, typer.Option(help="Open-loop requests/s [default: 20]", min=0.1)] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds of the open-loop run [default: 60]", min=1)
    ] = None,
    steps: Annotated[
        str | None, typer.Option(help="Step-test connection counts, comma-separated [default: 1,2,4,8,16]")
    ] = None,
    step_duration: Annotated[float | None, typer.Option(help="Seconds per step [default: 15]", min=1)] = None,
    top_n: Annotated[int | None, typer.Option(help="Candidates per request [default: 500]", min=1)] = None,
    faults: Annotated[
        str | None,
        typer.Option(help="Fault runs, comma-separated: milvus, feature_store, or 'none' [default: both]"),
    ] = None,
    schemathesis: Annotated[bool, typer.Option(help="Run Schemathesis against /openapi.json")] = True,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the scratch home, wrk logs and service logs here [default: a temp dir]"),
    ] = None,
) -> None:
    """20 req/s for 60 s (p50/p95/p99 overall and per stage), a closed-loop step test to saturation,
    Schemathesis (0 server errors) and fault runs (Milvus killed, Feast's Redis stopped) against `feed serve`
    on a scratch copy of this home → serving.json + serving.png. Needs /usr/bin/wrk (apt-get install wrk)."""
    from dataclasses import replace

    from bench.serving import ServingBenchConfig, ServingBenchError, run

    cfg = ServingBenchConfig.quick() if quick else ServingBenchConfig()
    changes: dict = {"schemathesis": schemathesis}
    for key, value in (
        ("rate_rps", rate),
        ("rate_duration_s", duration),
        ("step_duration_s", step_duration),
        ("top_n", top_n),
    ):
        if value is not None:
            changes[key] = value
    if steps:
        changes["step_connections"] = tuple(int(s) for s in steps.split(",") if s.strip())
    if faults:
        names = tuple(f.strip() for f in faults.split(",") if f.strip())
        changes["faults"] = () if names == ("none",) else names
    try:
        cfg = replace(cfg, **changes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    kw = {"reports_dir": ctx.obj.paths().artifacts / "reports"} if quick else {}  # quick: not in the repo
    try:
        out = run(ctx.obj, cfg, quick=quick, work_dir=work_dir, **kw)
    except ServingBenchError as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    print(f"wrote {out} (and {out.with_suffix('.png').name})")
