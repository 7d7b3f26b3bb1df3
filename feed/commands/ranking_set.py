"""``feed train build-ranking-set``: per-member interaction sequences, target blocks and point-in-time context
for the GR ranker."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer


def build_ranking_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Set name: data/training/ranking/<name>/")] = "default",
    max_history: Annotated[
        int, typer.Option(help="History length the set is meant for (recorded; the loader truncates)")
    ] = 1024,
    max_targets: Annotated[int, typer.Option(help="Targets per example block (whole sessions)")] = 64,
    test_days: Annotated[int, typer.Option(help="Last days of the data that are test")] = 7,
    validation_days: Annotated[int, typer.Option(help="Days before the test window that are validation")] = 7,
    shards: Annotated[int, typer.Option(help="Parquet files per folder (sequences/ and each split)")] = 4,
    variant: Annotated[str, typer.Option(help="Feast variant whose offline store does the joins")] = "local",
) -> None:
    """Build the ranking training set from raw impressions and the feature store (`feed features build`
    must have run for this home; Feast definitions are applied here)."""
    from pipelines.feature_store import FeatureStoreError
    from pipelines.ranking_set import REPORT_FILE, RankingSetConfig, RankingSetError
    from pipelines.ranking_set import build_ranking_set as build

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = RankingSetConfig(
            name=name,
            max_history=max_history,
            max_targets=max_targets,
            test_days=test_days,
            validation_days=validation_days,
            shards=shards,
            feast_variant=variant,
        )
        out = build(ctx.obj.paths(), cfg, ctx.obj.spark())
    except (RankingSetError, FeatureStoreError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    report = json.loads((out / REPORT_FILE).read_text())
    per_member = report["interactions_per_member"]
    print(f"ranking set {out}")
    print(f"  windows: {report['windows']}")
    for split, n in report["examples_per_split"].items():
        print(f"  {split:<10} {n:>8,} examples {report['targets_per_split'][split]:>10,} targets")
    print(
        f"  interactions per member: p50 {per_member['p50']:.0f}, p90 {per_member['p90']:.0f}, "
        f"p99 {per_member['p99']:.0f}, max {per_member['max']:,}; "
        f"{per_member['members_over_1000']:,} of {per_member['members']:,} members over 1,000"
    )
    print(f"  member embeddings: {report['member_embedding']}")
    print(f"  skipped: {report['skipped']}")
    print(f"  {report['seconds']['total']:.1f} s")
