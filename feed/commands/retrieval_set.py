"""``feed train build-retrieval-set``: anchors, negatives and point-in-time features for the dual encoder."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer


def build_retrieval_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Set name: data/training/retrieval/<name>/")] = "default",
    k_hard: Annotated[int, typer.Option(help="Hard negatives per anchor (same session, else same day)")] = 2,
    n_easy: Annotated[int, typer.Option(help="Random easy negatives per anchor (live posts)")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of every random choice (anchors cap, negatives)")] = 0,
    test_days: Annotated[int, typer.Option(help="Last days of the data that are test")] = 7,
    validation_days: Annotated[int, typer.Option(help="Days before the test window that are validation")] = 7,
    max_anchors_per_member_day: Annotated[
        int, typer.Option(help="Cap of anchors per (member, day), so heavy users do not dominate")
    ] = 4,
    all_history_cap: Annotated[
        int, typer.Option(help="Length cap of the all-impressions history (the ablation variant)")
    ] = 512,
    variant: Annotated[str, typer.Option(help="Feast variant whose offline store does the joins")] = "local",
) -> None:
    """Build the retrieval training set from raw impressions and the feature store (`feed features apply`
    must have run for this home)."""
    from pipelines.feature_store import FeatureStoreError
    from training.data.retrieval_set import RetrievalSetConfig, RetrievalSetError
    from training.data.retrieval_set import build_retrieval_set as build

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = RetrievalSetConfig(
            name=name,
            k_hard=k_hard,
            n_easy=n_easy,
            seed=seed,
            test_days=test_days,
            validation_days=validation_days,
            max_anchors_per_member_day=max_anchors_per_member_day,
            all_history_cap=all_history_cap,
            feast_variant=variant,
        )
        out = build(ctx.obj.paths(), cfg)
    except (RetrievalSetError, FeatureStoreError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    report = json.loads((out / "build_report.json").read_text())
    print(f"retrieval set {out}")
    print(f"  windows: {report['windows']}")
    for split, n in report["anchors_per_split"].items():
        print(f"  {split:<10} {n:>8,} anchors ({report['cold_start_per_split'][split]:,} cold start)")
    print(f"  hard negatives per anchor: {report['hard_negatives_per_anchor']}")
    print(f"  skipped: {report['skipped']}")
    print(f"  {report['post_rows']:,} post rows; {report['seconds']['total']:.1f} s")
