"""Benchmark: the Spark feature build on ``small`` data, and the post_engagement percentile buckets computed
in Spark and in DuckDB (the single-machine baseline) from the same raw Delta tables.

Writes ``reports/bench/features.json`` (+ ``features.png``). The DuckDB query is the obvious single-node SQL:
a cohort grid, a range join to daily counts, and DuckDB's own ``percent_rank()`` window per snapshot; the run
checks both engines give identical buckets for every (post, snapshot). Timings exclude Spark start-up (the
session is warmed by the all-features build before the post_engagement timing) and the quality gate (GX is
not what is compared here; ``feed features build`` reports it per table).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feed.config import FEATURE_TABLES, FeedSettings
from pipelines.features.config import FeatureConfig
from pipelines.schemas import POST_ENGAGEMENT_COUNTS, POST_ENGAGEMENT_PERCENTILES

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.features.snapshots import SnapshotRange

REPORT_NAME = "features"


def duckdb_post_engagement_sql(paths_lake: Path, snaps: SnapshotRange, cohort_days: int) -> str:
    """post_engagement counts and percentile buckets for every snapshot of ``snaps``, in DuckDB SQL."""
    cutoff = snaps.cutoff.strftime("%Y-%m-%d %H:%M:%S+00")
    day = "CAST(floor(epoch_us({c}) / 86400000000.0) AS INTEGER)"
    buckets = ",\n        ".join(
        f"CAST(1 + floor(99 * percent_rank() OVER (PARTITION BY sday ORDER BY {count})) AS BIGINT) AS {pct}"
        for count, pct in zip(POST_ENGAGEMENT_COUNTS, POST_ENGAGEMENT_PERCENTILES, strict=True)
    )
    return f"""
    WITH posts AS (
        SELECT post_id, {day.format(c="created_at")} AS cday
        FROM delta_scan('{paths_lake / "raw_posts"}') WHERE created_at < TIMESTAMPTZ '{cutoff}'
    ), grid AS (
        SELECT post_id, unnest(range(greatest(cday + 1, {snaps.start_day}),
                                     least(cday + {cohort_days}, {snaps.end_day}) + 1)) AS sday
        FROM posts
    ), daily AS (
        SELECT post_id, {day.format(c="event_timestamp")} AS day, count(*) AS views,
               sum("like") AS likes, sum("comment") AS comments, sum("share") AS shares
        FROM delta_scan('{paths_lake / "raw_impressions"}')
        WHERE event_timestamp < TIMESTAMPTZ '{cutoff}'
        GROUP BY ALL
    ), counts AS (
        SELECT g.post_id, g.sday,
               coalesce(sum(d.views), 0) AS views, coalesce(sum(d.likes), 0) AS likes,
               coalesce(sum(d.comments), 0) AS comments, coalesce(sum(d.shares), 0) AS shares
        FROM grid g LEFT JOIN daily d ON d.post_id = g.post_id AND d.day < g.sday
        GROUP BY g.post_id, g.sday
    )
    SELECT post_id, sday, views, likes, comments, shares,
        {buckets}
    FROM counts
    """


def _duckdb_connect() -> Any:
    import duckdb

    from feed.setup_env import delta_extension_path

    con = duckdb.connect()
    con.execute(f"LOAD '{delta_extension_path()}'")  # shipped by duckdb-ext-delta; no download (STACK.md)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _compare(spark_rows: pd.DataFrame, duck_rows: pd.DataFrame) -> dict[str, int]:
    """Join on (post_id, snapshot); count rows missing on either side and bucket mismatches."""
    merged = spark_rows.merge(duck_rows, on=["post_id", "sday"], how="outer", suffixes=("_spark", "_duckdb"))
    out = {"rows_spark": len(spark_rows), "rows_duckdb": len(duck_rows)}
    out["rows_only_one_side"] = int(merged[f"{POST_ENGAGEMENT_PERCENTILES[0]}_spark"].isna().sum()) + int(
        merged[f"{POST_ENGAGEMENT_PERCENTILES[0]}_duckdb"].isna().sum()
    )
    both = merged.dropna()
    for column in (*POST_ENGAGEMENT_COUNTS, *POST_ENGAGEMENT_PERCENTILES):
        out[f"mismatched_{column}"] = int((both[f"{column}_spark"] != both[f"{column}_duckdb"]).sum())
    return out


def _plot(seconds: dict[str, float], out: Path, scale: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(list(seconds), list(seconds.values()), color=["#4c72b0", "#4c72b0", "#dd8452"])
    for i, value in enumerate(seconds.values()):
        ax.text(value, i, f" {value:.1f} s", va="center")
    ax.set_xlim(0, max(seconds.values()) * 1.2)  # room for the value labels
    ax.set_xlabel("seconds (lower is better)")
    ax.set_title(f"Feature build, {scale} data: Spark local vs DuckDB", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def run(settings: FeedSettings, scale: str = "small") -> Path:
    """Time the Spark build of all feature tables and the post_engagement percentiles in Spark vs DuckDB
    on the raw lake under ``settings.paths()`` (expected to hold the ``scale`` data set)."""
    import pyarrow as pa

    from feed.reports import write_report
    from pipelines import delta_io
    from pipelines.features import posts
    from pipelines.features.build import feature_jobs, impression_span, stage_table
    from pipelines.features.common import MissingRawTableError, load_raw
    from pipelines.features.snapshots import resolve_snapshots
    from pipelines.spark import get_spark

    paths = settings.paths()
    missing = [t for t in ("raw_impressions", "raw_posts") if not delta_io.exists(paths.table(t))]
    if missing:
        raise MissingRawTableError(
            f"no raw {missing} under {paths.lake}: generate and ingest the {scale!r} data set first "
            f"(feed data synth --scale {scale}; feed data ingest <landing folder>)"
        )
    config = FeatureConfig()
    spark_cfg = settings.spark()
    spark = get_spark(spark_cfg)
    snaps = resolve_snapshots(*impression_span(spark, paths))
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = f"bench-{created:%Y%m%dT%H%M%SZ}"

    raw = load_raw(spark, paths, snaps.cutoff)
    jobs = feature_jobs(raw, snaps, config, created)
    per_table: dict[str, dict[str, float | int]] = {}
    began = time.perf_counter()
    for table in FEATURE_TABLES:
        t0 = time.perf_counter()
        rows = stage_table(jobs[table](), paths.staging / table / run_id, table).num_rows
        per_table[table] = {"rows": rows, "seconds": round(time.perf_counter() - t0, 2)}
    all_seconds = time.perf_counter() - began
    all_rows = sum(int(v["rows"]) for v in per_table.values())

    # post_engagement again, timed alone on the warm session: the Spark side of the comparison.
    t0 = time.perf_counter()
    spark_eng = stage_table(
        posts.post_engagement(raw, snaps, config, created),
        paths.staging / "post_engagement" / f"{run_id}-b",
        "post_engagement",
    )
    spark_seconds = time.perf_counter() - t0
    raw.impressions.unpersist()

    con = _duckdb_connect()
    t0 = time.perf_counter()
    duck = con.execute(duckdb_post_engagement_sql(paths.lake, snaps, config.cohort_days)).fetch_arrow_table()
    duckdb_seconds = time.perf_counter() - t0

    ts = spark_eng.column("event_timestamp").cast(pa.int64()).to_numpy() // (86_400 * 1_000_000)
    spark_rows = spark_eng.select(
        ["post_id", *POST_ENGAGEMENT_COUNTS, *POST_ENGAGEMENT_PERCENTILES]
    ).to_pandas()
    spark_rows["sday"] = ts.astype("int64")
    duck_rows = duck.to_pandas().astype({"sday": "int64"})
    check = _compare(spark_rows, duck_rows)
    identical = check["rows_only_one_side"] == 0 and all(
        v == 0 for k, v in check.items() if k.startswith("mis")
    )

    raw_rows = {
        t: delta_io.dataset(paths.table(t)).count_rows()
        for t in ("raw_members", "raw_posts", "raw_impressions")
    }
    summary = {
        "spark_seconds": round(spark_seconds, 2),
        "duckdb_seconds": round(duckdb_seconds, 2),
        "ratio": round(spark_seconds / duckdb_seconds, 2),
        "rows": spark_eng.num_rows,
        "rows_per_s": round(spark_eng.num_rows / spark_seconds),
        "buckets_identical": identical,
        "all_features_spark_seconds": round(all_seconds, 2),
        "all_features_rows": all_rows,
        "all_features_rows_per_s": round(all_rows / all_seconds),
    }
    notes = [
        "spark_seconds / duckdb_seconds: post_engagement (cumulative + windowed counts and the four "
        "percentile buckets, every snapshot) from the raw Delta tables to an in-memory Arrow table; "
        "ratio = spark / duckdb.",
        "Spark is local mode on this machine's cores, session already warm; Spark's time includes writing "
        "the staged Parquet and reading it back (how the pipeline hands batches to the gate).",
        "all_features_*: the six tables computed and staged by Spark, without the GX gate.",
    ]
    out = write_report(
        REPORT_NAME,
        summary,
        {
            "scale": scale,
            "snapshots": [str(snaps.start), str(snaps.end)],
            "raw_rows": raw_rows,
            "spark_master": spark_cfg.master,
            "spark_conf": spark_cfg.conf,
            "feature_config": vars(config),
        },
        notes=notes,
        details={"per_table": per_table, "comparison": check},
    )
    _plot(
        {
            "Spark: all six tables": all_seconds,
            "Spark: post_engagement": spark_seconds,
            "DuckDB: post_engagement": duckdb_seconds,
        },
        out.with_suffix(".png"),
        scale,
    )
    return out
