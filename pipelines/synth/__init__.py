"""Synthetic LinkedIn-like feed data: members, posts, follows, a logged feed with engagement labels, profile
updates, plus the generator's truth (``truth_*``) and the sensitive attribute (``audit_attributes``).

Generative model and constants: docs/data.md and :mod:`pipelines.synth.config`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipelines.synth.config import SCALES, EngagementModel, LoggingPolicy, SynthConfig, synth_config
from pipelines.synth.vocab import TOPICS

__all__ = [
    "SCALES",
    "TOPICS",
    "EngagementModel",
    "LoggingPolicy",
    "SynthConfig",
    "generate",
    "synth_config",
    "write_synth",
]


def _static_tables(config: SynthConfig) -> tuple[dict[str, pa.Table], Iterator[pa.Table]]:
    from pipelines.synth.impressions import impression_chunks
    from pipelines.synth.world import build_world

    world = build_world(config)
    tables = {
        "raw_members": world.members.table,
        "raw_posts": world.posts.table,
        "raw_follows": world.follows,
        "raw_profile_updates": world.profile_updates,
        "audit_attributes": world.audit_attributes(),
        "truth_members": world.truth_members(),
        "truth_posts": world.truth_posts(),
    }
    return tables, impression_chunks(world)


def generate(config: SynthConfig) -> dict[str, pa.Table]:
    """Every landing table in memory (fine for ``tiny``/``small``; use :func:`write_synth` for ``medium``)."""
    tables, chunks = _static_tables(config)
    tables["raw_impressions"] = pa.concat_tables(list(chunks))
    return tables


def write_synth(config: SynthConfig, out: Path) -> dict[str, int]:
    """Generate into the landing folder ``out`` (impressions streamed as ``raw_impressions/part-*.parquet``,
    one part per member chunk, so memory stays bounded at ``medium``). Returns rows per table."""
    from pipelines.ingest import write_landing, write_landing_parts

    tables, chunks = _static_tables(config)
    rows = write_landing(out, tables)
    rows["raw_impressions"] = write_landing_parts(out, "raw_impressions", chunks)
    return rows
