"""``feed demo``: the main job end to end on embedded defaults, with a progress line per stage.

synth → ingest (validated) → Spark features → GX gate → Delta → Feast apply + materialize → one member's
online features and a point-in-time training frame → retrieval set → dual encoder → Recall@10 → quality gate →
post/member embeddings → Milvus collection + alias → one member's top-10 retrieved posts.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from feed.commands.pipeline import ensure_raw_data

DEMO_VERSION = "demo"  # artifacts/retrieval/demo, Milvus collection posts_demo

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from feed.config import FeedPaths


@contextmanager
def _stage(number: int, total: int, title: str) -> Iterator[None]:
    typer.secho(f"[{number}/{total}] {title}", bold=True)
    t0 = time.perf_counter()
    yield
    typer.echo(f"      done in {time.perf_counter() - t0:.1f}s")


def _demo_member(paths: FeedPaths) -> int:
    """The member with the longest engaged history in the newest member_history rows."""
    import pyarrow.compute as pc

    from pipelines import delta_io

    history = delta_io.read(paths.table("member_history"), columns=["member_id", "history_length"])
    best = pc.index(history["history_length"], pc.max(history["history_length"]))
    return int(history["member_id"][best.as_py()].as_py())


def _training_entities(paths: FeedPaths, member_id: int, n: int = 8) -> pd.DataFrame:
    """The member's last ``n`` impressions as entity rows (member, post, author, time) with their labels."""
    import pyarrow.compute as pc

    from pipelines import delta_io
    from pipelines.schemas import LABELS

    imps = delta_io.read(
        paths.table("raw_impressions"),
        columns=["member_id", "post_id", "event_timestamp", *LABELS],
        filter=pc.field("member_id") == member_id,
    ).to_pandas()
    posts = delta_io.read(paths.table("raw_posts"), columns=["post_id", "author_id"]).to_pandas()
    frame = imps.sort_values("event_timestamp").tail(n).merge(posts, on="post_id", how="left")
    return frame[["member_id", "post_id", "author_id", "event_timestamp", *LABELS]].reset_index(drop=True)


def _retrieval(paths: FeedPaths, *, steps: int, seed: int) -> bool:
    """Build the retrieval set, fine-tune the CPU-profile dual encoder briefly, and compare its Recall@10 with
    the untrained encoder and the popularity / TF-IDF / BM25 baselines on the test days. Quality gate: the
    fine-tuned encoder is promoted (``artifacts/retrieval/CURRENT``) only when it beats the untrained one on
    the test anchors; returns whether it was."""
    from training.data.retrieval_set import RetrievalSet, RetrievalSetConfig, build_retrieval_set
    from training.retrieval.pipeline import RetrievalRunConfig, train_and_evaluate
    from training.retrieval.train import promote

    rset = RetrievalSet.load(build_retrieval_set(paths, RetrievalSetConfig(name="demo", seed=seed)))
    sizes = {split: len(rset.anchors(split)) for split in ("train", "validation", "test")}
    typer.echo(f"      anchors: {sizes}")
    cfg = RetrievalRunConfig(profile="cpu", steps=steps, seed=seed, max_eval_anchors=500, progress=False)
    out = train_and_evaluate(rset, cfg, paths.artifacts / "retrieval" / DEMO_VERSION)
    typer.echo(
        f"      fine-tuned {out.train.step} steps in {out.train.seconds:.0f}s: "
        f"loss {out.train.first_loss:.3f} → {out.train.final_loss:.3f}; model in {out.out_dir}"
    )
    n = out.results["fine_tuned"]["n_evaluated"]
    typer.echo(f"      Recall@10 on {n} test anchors (exact search over the posts live that day):")
    for name, metrics in sorted(out.results.items(), key=lambda kv: -(kv[1].get("recall_at_10") or 0)):
        value = metrics.get("recall_at_10")
        typer.echo(f"        {name:<12} {'–' if value is None else f'{value:.3f}'}")
    tuned = out.results["fine_tuned"].get("recall_at_10") or 0.0
    untrained = out.results.get("pretrained", {}).get("recall_at_10") or 0.0
    passed = tuned > untrained
    if passed:
        promote(paths.artifacts / "retrieval", DEMO_VERSION)
        typer.echo(f"      gate passed ({tuned:.3f} > untrained {untrained:.3f}): promoted {DEMO_VERSION}")
    else:
        typer.echo(f"      gate FAILED ({tuned:.3f} ≤ untrained {untrained:.3f}): {DEMO_VERSION} unpromoted")
    return passed


