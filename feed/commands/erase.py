"""``feed erase member|post ID``: remove a member's or a post's data from every store of the home, with proof.

Wiring in feed/cli.py: ``app.add_typer(erase_app, name="erase", no_args_is_help=True)`` with
``from feed.commands.erase import erase_app``. Exit codes: 0 erased (or already erased: nothing left to do,
or a dry run), 1 a step failed or something still holds the id (the receipt says what; run it again),
2 an unknown id or a bad option (nothing changed). docs/erasure.md has the rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pipelines.erase import Result

erase_app = typer.Typer(
    help="Erase a member's or a post's data everywhere (Delta + VACUUM, Feast online, Milvus, copies, "
    "snapshots) and write a receipt to data/erasure/.",
    no_args_is_help=True,
)

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print what would be removed; change nothing")]
RetentionOpt = Annotated[
    int,
    typer.Option(
        "--retention-hours",
        min=0,
        help="VACUUM retention for the files the erasure removes. 0 (default): deleted at once, so no old "
        "version of a table still holds the data (time travel to before the erasure is lost by design); "
        "more: they stay that long and a later run deletes them",
    ),
]
VariantOpt = Annotated[str, typer.Option(help="Feast variant whose online store is scrubbed: local | redis")]
RedisOpt = Annotated[str | None, typer.Option(help="Redis host:port[,password=…] for the redis variant")]
UriOpt = Annotated[
    str | None, typer.Option("--milvus-uri", help="Milvus URI (a cluster) [default: this home's Lite server]")
]
TokenOpt = Annotated[str, typer.Option("--milvus-token", help="Milvus token for a cluster")]
SnapshotOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--replica-snapshot",
        help="A saved HNSW replica folder outside data/ and artifacts/ (repeatable; those inside are found)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]


def _run(
    ctx: typer.Context,
    kind: str,
    entity_id: int,
    dry_run: bool,
    retention_hours: int,
    feast_variant: str,
    redis_connection: str | None,
    milvus_uri: str | None,
    milvus_token: str,
    replica_snapshot: list[Path] | None,
    as_json: bool,
) -> None:
    import logging

    from pipelines.erase import EraseError, EraseInputError, EraseOptions, UnknownIdError, erase

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        options = EraseOptions(
            dry_run=dry_run,
            retention_hours=retention_hours,
            feast_variant=feast_variant,
            redis_connection=redis_connection,
            milvus_uri=milvus_uri,
            milvus_token=milvus_token,
            replica_snapshots=tuple(replica_snapshot or ()),
        )
        result = erase(ctx.obj.paths(), kind, entity_id, options)  # type: ignore[arg-type]
    except (UnknownIdError, EraseInputError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    except EraseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if as_json:
        typer.echo(json.dumps(result.to_json() | {"receipt": result.receipt}, indent=1, default=str))
    else:
        _print(result)
    if result.status in ("partial", "running"):
        raise typer.Exit(code=1)


def _print(result: Result) -> None:
    head = {
        "dry_run": "would remove (dry run, nothing changed)",
        "noop": "already erased: nothing holds it any more, nothing changed",
        "complete": "erased",
        "pending_vacuum": "erased; removed Delta files younger than the retention remain",
        "partial": "PARTIAL: some steps failed or something still holds it; run the command again",
    }[result.status]
    typer.echo(f"{result.kind} {result.id}: {head}")
    posts = result.cascade.get("post_ids", [])
    if result.kind == "member":
        typer.echo(f"  cascade: {len(posts)} authored post(s) {posts[:20]}{' …' if len(posts) > 20 else ''}")
    for step in result.steps:
        if not (step.touched or step.error):
            continue
        what = f"{step.deleted:,} removed" + (f", {step.rewritten:,} rewritten" if step.rewritten else "")
        what += f", {step.files:,} file(s)" if step.files else ""
        line = f"  {step.store:<13} {step.target:<40} {what}"
        typer.echo(line + (f"  ERROR {step.error}" if step.error else ""))
    verification = result.verification
    if verification and "clean" in verification and result.status not in ("noop", "dry_run"):
        left = {k: v for k, v in verification.items() if k != "clean" and v}
        typer.echo("  verified: nothing holds it" if verification["clean"] else f"  still held: {left}")
    if result.receipt:
        typer.echo(f"  receipt: {result.receipt}")


@erase_app.command("member")
def member(
    ctx: typer.Context,
    member_id: Annotated[int, typer.Argument(help="The member id")],
    dry_run: DryRunOpt = False,
    retention_hours: RetentionOpt = 0,
    feast_variant: VariantOpt = "local",
    redis_connection: RedisOpt = None,
    milvus_uri: UriOpt = None,
    milvus_token: TokenOpt = "",
    replica_snapshot: SnapshotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase MEMBER_ID: their rows everywhere (as member and as author, follows both ways) and the posts
    they authored with every impression of them; other members' id lists lose them."""
    _run(
        ctx,
        "member",
        member_id,
        dry_run,
        retention_hours,
        feast_variant,
        redis_connection,
        milvus_uri,
        milvus_token,
        replica_snapshot,
        as_json,
    )


@erase_app.command("post")
def post(
    ctx: typer.Context,
    post_id: Annotated[int, typer.Argument(help="The post id")],
    dry_run: DryRunOpt = False,
    retention_hours: RetentionOpt = 0,
    feast_variant: VariantOpt = "local",
    redis_connection: RedisOpt = None,
    milvus_uri: UriOpt = None,
    milvus_token: TokenOpt = "",
    replica_snapshot: SnapshotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase POST_ID: the post, every row referencing it (impressions, features, embeddings, nearline rows,
    member prompts quoting it) and its vector in every index; members' id lists lose it."""
    _run(
        ctx,
        "post",
        post_id,
        dry_run,
        retention_hours,
        feast_variant,
        redis_connection,
        milvus_uri,
        milvus_token,
        replica_snapshot,
        as_json,
    )
