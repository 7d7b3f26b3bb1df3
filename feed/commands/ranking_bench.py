"""``feed bench loader`` (the GR ranker's input pipeline), ``checkpoint`` and ``attention`` (the Triton
attention kernel); registered on the ``bench`` app in feed/cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def loader(
    ctx: typer.Context,
    set_path: Annotated[
        str | None,
        typer.Option(
            "--set", help="Also a built ranking set: a directory or a name under data/training/ranking/"
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Split of --set to load")] = "train",
    examples: Annotated[int | None, typer.Option(help="Synthetic examples [default: 20000]", min=1)] = None,
    token_budget: Annotated[
        int | None, typer.Option(help="Tokens per packed batch [default: 16384]", min=2)
    ] = None,
    max_history: Annotated[int, typer.Option(help="Newest history items kept per example", min=0)] = 1024,
    interleave: Annotated[
        bool, typer.Option(help="Two tokens per history item (interleaved action tokens)")
    ] = False,
    quick: Annotated[
        bool, typer.Option(help="Smoke run: 500 examples → <home>/artifacts/reports/bench/, not the repo")
    ] = False,
) -> None:
    """Token-budget packing loader vs DataLoader + pad-to-max collate: tokens/s and packing efficiency over
    one epoch, no model → loader.json."""
    from dataclasses import replace

    from bench.loader import LoaderBenchConfig, quick_config, run

    cfg = quick_config() if quick else LoaderBenchConfig()
    changes: dict = {
        "max_history": max_history,
        "split": split,
        "tokens_per_history_item": 2 if interleave else 1,
    }
    if examples is not None:
        changes["n_examples"] = examples
    if token_budget is not None:
        changes["token_budget"] = token_budget
    try:
        cfg = replace(cfg, **changes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    kw = {"reports_dir": ctx.obj.paths().artifacts / "reports"} if quick else {}  # quick: not in the repo
    try:
        out = run(ctx.obj, cfg, set_path=set_path, quick=quick, **kw)
    except FileNotFoundError as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    print(f"wrote {out}")


def checkpoint(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option(help="Tiny MLP, 6 steps (a smoke run) → <home>/artifacts/reports/bench/")
    ] = False,
    steps: Annotated[int | None, typer.Option(help="Steps per arm [default: 30]", min=1)] = None,
    rounds: Annotated[
        int | None, typer.Option(help="Rounds of baseline + every mode [default: 2]", min=1)
    ] = None,
    every: Annotated[int | None, typer.Option(help="Save every N steps [default: 10]", min=1)] = None,
    modes: Annotated[
        str, typer.Option(help="Comma-separated checkpointers to compare: sync, thread, process")
    ] = "sync,thread,process",
    fsync: Annotated[bool, typer.Option(help="fsync each checkpoint before the rename")] = True,
) -> None:
    """Step-loop stall of synchronous vs asynchronous (thread / process writer) checkpoints of a ≈ 50 M
    parameter model with AdamW → checkpoint.json {async_stall_s, sync_stall_s}."""
    from dataclasses import replace

    from bench.checkpoint import CheckpointBenchConfig, quick_config, run

    cfg = quick_config() if quick else CheckpointBenchConfig()
    changes: dict = {"modes": tuple(m.strip() for m in modes.split(",") if m.strip()), "fsync": fsync}
    if steps is not None:
        changes["steps"] = steps
    if every is not None:
        changes["every"] = every
    if rounds is not None:
        changes["rounds"] = rounds
    try:
        cfg = replace(cfg, **changes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    out = run(ctx.obj, cfg, quick=quick)  # quick → <home>/artifacts/reports (run's default), not the repo
    print(f"wrote {out}")


def attention(
    out: Annotated[
        Path | None,
        typer.Option(
            help="JSON path (the plot goes beside it) [default: reports/bench/attention.json; "
            "attention_quick.json with --quick; attention_cpu_check.json without CUDA]"
        ),
    ] = None,
    batch: Annotated[int, typer.Option(help="Members per batch (all with the same L and C)", min=1)] = 8,
    deadline_s: Annotated[
        float, typer.Option("--deadline-s", help="Cells not started after this many seconds are skipped")
    ] = 200.0,
    quick: Annotated[bool, typer.Option(help="Smaller grid: L ∈ {512, 1024}, C = 512")] = False,
) -> None:
    """Triton multi-item attention kernel vs SDPA with a materialised mask, compiled FlexAttention and
    per-candidate recomputation: forward and forward+backward ms over L × C on the GPU → attention.json.
    Without CUDA: a correctness-only pass under the Triton interpreter (speedups null)."""
    from dataclasses import replace

    import torch

    from bench.attention import AttentionBenchConfig, quick_config, run
    from feed.config import REPORTS_DIR
    from feed.reports import git_commit

    cfg = quick_config() if quick else AttentionBenchConfig()
    try:
        cfg = replace(cfg, batch=batch, deadline_s=deadline_s)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if out is None:  # a CPU check or a smoke run never overwrites the committed GPU report
        name = (
            "attention_cpu_check"
            if not torch.cuda.is_available()
            else "attention_quick"
            if quick
            else "attention"
        )
        out = REPORTS_DIR / "bench" / f"{name}.json"
    run(cfg, out, git_commit=git_commit())


def auc(
    gpu_json: Annotated[
        Path | None,
        typer.Option(help="Merge the GPU figures of a `python3 bench/auc.py` run made on a GPU machine"),
    ] = None,
    n: Annotated[int, typer.Option(help="Predictions per task", min=2)] = 1_000_000,
    tasks: Annotated[int, typer.Option(help="Tasks (columns)", min=1)] = 6,
    repeats: Annotated[int, typer.Option(help="Timed calls per arm (median)", min=1)] = 5,
) -> None:
    """Multi-label AUC (kernels.multilabel_auc) vs sklearn's roc_auc_score per task: CPU here, GPU (Triton)
    when CUDA is present or merged with --gpu-json → reports/bench/auc.json."""
    import json

    from bench.auc import AucBenchConfig, merge_gpu, run
    from feed.config import REPORTS_DIR
    from feed.reports import git_commit

    doc = run(AucBenchConfig(n=n, tasks=tasks, repeats=repeats), log=typer.echo)
    doc["git_commit"] = git_commit()
    if gpu_json is not None:
        doc = merge_gpu(doc, json.loads(gpu_json.read_text()))
    out = REPORTS_DIR / "bench" / "auc.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    typer.echo(json.dumps(doc["summary"], indent=2))
    typer.echo(f"wrote {out}")
