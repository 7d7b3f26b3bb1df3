"""``feed demo``: the main job end to end on embedded defaults, through the Airflow DAGs, with a progress line
per stage and ``reports/demo.json`` (seconds per stage).

Airflow metadata DB → DAG ``feed_features`` (initial load: synth → ingest → Spark features for every snapshot
→ GX gate → drift → Delta → Feast) → one member's online features and a point-in-time training frame → DAG
``feed_retrieval_training`` (set → encoder → Recall@10 gate → embeddings → Milvus alias → Feast) → DAG
``feed_ranking_training`` (sequences → GR → per-task AUC gate) → the member's top-10 from Milvus. Each DAG
runs as one ``airflow dags test`` (no scheduler), exactly the code a scheduler would run.
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import pandas as pd

    from feed.config import FeedPaths, FeedSettings
    from feed.orchestration import DagTestResult


@contextmanager
def _stage(number: int, total: int, title: str, stages: dict[str, float], name: str) -> Iterator[None]:
    """Print the progress line of one stage and record its seconds in ``stages[name]``."""
    typer.secho(f"[{number}/{total}] {title}", bold=True)
    t0 = time.perf_counter()
    yield
    stages[name] = time.perf_counter() - t0
    typer.echo(f"      done in {stages[name]:.1f}s")


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


def _logical_date(settings: FeedSettings, scale: str, seed: int) -> tuple[dt.date, dt.date]:
    """(first snapshot, last snapshot) of the data the demo runs on: the lake's impressions when a lake
    exists, else the synthetic set the features DAG will generate (the day after the first/last event)."""
    from feed.commands.pipeline import raw_lake_ready
    from feed.flows.features import impression_span
    from pipelines.synth import synth_config

    if raw_lake_ready(settings):
        first, last = impression_span(settings.paths())
    else:  # no lake yet: the features DAG's ingest task generates it
        cfg = synth_config(scale, seed)
        first, last = cfg.start, cfg.start + dt.timedelta(days=cfg.days) - dt.timedelta(microseconds=1)
    return first.date() + dt.timedelta(days=1), last.date() + dt.timedelta(days=1)


def demo(
    ctx: typer.Context,
    scale: Annotated[str, typer.Option(help="Synthetic scale: tiny | small | medium")] = "tiny",
    seed: Annotated[int, typer.Option(help="Generator seed")] = 0,
    retrieval_steps: Annotated[
        int, typer.Option(help="Optimizer steps of the demo's dual-encoder fine-tuning (cpu profile)", min=1)
    ] = 150,
    ranking_steps: Annotated[
        int, typer.Option(help="Optimizer steps of the demo's GR training", min=1)
    ] = 150,
    retrieval: Annotated[
        bool, typer.Option("--retrieval/--no-retrieval", help="Run the two training DAGs too")
    ] = True,
) -> None:
    """Run the main job end to end through the Airflow DAGs (`airflow dags test`, SQLite metadata DB):
    feed_features (synth → ingest → Spark features → GX gate → drift → Delta → Feast) →
    feed_retrieval_training (encoder → gate → Milvus) → feed_ranking_training (GR → gate) → a member's feed;
    writes reports/demo.json."""
    from feed.orchestration import dags_test, migrate
    from feed.reports import write_report
    from pipelines import feature_store

    settings = ctx.obj
    paths = settings.paths()
    total = 6 if retrieval else 3
    stages: dict[str, float] = {}
    t_start = time.perf_counter()
    with _stage(1, total, "Airflow metadata DB (SQLite) → airflow db migrate", stages, "airflow_init"):
        typer.echo(f"      AIRFLOW_HOME {migrate(paths)}")
    first, last = _logical_date(settings, scale, seed)
    conf = {"scale": scale, "seed": seed, "backfill_from": first.isoformat()}
    with _stage(
        2,
        total,
        f"DAG feed_features {last} (initial load from {first}): synth {scale} → ingest → Spark "
        "features → GX gate → drift → Delta → Feast",
        stages,
        "feed_features",
    ):
        _run_dag(dags_test(paths, "feed_features", last, conf))
    title = "one member's online features and a point-in-time training frame"
    with _stage(3, total, title, stages, "feast"):
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
        retrieval_conf = {"profile": "cpu", "steps": retrieval_steps, "seed": seed, "max_eval_anchors": 500}
        with _stage(
            4,
            total,
            f"DAG feed_retrieval_training {last}: set → encoder ({retrieval_steps} steps) → Recall@10 "
            "gate → embeddings → Milvus alias → Feast",
            stages,
            "feed_retrieval_training",
        ):
            _run_dag(dags_test(paths, "feed_retrieval_training", last, retrieval_conf))
            _print_gate(paths.artifacts / "retrieval")
        with _stage(
            5,
            total,
            f"DAG feed_ranking_training {last}: sequences → GR ({ranking_steps} steps) → per-task AUC gate",
            stages,
            "feed_ranking_training",
        ):
            ranking_conf = {"steps": ranking_steps, "seed": seed}
            _run_dag(dags_test(paths, "feed_ranking_training", last, ranking_conf))
            _print_gate(paths.artifacts / "ranking")
        with _stage(
            6,
            total,
            "serving: feed service (FastAPI) → Feast online → Milvus top-500 → GR → a member's feed",
            stages,
            "feed",
        ):
            _serve_and_show(paths, member_id)
    seconds = time.perf_counter() - t_start
    out = write_report(
        "demo",
        {"seconds": round(seconds, 1), "stages": {k: round(v, 1) for k, v in stages.items()}},
        {
            "scale": scale,
            "seed": seed,
            "retrieval_steps": retrieval_steps,
            "ranking_steps": ranking_steps,
            "retrieval": retrieval,
            "logical_date": last.isoformat(),
            "backfill_from": first.isoformat(),
        },
        notes=[
            "stages 2, 4 and 5 are `airflow dags test` runs of the DAGs in dags/ (SQLite metadata DB under "
            "FEED_HOME/airflow); 3 and 6 read what they produced"
        ],
        subdir="",
    )
    typer.secho(f"\ndemo finished in {seconds:.0f}s ({out})", fg=typer.colors.GREEN, bold=True)


def _run_dag(result: DagTestResult) -> None:
    typer.echo(f"      {result.dag_id}: {result.state} in {result.seconds:.0f}s (log {result.log})")


def _print_gate(model_dir: Path) -> None:
    """The served version and the numbers its gate saw (written by the DAG's evaluate task)."""
    import json

    from training.versions import current_version

    version = current_version(model_dir)
    typer.echo(f"      serving {model_dir.name}: {version or '(none promoted)'}")
    if version is None:
        return
    gate_file = model_dir / version / "gate_eval.json"  # retrieval: candidate vs current / untrained
    if gate_file.is_file():
        g = json.loads(gate_file.read_text())["summary"]
        against = g.get("current_version") or "the untrained encoder"
        baseline = g.get("current_recall_at_10", g.get("pretrained_recall_at_10"))
        shown = "–" if baseline is None else f"{baseline:.3f}"
        typer.echo(
            f"      Recall@10 on {g['n_evaluated']} test anchors: {g['candidate_recall_at_10']:.3f} "
            f"vs {against} {shown}"
        )
    metrics_file = model_dir / version / "metrics.json"  # ranking: per-task AUC on validation and test
    evaluation = json.loads(metrics_file.read_text()).get("eval", {}) if metrics_file.is_file() else {}
    if "test" in evaluation:
        aucs = ", ".join(f"{k[4:]} {v:.3f}" for k, v in evaluation["test"].items() if k.startswith("auc_"))
        typer.echo(f"      test AUC: {aucs}")


def _serve_and_show(paths: FeedPaths, member_id: int, k: int = 10) -> None:
    """Start the feed service in the background (left running), ask it for the member's feed over HTTP and
    print it with the per-item why and the stage timings."""
    import httpx

    from serving import server

    proc = server.start(paths)
    typer.echo(f"      feed service pid {proc.pid} at {proc.url} (log {proc.log_file})")
    response = httpx.post(f"{proc.url}/v1/feed", json={"member_id": member_id, "k": k}, timeout=60)
    response.raise_for_status()
    body = response.json()
    versions = ", ".join(f"{m} {v}" for m, v in body["model_versions"].items())
    typer.secho(
        f"\n  POST /v1/feed member_id={member_id} k={k} → {len(body['items'])} of {body['candidates']} "
        f"candidates ({versions}; fallbacks: {', '.join(body['fallbacks']) or 'none'})",
        bold=True,
    )
    for item in body["items"]:
        tasks = item["tasks"] or {}
        probs = " ".join(f"{t} {tasks[t]:.2f}" for t in ("click", "like", "comment") if t in tasks)
        text = " ".join(str(item["text"] or "").split())
        typer.echo(
            f"    {item['position']:>2}. post {item['post_id']:<6} author {item['author_id']:<5} "
            f"score {item['score']:.3f}  {probs}  {text[:48]}"
        )
        typer.echo(f"        why: {item['why']['text']}")
    timings = ", ".join(f"{stage} {ms:.1f}" for stage, ms in body["timings_ms"].items())
    typer.echo(f"      stage timings (ms): {timings}")
    typer.secho(
        f"\n  the feed service keeps running: {proc.url}/ui (inspection page), {proc.url}/docs, "
        f"{proc.url}/metrics — stop it with `feed serve --stop`",
        fg=typer.colors.GREEN,
    )
