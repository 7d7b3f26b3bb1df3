"""``feed nearline prompts|embed|index|run-all|status|publish``: the three nearline pipelines.

Each worker is its own process: ``--once`` drains its input and exits (tests, cron), without it the worker
polls until SIGTERM / Ctrl-C. ``run-all`` supervises all three as child processes (restarting one that dies);
``status`` prints each stage's offset, pending input versions and lag p50/p95; ``publish`` appends synthetic
events (new posts, engagements, profile changes) through the validated publish API.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from serving.nearline.config import NearlineConfig

OnceOpt = Annotated[bool, typer.Option("--once", help="Drain the input, commit, and exit")]
PollOpt = Annotated[float, typer.Option(help="Seconds between looks at an idle input log", min=0.0)]
MaxVersionsOpt = Annotated[int, typer.Option(help="Input commits per batch at most", min=1)]


def _stop_event() -> threading.Event:
    """SIGTERM and SIGINT end the loop after the current step (a step is never half-committed anyway)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _config(**overrides: object) -> NearlineConfig:
    from serving.nearline.config import NearlineConfig, NearlineSettings

    return NearlineConfig(crash=NearlineSettings().crash_point(), **overrides)  # type: ignore[arg-type]


def _run(ctx: typer.Context, stage: str, once: bool, cfg: NearlineConfig) -> None:
    from pipelines.feature_store import FeatureStoreError
    from serving.nearline.run import make_worker, run_worker

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage} %(levelname)s %(message)s")
    logging.getLogger("feast").setLevel(logging.WARNING)  # "Registry cache expired" on every push
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` writes every thread's stack to the log
    paths = ctx.obj.paths()
    # start-up: a bad setting, no promoted model, missing tables, Feast not applied → exit 2 (run-all stops)
    try:
        worker = make_worker(stage, paths, cfg)
    except (ValueError, ConnectionError, FeatureStoreError) as exc:
        print(f"error: {stage}: {exc}")
        raise typer.Exit(code=2) from exc
    try:  # a failed step → exit 1: the state may be ahead of the offset; a restart (run-all) replays
        summary = run_worker(worker, cfg, once=once, stop=_stop_event())
    except (ValueError, ConnectionError, FeatureStoreError) as exc:
        print(f"error: {stage}: {exc}")
        raise typer.Exit(code=1) from exc
    print(
        f"{stage}: {summary.batches} batch(es), {summary.commits_consumed} input commit(s), "
        f"offset {summary.offset}, {summary.seconds:.1f} s"
    )


def prompts(
    ctx: typer.Context,
    once: OnceOpt = False,
    poll_s: PollOpt = 0.2,
    max_versions: MaxVersionsOpt = 200,
) -> None:
    """Events → prompts (new posts, percentile-bucket moves, engagements, profile changes)."""
    _run(ctx, "prompts", once, _config(poll_s=poll_s, max_versions=max_versions))


def embed(
    ctx: typer.Context,
    once: OnceOpt = False,
    poll_s: PollOpt = 0.2,
    max_versions: MaxVersionsOpt = 200,
    batch_size: Annotated[int, typer.Option(help="Prompts per micro-batch (flush when reached)", min=1)] = 32,
    deadline_s: Annotated[
        float, typer.Option(help="Flush when the oldest prompt waited this long", min=0.0)
    ] = 1.0,
) -> None:
    """Prompts → embeddings through the promoted encoder, micro-batched by size and deadline."""
    cfg = _config(
        poll_s=poll_s, max_versions=max_versions, embed_batch_size=batch_size, embed_deadline_s=deadline_s
    )
    _run(ctx, "embed", once, cfg)


def index(
    ctx: typer.Context,
    once: OnceOpt = False,
    poll_s: PollOpt = 0.2,
    max_versions: MaxVersionsOpt = 200,
    uri: Annotated[
        str | None, typer.Option(help="Milvus URI [default: this home's Milvus Lite server]")
    ] = None,
    feast: Annotated[bool, typer.Option(help="Push embeddings and fresh percentiles to Feast")] = True,
    retry_attempts: Annotated[
        int | None,
        typer.Option(help="Give up after this many failed sink attempts [default: forever; --once: 5]"),
    ] = None,
) -> None:
    """Embeddings → Milvus upserts + Feast pushes; offset committed after the sinks."""
    attempts = retry_attempts if retry_attempts is not None else (5 if once else None)
    cfg = _config(
        poll_s=poll_s, max_versions=max_versions, milvus_uri=uri, push_to_feast=feast, retry_attempts=attempts
    )
    _run(ctx, "index", once, cfg)


def run_all(
    ctx: typer.Context,
    restart_delay_s: Annotated[
        float, typer.Option(help="Wait before restarting a dead worker", min=0.0)
    ] = 1.0,
) -> None:
    """Start the three workers as child processes; restart one that dies; Ctrl-C stops all."""
    from serving.nearline.supervisor import Supervisor, SupervisorConfig, SupervisorError, log_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s run-all %(levelname)s %(message)s")
    paths = ctx.obj.paths()
    supervisor = Supervisor(paths, SupervisorConfig(restart_delay_s=restart_delay_s))
    print(f"run-all: prompts, embed, index (logs in {log_dir(paths)}); Ctrl-C stops all")
    try:
        supervisor.run(_stop_event())
    except SupervisorError as exc:
        print(f"error: run-all: {exc}")
        raise typer.Exit(code=2) from exc
    print(f"run-all: stopped (restarts: {supervisor.restarts})")


def status(
    ctx: typer.Context,
    window: Annotated[
        int, typer.Option(help="Newest output rows per stage the lag is computed over", min=1)
    ] = 1000,
) -> None:
    """Offset, pending input versions and lag p50/p95 per stage."""
    from serving.nearline.status import format_status, status

    print(format_status(status(ctx.obj.paths(), window=window)))


def publish(
    ctx: typer.Context,
    posts: Annotated[int, typer.Option(help="New posts", min=0)] = 10,
    engagements: Annotated[int, typer.Option(help="Engagements (on the new posts first)", min=0)] = 30,
    profiles: Annotated[int, typer.Option(help="Profile changes", min=0)] = 2,
    seed: Annotated[int, typer.Option(help="Producer seed")] = 0,
) -> None:
    """Publish synthetic events (validated; one commit per kind)."""
    from serving.nearline.events import EventError
    from serving.nearline.producer import ProducerConfig, SyntheticProducer

    try:
        producer = SyntheticProducer(ctx.obj.paths(), ProducerConfig(seed=seed))
        for n, send in (
            (posts, producer.publish_posts),
            (engagements, producer.publish_engagements),
            (profiles, producer.publish_profile_changes),
        ):
            if n:
                result = send(n)
                print(f"published {n} event(s) → nearline_events version {result.version}")
    except EventError as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
