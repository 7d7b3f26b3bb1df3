"""``feed train ranking`` and ``feed train eval-ranking``: the GR ranker on a ranking set
(``feed train build-ranking-set``), and its evaluation against the baselines and on MovieLens.

Under ``torchrun`` every rank runs ``feed train ranking``; only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

ACTION_ENCODINGS = ("sum", "interleave")
KERNEL_HELP = "Attention and AUC kernels: auto (Triton on CUDA, PyTorch reference elsewhere), pytorch, triton"


def _set_path(ctx: typer.Context, name: str) -> Path:
    from pipelines.ranking_set import set_dir

    path = set_dir(ctx.obj.paths(), name)
    if not (path / "build_report.json").is_file():
        print(
            f"error: no ranking set {name!r} at {path}; "
            f"run `feed train build-ranking-set --name {name}` first"
        )
        raise typer.Exit(code=2)
    return path


def _train_config(steps: int, token_budget: int, lr: float, device: str, seed: int, checkpoint: str) -> Any:
    from training.ranking.train import RankingTrainConfig

    if checkpoint not in ("async", "sync", "none"):
        raise typer.BadParameter("choose async, sync or none", param_hint="--checkpoint")
    return RankingTrainConfig(
        steps=steps,
        token_budget=token_budget,
        lr=lr,
        warmup_steps=max(1, steps // 10),
        device=device,
        seed=seed,
        checkpoint=checkpoint,  # type: ignore[arg-type]
        checkpoint_every=max(1, steps // 4),
    )


def _model_config(
    d_model: int, n_layers: int, n_heads: int, max_history: int, action_encoding: str, kernel: str = "auto"
) -> Any:
    from kernels.common import KERNEL_CHOICES
    from training.ranking.model import GRConfig

    if kernel not in KERNEL_CHOICES:
        raise typer.BadParameter(f"choose from {', '.join(KERNEL_CHOICES)}", param_hint="--kernel")

    if action_encoding not in ACTION_ENCODINGS:
        raise typer.BadParameter(f"choose from {', '.join(ACTION_ENCODINGS)}", param_hint="--action-encoding")
    try:
        return GRConfig(
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            max_history=max_history,
            action_encoding=action_encoding,  # type: ignore[arg-type]
            kernel=kernel,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def train_ranking(
    ctx: typer.Context,
    set_name: Annotated[
        str, typer.Option("--set", help="Ranking set (build-ranking-set --name)")
    ] = "default",
    version: Annotated[
        str | None, typer.Option(help="Version folder under artifacts/ranking/ [default: time]")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps", min=1)] = 300,
    token_budget: Annotated[int, typer.Option(help="Tokens per packed batch", min=2)] = 16_384,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate (warmup + cosine)")] = 1e-3,
    d_model: Annotated[int, typer.Option(help="Model width", min=8)] = 64,
    n_layers: Annotated[int, typer.Option(help="Transformer blocks", min=1)] = 2,
    n_heads: Annotated[int, typer.Option(help="Attention heads", min=1)] = 2,
    max_history: Annotated[int, typer.Option(help="Newest interactions kept per member", min=0)] = 1024,
    action_encoding: Annotated[str, typer.Option(help="sum or interleave")] = "sum",
    checkpoint: Annotated[str, typer.Option(help="async, sync or none")] = "async",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    kernel: Annotated[str, typer.Option(help=KERNEL_HELP)] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of init and batch order")] = 0,
) -> None:
    """Train a GR version on a ranking set's train split and score its validation split. Not promoted:
    `feed train eval-ranking` gates against the baseline and promotes."""
    import logging

    import torch

    from training.data.ranking_data import load_ranking_arrays
    from training.ranking.evaluate import fit_to_data
    from training.ranking.metrics import summarize
    from training.ranking.model import GenerativeRanker
    from training.ranking.train import METRICS_FILE, predict, train_ranker
    from training.retrieval.train import DistContext

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    path = _set_path(ctx, set_name)
    train_cfg = _train_config(steps, token_budget, lr, device, seed, checkpoint)
    train = load_ranking_arrays(path, "train")
    model_cfg = fit_to_data(
        _model_config(d_model, n_layers, n_heads, max_history, action_encoding, kernel), train
    )
    name = version or dt.datetime.now(dt.UTC).strftime("v%Y%m%d-%H%M%S")
    out_dir = ctx.obj.paths().artifacts / "ranking" / name
    torch.manual_seed(seed)  # the initial weights (every rank the same; DDP also broadcasts rank 0's)
    result = train_ranker(GenerativeRanker(model_cfg), train, train_cfg, out_dir, model_cfg=model_cfg)
    if not DistContext.start().is_main:
        return  # under torchrun only rank 0 evaluates and writes
    validation = load_ranking_arrays(path, "validation")
    logits, labels, sessions = predict(result.model, validation, model_cfg, device=train_cfg.device)
    metrics = summarize(logits, labels, sessions)
    doc = json.loads((out_dir / METRICS_FILE).read_text())
    doc["eval"] = {"validation": metrics}
    (out_dir / METRICS_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"trained {out_dir}: loss {result.first_loss:.4f} → {result.final_loss:.4f} in {result.seconds:.0f} s"
    )
    print("validation " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("auc_")))
    print(f"validation ndcg_at_10={metrics['ndcg_at_10']:.4f} ({metrics['ndcg_sessions']} sessions)")


def eval_ranking(
    ctx: typer.Context,
    set_name: Annotated[
        str, typer.Option("--set", help="Ranking set (build-ranking-set --name)")
    ] = "default",
    steps: Annotated[int, typer.Option(help="Optimizer steps per arm (all arms the same)", min=1)] = 300,
    token_budget: Annotated[int, typer.Option(help="Tokens per packed batch", min=2)] = 16_384,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate")] = 1e-3,
    d_model: Annotated[int, typer.Option(help="Model width (all arms)", min=8)] = 64,
    n_layers: Annotated[int, typer.Option(help="Transformer blocks", min=1)] = 2,
    max_history: Annotated[int, typer.Option(help="Newest interactions kept per member", min=0)] = 1024,
    arms: Annotated[str, typer.Option(help="Comma-separated arms (default: all but gr_no_context)")] = "",
    movielens: Annotated[
        bool, typer.Option("--movielens/--no-movielens", help="Also run the MovieLens HSTU protocol")
    ] = True,
    ml_data_dir: Annotated[
        Path | None, typer.Option(help="MovieLens folder [FEED_DATA_DIR, else ML-100K fetched]")
    ] = None,
    ml_epochs: Annotated[int | None, typer.Option(help="MovieLens epochs per model", min=1)] = None,
    ml_threads: Annotated[
        int | None,
        typer.Option(help="torch threads for MovieLens (1 is fastest on a busy 2-core box)", min=1),
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Promote the GR when it passes the gate")
    ] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    kernel: Annotated[str, typer.Option(help=KERNEL_HELP)] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of every arm")] = 0,
    reports_dir: Annotated[
        Path | None, typer.Option(help="Write ranking_eval.{json,md} here instead of the repo's reports/")
    ] = None,
) -> None:
    """GR vs the non-sequential baseline and its ablations on the ranking set (per-task AUC, NE, NDCG@10),
    plus MovieLens under the HSTU protocol (GR backbone vs SASRec) → reports/ranking_eval.{json,md}. The
    GR is published as artifacts/ranking/<version> and promoted when its validation click AUC beats the
    baseline's."""
    import logging

    from training.ranking.evaluate import ARMS, DEFAULT_ARMS, SyntheticEvalConfig, evaluate_synthetic, gate

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    chosen_arms = tuple(a.strip() for a in arms.split(",") if a.strip()) or DEFAULT_ARMS
    if set(chosen_arms) - set(ARMS):
        raise typer.BadParameter(f"choose from {', '.join(ARMS)}", param_hint="--arms")
    path = _set_path(ctx, set_name)
    cfg = SyntheticEvalConfig(
        set_name=set_name,
        arms=chosen_arms,
        model=_model_config(d_model, n_layers, 2, max_history, "sum", kernel),
        train=_train_config(steps, token_budget, lr, device, seed, "none"),
    )
    paths = ctx.obj.paths()
    stamp = dt.datetime.now(dt.UTC).strftime("v%Y%m%d-%H%M%S")
    runs_dir = paths.artifacts / "ranking" / "eval_runs" / stamp
    synthetic = evaluate_synthetic(path, runs_dir, cfg)
    passed, why = gate(synthetic)
    synthetic["gate"] = {"passed": passed, "reason": why}
    _print_synthetic(synthetic)
    ml: dict[str, Any] | None = None
    if movielens:
        from feed.commands.ranking_eval import print_movielens, resolve_data_dir
        from training.ranking.sequential import SequentialConfig, run_movielens

        data_dir, _ = resolve_data_dir(ctx, ml_data_dir, None)
        if ml_threads is not None:
            import torch

            torch.set_num_threads(ml_threads)
        ml = run_movielens(data_dir, SequentialConfig(epochs=ml_epochs, device=device, seed=seed))
        print_movielens(ml)
    json_path, md_path = write_ranking_report(synthetic, ml, cfg, reports_dir=reports_dir)
    print(f"wrote {json_path} and {md_path}")
    print(why)
    if promote and passed and synthetic["gr_arm"]:
        from training.ranking.evaluate import promote as promote_version
        from training.ranking.evaluate import publish_version

        ranking_dir = paths.artifacts / "ranking"
        publish_version(runs_dir / synthetic["gr_arm"], ranking_dir, stamp)
        promote_version(ranking_dir, stamp)
        print(f"promoted ranking version {stamp} ({synthetic['gr_arm']})")