def _index(paths: FeedPaths, *, promoted: bool) -> None:
    """Embed the live posts and the members with the demo encoder, build ``posts_<version>`` in a local Milvus
    Lite server behind the alias ``posts``, and print the top-10 posts retrieved for the demo member."""
    from feed.commands.index import member_top_posts
    from serving.index import lite
    from serving.index.backfill import backfill
    from serving.index.milvus import IndexConfig, MilvusPostIndex
    from training.retrieval.export import ExportConfig, export_members, export_posts

    export = ExportConfig(version=DEMO_VERSION, progress=False)
    for result in (export_posts(paths, export), export_members(paths, export)):
        skipped = f", skipped {result.skipped}" if result.skipped else ""
        typer.echo(
            f"      {result.kind} embeddings: {result.rows:,} × {result.dim} "
            f"({result.rows_per_second:.0f}/s{skipped}) → {result.table.name} v{result.delta_version}"
        )
    started = lite.running_server(paths) is None
    config = IndexConfig()
    try:
        # a gate failure still shows retrieval, from the unpromoted version, and says so
        built = backfill(paths, config, model_version=DEMO_VERSION, allow_non_current=not promoted)
        server = lite.running_server(paths)
        typer.echo(
            f"      Milvus Lite at {server.uri if server else '?'}: {built.collection} "
            f"({built.rows:,} posts, {built.index_type}, {built.seconds.get('total', 0):.1f}s) "
            f"← alias {built.alias}"
        )
        index = MilvusPostIndex.open(config, paths, expect_model_version=DEMO_VERSION)
        member_id = _demo_member(paths)
        result, ranked = member_top_posts(paths, index, member_id, 10)
        typer.secho(
            f"\n  top-10 retrieved for member_id={member_id} (own and already-seen posts excluded)", bold=True
        )
        for rank, row in enumerate(ranked.itertuples(index=False), start=1):
            text = " ".join(str(row.text or row.article_title or "").split())
            created = _day(row.created_at)
            typer.echo(
                f"    {rank:>2}. post {row.post_id:<6} {row.format:<8} {created}  "
                f"cos {row.score:.3f}  {text[:60]}"
            )
    finally:
        if started:
            lite.stop_server(paths)


def _day(value: object) -> str:
    """A post's created_at (epoch seconds or a timestamp) as ``YYYY-MM-DD``."""
    import pandas as pd

    ts = pd.Timestamp(value, unit="s") if isinstance(value, int | float) else pd.Timestamp(value)
    return f"{ts:%Y-%m-%d}"


# What the printed training frame shows: labels, then one or two features of each view.
_FRAME_COLUMNS = (
    "post_id",
    "event_timestamp",
    "click",
    "long_dwell",
    "like",
    "member_history__history_length",
    "member_affinity__top_topics",
    "post_content__topic",
    "post_engagement__views",
    "post_engagement__view_percentile",
    "post_engagement__like_percentile",
    "author_stats__follower_percentile",
)


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    """A terminal-width view of a training frame: chosen columns, short names, lists shown by length."""
    shown = frame[[c for c in _FRAME_COLUMNS if c in frame.columns]].copy()
    for column in shown.columns:
        if shown[column].map(lambda v: isinstance(v, list | tuple) or hasattr(v, "__array__")).any():
            shown[column] = shown[column].map(lambda v: f"[{len(v)} items]" if v is not None else None)
    shown["event_timestamp"] = shown["event_timestamp"].dt.strftime("%m-%d %H:%M")
    return shown.rename(columns=lambda c: c.split("__")[-1])


