"""Steps shared by ``feed demo`` and the benchmarks: make sure a home has raw data, then build on it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feed.config import FeedSettings


def raw_lake_ready(settings: FeedSettings) -> bool:
    """True when every raw Delta table exists in the home's lake."""
    from feed.config import RAW_TABLES
    from pipelines import delta_io

    paths = settings.paths()
    return all(delta_io.exists(paths.table(name)) for name in RAW_TABLES)


def ensure_raw_data(settings: FeedSettings, *, scale: str, seed: int) -> bool:
    """Generate ``scale`` synthetic data and ingest it, unless the home's raw lake already exists.

    Returns True when data was generated. An existing lake is reused as it is (ingest refuses keys it already
    holds, so generating again into the same lake would be an error, not a duplicate)."""
    if raw_lake_ready(settings):
        print(f"  raw lake present under {settings.paths().lake}: reusing it")
        return False
    from pipelines.ingest import ingest
    from pipelines.synth import synth_config, write_synth

    paths = settings.paths()
    out = paths.landing / f"synth-{scale}-{seed}"
    t0 = time.perf_counter()
    rows = write_synth(synth_config(scale, seed), out)
    t1 = time.perf_counter()
    print(
        f"  generated {scale} (seed {seed}) in {t1 - t0:.1f}s: "
        + ", ".join(f"{k}={v:,}" for k, v in rows.items())
    )
    result = ingest(paths, out)
    print(f"  ingested {sum(result.rows.values()):,} rows into {paths.lake} in {result.seconds:.1f}s")
    return True