def _print_synthetic(results: dict[str, Any]) -> None:
    print(f"  {'arm':<16} {'AUC click':>9} {'AUC like':>9} {'AUC skip':>9} {'NE click':>9} {'NDCG@10':>8}")
    for arm, r in results["arms"].items():
        t = r["test"]
        print(
            f"  {arm:<16} {t['auc_click']:>9.4f} {t['auc_like']:>9.4f} {t['auc_skip']:>9.4f} "
            f"{t['ne_click']:>9.4f} {t['ndcg_at_10']:>8.4f}"
        )
    print(f"  action encoding chosen on validation: {results['chosen_action_encoding']}")


def write_ranking_report(
    synthetic: dict[str, Any], ml: dict[str, Any] | None, cfg: Any, reports_dir: Path | None = None
) -> tuple[Path, Path]:
    """reports/ranking_eval.json (contract keys in ``summary``; every arm under ``details``) + .md table."""
    from feed.config import REPORTS_DIR
    from feed.reports import write_report
    from training.ranking.evaluate import markdown_table
    from training.ranking.features import TASKS

    root = reports_dir or REPORTS_DIR
    arms = synthetic["arms"]
    gr = arms.get(synthetic["gr_arm"] or "", {}).get("test", {})
    base = arms.get("baseline", {}).get("test", {})
    notes = [
        "synthetic: every arm trained in this run on the same ranking set, packed batches and steps; test "
        "split read only for these numbers; the action encoding (sum vs interleave) chosen on validation "
        "click AUC.",
    ]
    models = (ml or {}).get("models", {})
    if ml is None:
        notes.append("MovieLens not run (--no-movielens): ml100k_* are null")
    elif ml.get("dataset") != "ml-100k":
        notes.append(f"MovieLens data set was {ml.get('dataset')}, not ml-100k: ml100k_* keys are null")
        models = {}
    summary = {
        "ml100k_hr_at_10": models.get("gr", {}).get("hr_at_10"),
        "ml100k_ndcg_at_10": models.get("gr", {}).get("ndcg_at_10"),
        "ml100k_sasrec_hr_at_10": models.get("sasrec", {}).get("hr_at_10"),
        "ml100k_sasrec_ndcg_at_10": models.get("sasrec", {}).get("ndcg_at_10"),
        "synthetic_click_auc": gr.get("auc_click"),
        "synthetic_click_auc_baseline": base.get("auc_click"),
        "synthetic_ndcg_at_10": gr.get("ndcg_at_10"),
        "synthetic_ndcg_at_10_baseline": base.get("ndcg_at_10"),
        "chosen_action_encoding": synthetic["chosen_action_encoding"],
        "gate_passed": synthetic["gate"]["passed"],
    }
    config = {
        "synthetic": dataclasses.asdict(cfg),
        "movielens": (ml or {}).get("config"),
    }
    path = write_report(
        "ranking_eval",
        summary,
        config,
        notes=notes,
        details={"synthetic": synthetic, "movielens": ml},
        subdir="",
        reports_dir=root,
    )
    md = [
        "# Ranking evaluation",
        "",
        f"Synthetic ranking set `{cfg.set_name}`, test split, {cfg.train.steps} steps per arm "
        f"(token budget {cfg.train.token_budget}); GR arm = `{synthetic['gr_arm']}`.",
        "",
        markdown_table(synthetic, TASKS),
        "",
        f"Gate: {synthetic['gate']['reason']}",
    ]
    if ml is not None:
        md += [
            "",
            f"## {ml.get('dataset')} — HSTU protocol (leave-one-out, full ranking, history excluded)",
            "",
            "| model | HR@10 | NDCG@10 |",
            "|---|---|---|",
        ]
        md += [f"| {m} | {r['hr_at_10']:.4f} | {r['ndcg_at_10']:.4f} |" for m, r in ml["models"].items()]
        md += ["", "Published ML-1M anchors (HR@10/NDCG@10): SASRec .2853/.1603, HSTU-large .3294/.1893."]
    md_path = path.with_suffix(".md")
    md_path.write_text("\n".join(md) + "\n")
    return path, md_path