def demo(
    ctx: typer.Context,
    scale: Annotated[str, typer.Option(help="Synthetic scale: tiny | small | medium")] = "tiny",
    seed: Annotated[int, typer.Option(help="Generator seed")] = 0,
    retrieval_steps: Annotated[
        int, typer.Option(help="Optimizer steps of the demo's dual-encoder fine-tuning (cpu profile)", min=1)
    ] = 150,
    retrieval: Annotated[bool, typer.Option("--retrieval/--no-retrieval", help="Train the retriever")] = True,
) -> None:
    """Run the main job end to end: synth → ingest → Spark features → GX gate → Delta → Feast → print."""
    import pandas as pd

    from pipelines import feature_store
    from pipelines.features.build import build_features
    from pipelines.quality.gate import validate_published

    settings = ctx.obj
    paths = settings.paths()
    total = 7 if retrieval else 5
    t_start = time.perf_counter()
    with _stage(1, total, f"synthetic data ({scale}, seed {seed}) → validated raw Delta tables"):
        ensure_raw_data(settings, scale=scale, seed=seed)

    with _stage(2, total, "Spark features (daily snapshots, percentile buckets) → GX gate → Delta"):
        report = build_features(paths, settings.spark())
        for table in report.tables:
            status = f"published v{table.gate.version}" if table.passed else "QUARANTINED"
            typer.echo(f"      {table.table:<16} {table.rows:>10,} rows  {status}")
        if not report.passed:
            for table in report.tables:
                if not table.passed:
                    typer.echo(table.gate.summary, err=True)
            raise typer.Exit(code=1)

    with _stage(3, total, "data-quality summary of the published tables"):
        for result in validate_published(paths):
            mark = "ok " if result.passed else "FAIL"
            typer.echo(f"      {mark} {result.table:<16} v{result.version}  {result.rows:,} rows")

    end = pd.Timestamp(report.snapshots.end, tz="UTC").to_pydatetime()
    with _stage(4, total, f"Feast apply + materialize-incremental (up to {end:%Y-%m-%d %H:%M} UTC)"):
        views = feature_store.apply(paths)
        feature_store.materialize_incremental(paths, end)
        typer.echo(f"      {len(views)} feature views registered; online store: {paths.feast}")

    with _stage(5, total, "one member's online features and a point-in-time training frame"):
        member_id = _demo_member(paths)
        online = feature_store.online_features(paths, "retrieval_member_v1", [{"member_id": member_id}])
        typer.secho(f"\n  online features, retrieval_member_v1, member_id={member_id}", bold=True)
        for name, values in online.items():
            value = values[0]
            if isinstance(value, list) and len(value) > 8:
                value = f"{value[-8:]} (last 8 of {len(value)})"
            typer.echo(f"    {name:<40} {value}")
        entities = _training_entities(paths, member_id)
        frame = feature_store.historical_features(paths, entities, "ranking_v1")
        typer.secho("\n  point-in-time training frame (ranking_v1), the member's last impressions", bold=True)
        typer.echo(_compact(frame).to_string())
        typer.echo(f"      ({len(frame.columns)} columns in all; lists shown by length, a selection printed)")
    if retrieval:
        with _stage(6, total, f"retrieval set → dual encoder ({retrieval_steps} steps) → Recall@10"):
            promoted = _retrieval(paths, steps=retrieval_steps, seed=seed)
        with _stage(7, total, "embeddings → Milvus (posts_<version>, alias posts) → a member's top-10"):
            _index(paths, promoted=promoted)
    typer.secho(f"\ndemo finished in {time.perf_counter() - t_start:.0f}s", fg=typer.colors.GREEN, bold=True)
