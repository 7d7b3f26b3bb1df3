"""``feed features validate``: re-check the published feature tables and list quarantined batches."""

from __future__ import annotations

from typing import Annotated

import typer


def validate(
    ctx: typer.Context,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table", "-t", help="Feature table to validate (repeatable) [default: every published one]"
        ),
    ] = None,
) -> None:
    """Validate the current version of each published feature table with its GX suite (never writes), then
    list the batches the gate has quarantined. Exits 1 if any published table fails."""
    from pipelines.quality import list_quarantined, validate_published
    from pipelines.quality.validation import describe_failure

    paths = ctx.obj.paths()
    try:
        results = validate_published(paths, tables=table or None)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--table") from exc

    if not results:
        print(f"No published feature tables under {paths.lake}.")
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        version = "-" if result.version is None else f"v{result.version}"
        print(f"{status}  {result.table:<18} {version:>5}  {result.rows:>10,} rows")
        for failure in result.failures:
            print(f"      ✗ {describe_failure(failure)}")

    quarantined = list_quarantined(paths)
    if quarantined:
        print(f"\nQuarantined batches ({len(quarantined)}) under {paths.quarantine}:")
    for batch in quarantined:
        rows = "?" if batch.rows is None else f"{batch.rows:,}"
        print(f"  {batch.table} run {batch.run_id} ({rows} rows, {batch.created_at or 'unknown time'})")
        for failure in batch.failures:
            print(f"      ✗ {describe_failure(failure)}")

    if any(not r.passed for r in results):
        raise typer.Exit(code=1)
