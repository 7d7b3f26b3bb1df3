"""``feed model rollback retrieval|ranking``: serve the previous model version again, in one step.

retrieval: ``artifacts/retrieval/CURRENT`` ← ``PREVIOUS``, the Milvus alias ``posts`` back to that version's
collection (backfills keep other versions' collections), and that version's member embeddings (still in the
member_embeddings Delta table) pushed to the Feast online store again. ranking: the pointer swap under
``artifacts/ranking``; serving picks CURRENT up on its next model load. A second rollback undoes the first.
"""

from __future__ import annotations

from typing import Annotated

import typer

model_app = typer.Typer(help="Served model versions: roll back to the previous one.")


@model_app.command("rollback")
def rollback(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="retrieval | ranking")],
) -> None:
    """Restore the previous version of MODEL (CURRENT ← PREVIOUS; for retrieval also the Milvus alias and the
    Feast member embeddings) and print what changed."""
    from feed.flows.retrieval import rollback_ranking, rollback_retrieval
    from training.versions import NoPreviousVersionError

    if model not in ("retrieval", "ranking"):
        raise typer.BadParameter("choose retrieval or ranking", param_hint="MODEL")
    paths = ctx.obj.paths()
    try:
        done = rollback_retrieval(paths) if model == "retrieval" else rollback_ranking(paths)
    except (NoPreviousVersionError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    pointer = done["model"]
    was, now = pointer["previous"], pointer["current"]
    typer.echo(f"{model}: CURRENT {was} → {now} (PREVIOUS is now {was})")
    if model == "ranking":
        typer.echo("serving loads the restored ranker on its next model load")
        return
    index = done["index"]
    if index is None:
        typer.echo(f"milvus: no collection of {pointer['current']} left; rebuild: {done['index_fix']}")
    else:
        typer.echo(f"milvus: alias {index['alias']} {index['was']} → {index['collection']}")
    feast = done["feast"]
    if feast is None:
        typer.echo(f"feast: no member embeddings of {pointer['current']}; rebuild: {done['feast_fix']}")
    else:
        typer.echo(f"feast: {feast['members']:,} member embeddings of {feast['version']} pushed online")
