"""``feed airflow``: the embedded Airflow around ``dags/`` — metadata DB, one DAG run, the environment."""

from __future__ import annotations

import datetime as dt
import json
import shlex
from typing import Annotated

import typer

airflow_app = typer.Typer(
    help="Airflow: the scheduled loop in dags/ (embedded SQLite + `airflow dags test`)."
)


@airflow_app.command("init")
def init(ctx: typer.Context) -> None:
    """Create or upgrade Airflow's metadata DB (SQLite under <FEED_HOME>/airflow unless configured)."""
    from feed.orchestration import migrate

    typer.echo(f"airflow metadata DB ready in {migrate(ctx.obj.paths())}")


@airflow_app.command("test")
def run_dag(
    ctx: typer.Context,
    dag_id: Annotated[
        str, typer.Argument(help="feed_features, feed_retrieval_training or feed_ranking_training")
    ],
    logical_date: Annotated[
        str | None, typer.Option("--date", help="Logical date YYYY-MM-DD [default: today, UTC]")
    ] = None,
    conf: Annotated[str | None, typer.Option(help="DAG run conf as JSON")] = None,
) -> None:
    """Run one DAG for one logical date in this process tree (`airflow dags test`), no scheduler needed."""
    from feed.orchestration import DAG_IDS, DagRunFailed, dags_test

    if dag_id not in DAG_IDS:
        raise typer.BadParameter(f"choose from {', '.join(DAG_IDS)}", param_hint="DAG_ID")
    try:
        day = dt.date.fromisoformat(logical_date) if logical_date else dt.datetime.now(dt.UTC).date()
        parsed = json.loads(conf) if conf else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        result = dags_test(ctx.obj.paths(), dag_id, day, parsed)
    except DagRunFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"{dag_id} {result.logical_date}: {result.state} in {result.seconds:.0f}s (log {result.log})")


@airflow_app.command("env")
def env(ctx: typer.Context) -> None:
    """Print the environment (export lines) a scheduler, API server and workers need to run dags/."""
    from feed.orchestration import airflow_env

    values = airflow_env(ctx.obj.paths(), base={})
    for key in sorted(values):
        typer.echo(f"export {key}={shlex.quote(values[key])}")
