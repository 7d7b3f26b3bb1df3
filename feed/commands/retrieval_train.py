"""``feed train retrieval``: fine-tune the dual encoder with a frozen profile (tiny / cpu / gpu).

The examples come from a JSONL file of RetrievalExample dicts (member_text, positive_text,
hard_negative_texts, easy_negative_texts) until the training-set → prompts step is wired in. Under
``torchrun`` every rank runs this command; only rank 0 writes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer


def _load_set(ctx: typer.Context, name: str) -> Any:
    from training.data.retrieval_set import RetrievalSet, RetrievalSetError, set_dir

    path = set_dir(ctx.obj.paths(), name)
    try:
        return RetrievalSet.load(path)
    except (RetrievalSetError, FileNotFoundError) as exc:
        print(
            f"error: no retrieval set {name!r} at {path} ({exc}); run `feed train build-retrieval-set` first"
        )
        raise typer.Exit(code=2) from exc


def _print_results(results: dict[str, dict[str, Any]]) -> None:
    print(f"  {'method':<12} {'R@10':>7} {'R@50':>7} {'R@100':>7} {'NDCG@10':>8} {'cold R@10':>10}")
    for name, r in results.items():
        cells = [r.get(k) for k in ("recall_at_10", "recall_at_50", "recall_at_100", "ndcg_at_10")]
        cold = r.get("cold_start_recall_at_10")
        text = " ".join(f"{'–' if v is None else f'{v:.4f}':>7}" for v in cells)
        print(f"  {name:<12} {text} {'–' if cold is None else f'{cold:.4f}':>10}")


def train_retrieval(
    ctx: typer.Context,
    profile: Annotated[str, typer.Option(help="Preset: tiny (seconds), cpu (< 1 h on 2 cores), gpu")] = "cpu",
    set_name: Annotated[
        str, typer.Option("--set", help="Retrieval set (feed train build-retrieval-set --name)")
    ] = "default",
    examples: Annotated[
        Path | None,
        typer.Option(help="Train on a JSONL of RetrievalExample dicts instead of a set", dir_okay=False),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Model version folder under artifacts/retrieval/ [default: time]")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the profile's optimizer steps", min=1)] = None,
    counts: Annotated[str, typer.Option(help="Prompt stats: percentile tokens or raw counts")] = "percentile",
    history: Annotated[
        str, typer.Option(help="Member history: engaged posts or every impression")
    ] = "engaged",
    n_hard: Annotated[int | None, typer.Option(help="Hard negatives per member [profile's]", min=0)] = None,
    max_train_anchors: Annotated[int | None, typer.Option(help="Subsample the train split", min=1)] = None,
    max_eval_anchors: Annotated[int, typer.Option(help="Test anchors evaluated (sampled)", min=1)] = 1500,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Evaluate on test, write report")] = True,
    backbone: Annotated[
        str | None, typer.Option(help="Local Hugging Face checkpoint folder [default: shipped MiniLM]")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the version's last checkpoint")] = False,
    seed: Annotated[int, typer.Option(help="Seed of init order, sampling and subsampling")] = 0,
) -> None:
    """Train a retrieval model version on a retrieval set (or a JSONL of examples), then evaluate it against
    the pretrained encoder, popularity, TF-IDF and BM25 on the test split (reports/retrieval_eval.json).
    The version is NOT promoted: CURRENT changes only after the quality gate."""
    import dataclasses
    import logging

    from training.retrieval.profiles import get_profile
    from training.retrieval.train import ExampleError, load_examples, train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    name = version or dt.datetime.now(dt.UTC).strftime("v%Y%m%d-%H%M%S")
    out_dir = ctx.obj.paths().artifacts / "retrieval" / name
    try:
        preset = get_profile(profile)
        if examples is None:
            from training.retrieval.pipeline import RetrievalRunConfig, train_and_evaluate

            run = RetrievalRunConfig(
                profile=profile,
                counts=counts,  # type: ignore[arg-type]
                history=history,  # type: ignore[arg-type]
                n_hard=n_hard,
                steps=steps,
                seed=seed,
                max_train_anchors=max_train_anchors,
                max_eval_anchors=max_eval_anchors,
            )
        else:
            rows, skipped = load_examples(examples)
    except (ValueError, ExampleError, OSError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc

    if examples is None:
        rset = _load_set(ctx, set_name)
        outcome = train_and_evaluate(
            rset, run, out_dir, evaluate_pretrained=evaluate, write_report=evaluate, train_only=not evaluate
        )
        result = outcome.train
        n_examples = outcome.n_examples
    else:
        if sum(skipped.values()):
            print("skipped examples: " + ", ".join(f"{k}={v}" for k, v in skipped.items() if v))
        enc_cfg = (
            preset.encoder if backbone is None else dataclasses.replace(preset.encoder, backbone=backbone)
        )
        train_cfg = preset.train if steps is None else dataclasses.replace(preset.train, steps=steps)
        try:
            result = train(rows, enc_cfg, train_cfg, out_dir, resume=resume)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}")
            raise typer.Exit(code=2) from exc
        n_examples, outcome = len(rows), None
    print(
        f"retrieval {name}: {result.step} steps on {n_examples:,} examples, loss {result.first_loss:.4f} → "
        f"{result.final_loss:.4f}, {result.examples_per_second:.1f} examples/s, {result.seconds:.0f} s"
    )
    print(f"wrote {out_dir} (not promoted)")
    if outcome is not None and outcome.results:
        _print_results(outcome.results)
        if outcome.report is not None:
            print(f"wrote {outcome.report}")


def eval_retrieval(
    ctx: typer.Context,
    version: Annotated[
        str, typer.Option(help="Model version under artifacts/retrieval/ (or CURRENT)")
    ] = "CURRENT",
    set_name: Annotated[str, typer.Option("--set", help="Retrieval set to evaluate on")] = "default",
    profile: Annotated[
        str, typer.Option(help="Profile the version was trained with (prompt budgets)")
    ] = "cpu",
    counts: Annotated[str, typer.Option(help="Prompt stats: percentile tokens or raw counts")] = "percentile",
    max_eval_anchors: Annotated[int, typer.Option(help="Test anchors evaluated (sampled)", min=1)] = 1500,
    seed: Annotated[int, typer.Option(help="Seed of the anchor sample")] = 0,
) -> None:
    """Evaluate a trained version against the pretrained encoder and the popularity / TF-IDF / BM25 baselines
    on the test split: Recall@10/50/100, NDCG@10, cold-start, popularity–similarity correlation."""
    from training.retrieval.model import DualEncoder
    from training.retrieval.pipeline import (
        RetrievalRunConfig,
        RunPlan,
        evaluate_models,
        pretrained_encoder,
        write_run_report,
    )

    root = ctx.obj.paths().artifacts / "retrieval"
    if version == "CURRENT":
        current = root / "CURRENT"
        if not current.is_file():
            print(f"error: {current} does not exist: pass --version or promote a version first")
            raise typer.Exit(code=2)
        version = current.read_text().strip()
    try:
        run = RetrievalRunConfig(
            profile=profile,
            counts=counts,
            max_eval_anchors=max_eval_anchors,
            seed=seed,  # type: ignore[arg-type]
        )
        model = DualEncoder.load(root / version)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    rset = _load_set(ctx, set_name)
    models = {"fine_tuned": model, "pretrained": pretrained_encoder(RunPlan.of(run), run.pretrained_baseline)}
    results = evaluate_models(rset, run, models)
    _print_results(results)
    print(f"wrote {write_run_report(rset, run, results, model_version=version)}")
