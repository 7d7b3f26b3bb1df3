"""The ``feed`` console script: one entry point that parses config once and calls library functions.

Command modules (``feed/commands/*.py``) import only light things at module level so ``feed --help`` is fast;
Spark, Feast, GX and torch are imported inside the commands that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feed.commands import audit as audit_cmds
from feed.commands import bench as bench_cmds
from feed.commands import data as data_cmds
from feed.commands import demo as demo_cmds
from feed.commands import embed as embed_cmds
from feed.commands import feast as feast_cmds
from feed.commands import features as features_cmds
from feed.commands import index as index_cmds
from feed.commands import nearline as nearline_cmds
from feed.commands import parity as parity_cmds
from feed.commands import quality as quality_cmds
from feed.commands import ranking as ranking_cmds
from feed.commands import ranking_bench as ranking_bench_cmds
from feed.commands import ranking_eval as ranking_eval_cmds
from feed.commands import ranking_set as ranking_set_cmds
from feed.commands import retrieval_set as retrieval_set_cmds
from feed.commands import retrieval_train as retrieval_train_cmds
from feed.commands import serve as serve_cmds
from feed.commands import serving_bench as serving_bench_cmds
from feed.commands.airflow import airflow_app
from feed.commands.erase import erase_app
from feed.commands.model import model_app
from feed.config import FeedSettings

app = typer.Typer(
    name="feed",
    help="Feature-store-centric LLM feed recommender: data → Spark features → Delta → GX gate → Feast → …",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

data_app = typer.Typer(help="Synthetic data, real-data loaders, and ingestion into the raw Delta tables.")
data_app.command("synth")(data_cmds.synth)
data_app.command("load-movielens")(data_cmds.load_movielens)
data_app.command("load-mind")(data_cmds.load_mind)
data_app.command("ingest")(data_cmds.ingest)
app.add_typer(data_app, name="data", no_args_is_help=True)

features_app = typer.Typer(help="Spark feature pipeline, quality gate and the Feast feature store.")
features_app.command("build")(features_cmds.build)
features_app.command("validate")(quality_cmds.validate)
features_app.command("apply")(feast_cmds.apply)
features_app.command("materialize")(feast_cmds.materialize)
features_app.command("online")(feast_cmds.online)
features_app.command("historical")(feast_cmds.historical)
app.add_typer(features_app, name="features", no_args_is_help=True)

train_app = typer.Typer(help="Training sets, model training and evaluation.")
train_app.command("build-retrieval-set")(retrieval_set_cmds.build_retrieval_set)
train_app.command("build-ranking-set")(ranking_set_cmds.build_ranking_set)
train_app.command("retrieval")(retrieval_train_cmds.train_retrieval)
train_app.command("eval-retrieval")(retrieval_train_cmds.eval_retrieval)
train_app.command("ranking")(ranking_cmds.train_ranking)
train_app.command("eval-ranking")(ranking_cmds.eval_ranking)
train_app.command("eval-movielens")(ranking_eval_cmds.eval_movielens)
app.add_typer(train_app, name="train", no_args_is_help=True)

embed_app = typer.Typer(help="Embed posts / members with a trained retrieval model into Delta tables.")
embed_app.command("posts")(embed_cmds.posts)
embed_app.command("members")(embed_cmds.members)
app.add_typer(embed_app, name="embed", no_args_is_help=True)

nearline_app = typer.Typer(
    help="Nearline pipelines: events → prompts → embeddings → Milvus + Feast, each its own process."
)
nearline_app.command("prompts")(nearline_cmds.prompts)
nearline_app.command("embed")(nearline_cmds.embed)
nearline_app.command("index")(nearline_cmds.index)
nearline_app.command("run-all")(nearline_cmds.run_all)
nearline_app.command("status")(nearline_cmds.status)
nearline_app.command("publish")(nearline_cmds.publish)
app.add_typer(nearline_app, name="nearline", no_args_is_help=True)

index_app = typer.Typer(help="The Milvus post index: backfill, alias, search, the local Milvus Lite server.")
index_app.command("backfill")(index_cmds.backfill)
index_app.command("search")(index_cmds.search)
index_app.command("status")(index_cmds.status)
index_app.command("use")(index_cmds.use)
index_app.add_typer(index_cmds.server_app, name="server")
app.add_typer(index_app, name="index", no_args_is_help=True)

bench_app = typer.Typer(help="Benchmarks; each writes reports/bench/<name>.json.")
bench_app.command("features")(bench_cmds.features)
bench_app.command("feast-online")(bench_cmds.feast_online)
bench_app.command("retrieval-ablations")(bench_cmds.retrieval_ablations)
bench_app.command("freshness")(bench_cmds.freshness)
bench_app.command("index")(bench_cmds.index)
bench_app.command("checkpoint")(ranking_bench_cmds.checkpoint)
bench_app.command("loader")(ranking_bench_cmds.loader)
bench_app.command("attention")(ranking_bench_cmds.attention)
bench_app.command("auc")(ranking_bench_cmds.auc)
bench_app.command("scoring")(bench_cmds.scoring)
bench_app.command("serving")(serving_bench_cmds.serving)
app.add_typer(bench_app, name="bench", no_args_is_help=True)
app.add_typer(airflow_app, name="airflow", no_args_is_help=True)
app.add_typer(model_app, name="model", no_args_is_help=True)
app.add_typer(erase_app, name="erase", no_args_is_help=True)

app.command("demo")(demo_cmds.demo)
app.command("serve")(serve_cmds.serve)
app.command("parity")(parity_cmds.parity)
app.command("audit")(audit_cmds.audit)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(help="Project home holding data/ and artifacts/ [env FEED_HOME; default: cwd]"),
    ] = None,
) -> None:
    """Read the configuration once; every command gets it as ``ctx.obj``."""
    settings = FeedSettings()
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    ctx.obj = settings


def main() -> None:
    app()


if __name__ == "__main__":
    main()
