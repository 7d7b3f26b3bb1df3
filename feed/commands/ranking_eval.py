"""``feed train eval-ranking``, real-data half: MovieLens under the HSTU protocol (leave-one-out, full
ranking, HR@10 / NDCG@10), the GR backbone trained for next-item prediction vs SASRec with the same budget.

The data folder is ``--data-dir``, else ``FEED_DATA_DIR``, else ML-100K fetched once into
``<home>/data/external/ml-100k`` by ``scripts/get_ml100k.sh`` (the one real data set reachable from the build
machines; GroupLens terms: research use, never committed). ML-1M is not downloadable here: point
``--data-dir``/``FEED_DATA_DIR`` at a folder holding its ``ratings.dat`` and the same command runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

DATASETS = ("ml-100k", "ml-1m")
GET_ML100K = Path(__file__).resolve().parents[2] / "scripts" / "get_ml100k.sh"


def _fetch_ml100k(target: Path) -> Path:
    if any(target.glob("*.inter")):
        return target
    print(f"fetching MovieLens-100K into {target} (scripts/get_ml100k.sh)")
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(GET_ML100K), str(target)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"error: fetching ML-100K failed:\n{done.stderr.strip()}")
        raise typer.Exit(code=2)
    return target


def _dataset_of(path: Path) -> str:
    from pipelines.ingest import RawDataError
    from training.ranking.sequential import dataset_name

    try:
        return dataset_name(path)
    except RawDataError as exc:
        print(exc)
        raise typer.Exit(code=2) from exc


def resolve_data_dir(ctx: typer.Context, data_dir: Path | None, dataset: str | None) -> tuple[Path, str]:
    """(folder, dataset name): --data-dir, else FEED_DATA_DIR, else ML-100K fetched into
    <home>/data/external/ml-100k."""
    if dataset is not None and dataset not in DATASETS:
        raise typer.BadParameter(f"choose one of {', '.join(DATASETS)}", param_hint="--dataset")
    path = data_dir or ctx.obj.data_dir
    if path is None:
        if dataset not in (None, "ml-100k"):
            raise typer.BadParameter(
                f"{dataset} cannot be downloaded here: give --data-dir or set FEED_DATA_DIR",
                param_hint="--data-dir",
            )
        path = _fetch_ml100k(ctx.obj.paths().data / "external" / "ml-100k")
    path = Path(path)
    found = _dataset_of(path)
    if dataset is not None and found != dataset:
        raise typer.BadParameter(f"{path} holds {found}, not {dataset}", param_hint="--dataset")
    return path, found


def print_movielens(result: dict[str, Any]) -> None:
    d = result["data"]
    print(
        f"{result['dataset']}: {d['users']} users, {d['items']} items, {d['interactions']} interactions "
        f"(device {result['device']}, {result['seconds']:.0f} s)"
    )
    print(f"  {'model':<11} {'HR@10':>7} {'NDCG@10':>8} {'val HR':>7} {'val NDCG':>8} {'epoch':>6} "
          f"{'steps':>6} {'seconds':>8} {'params':>8}")  # fmt: skip
    for name, r in result["models"].items():
        epoch = r.get("best_epoch", "–")
        steps, secs, params = r.get("steps", "–"), r.get("seconds"), r.get("params", "–")
        print(
            f"  {name:<11} {r['hr_at_10']:>7.4f} {r['ndcg_at_10']:>8.4f} {r['val_hr_at_10']:>7.4f} "
            f"{r['val_ndcg_at_10']:>8.4f} {epoch!s:>6} {steps!s:>6} "
            f"{'–' if secs is None else f'{secs:.0f}':>8} {params!s:>8}"
        )
    print("  published ML-1M (HR@10/NDCG@10): SASRec .2853/.1603, HSTU-large .3294/.1893")


def eval_movielens(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="MovieLens folder [default: FEED_DATA_DIR, else ML-100K fetched into data/external]"
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="ml-100k or ml-1m [default: what the folder holds]")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Training epochs of each model [default: 50 on CPU, 200 on CUDA]", min=1),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Users per step [default: 32 on CPU, 128 on CUDA]", min=1)
    ] = None,
    d_model: Annotated[int, typer.Option(help="Model width (both models)", min=8)] = 64,
    n_layers: Annotated[int, typer.Option(help="Attention blocks (both models)", min=1)] = 2,
    n_heads: Annotated[int, typer.Option(help="Attention heads (both models)", min=1)] = 2,
    negatives: Annotated[
        int, typer.Option(help="Sampled-softmax negatives shared by a batch (0 = full softmax)", min=0)
    ] = 128,
    eval_every: Annotated[int, typer.Option(help="Epochs between validation passes", min=1)] = 5,
    models: Annotated[str, typer.Option(help="Comma-separated models: gr, sasrec")] = "gr,sasrec",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, batch order and negatives")] = 0,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch intra-op threads [default: torch's]; 1 is fastest on a shared 2-core box", min=1
        ),
    ] = None,
) -> dict[str, Any]:
    """MovieLens, HSTU protocol: leave-one-out, full ranking over all items (history excluded), HR@10 and
    NDCG@10 on test with the epoch chosen on validation; GR backbone vs SASRec (same budget), popularity."""
    import logging

    import torch

    from training.ranking.sequential import MODELS, SequentialConfig, run_movielens

    if threads is not None:
        torch.set_num_threads(threads)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    chosen = tuple(m.strip() for m in models.split(",") if m.strip())
    if not chosen or set(chosen) - set(MODELS):
        raise typer.BadParameter(f"choose from {', '.join(MODELS)}", param_hint="--models")
    if d_model % n_heads:
        raise typer.BadParameter("d_model must be a multiple of n_heads", param_hint="--n-heads")
    path, name = resolve_data_dir(ctx, data_dir, dataset)
    cfg = SequentialConfig(
        d_model=d_model,
        n_heads=n_heads,
        n_layers=n_layers,
        batch_size=batch_size,
        epochs=epochs,
        negatives=negatives,
        eval_every=eval_every,
        models=chosen,
        device=device,
        seed=seed,
    )
    result = run_movielens(path, cfg, dataset=name)
    print_movielens(result)
    return result
