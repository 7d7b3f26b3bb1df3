"""The GR ranker's sequence training set (``feed train build-ranking-set``).

Layout under ``<home>/data/training/ranking/<name>/``::

    sequences/part-*.parquet   one row per member: every impression, chronological (ts, position, event_id)
    train|validation|test/part-*.parquet
                               one row per example = (member, target block) with its per-target lists and
                               point-in-time context
    posts.parquet              post_id, author_id, embedding (post_embeddings of the promoted retrieval model,
                               or null)
    build_report.json          config, windows, counts (bad rows, examples/targets per split, interactions per
                               member, missing contexts), seconds

Rules (DESIGN.md, issue 6):

* A sequence holds all of a member's valid impressions over the whole data; ``ts`` is epoch seconds (the
  impression time floored to the second) and orders everything — ties by feed position, then event_id.
  Examples say where their history ends: ``history_end`` = the number of the member's impressions with
  ``ts < request_ts`` (an exclusive index into the sequence); the loader keeps the newest ``max_history``.
* Targets: impressions from the first feature snapshot on (earlier ones have no feature row at all; they stay
  in the sequences). Each impression's split is its UTC day's (the retrieval rule: last ``test_days`` days
  test, ``validation_days`` before validation, the rest train). Within a (member, split), whole sessions in
  time order fill blocks of at most ``max_targets`` targets (a longer session is cut into chunks first); the
  greedy packing is a Spark ``aggregate`` over each member's ordered chunk sizes, so blocks never cross a
  split window. ``request_ts`` = the block's first target time.
* Context: Feast point-in-time joins (DuckDB offline store) — per target at its ``ts``: member_affinity,
  post_content (topic, created_at), post_engagement percentiles, author_stats follower_percentile; per example
  at ``request_ts``: member_profile (industry, current_role) and member_embedding. A feature row stamped after
  the lookup time is never used: the member embedding is null unless a row was valid at ``request_ts``
  (today's exported embeddings are stamped at export time, so most are null — counted).
* Bad rows of raw_impressions (a null id/time/position, a label outside {0, 1}, a post unknown to
  post_content) are counted per reason and skipped; a missing column, or no valid row at all, raises
  :class:`RankingSetError`. The set is written to a temporary folder beside its destination and renamed into
  place only when complete, so a failed build leaves the previous set (or nothing) behind.

Spark assembles sequences and blocks (group, sort, collect, window functions); pandas/numpy only see the flat
target rows around the Feast joins.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pipelines.schemas import LABELS
from training.data.retrieval_set import SPLITS, SplitWindows, split_windows
from training.ranking.features import CONTEXT_FEATURES, DEVICES, TASKS, UNKNOWN_DEVICE

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

    from feed.config import FeedPaths, SparkConfig

log = logging.getLogger(__name__)

SEQUENCES_DIR = "sequences"
POSTS_FILE = "posts.parquet"
REPORT_FILE = "build_report.json"
RETRIEVAL_DIR = "retrieval"  # artifacts/retrieval/CURRENT names the promoted retrieval model (DESIGN.md)
CURRENT_FILE = "CURRENT"

SEQUENCE_SCHEMA = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("post_id", pa.list_(pa.int64())),
        pa.field("action", pa.list_(pa.uint8())),  # training.ranking.features action code
        pa.field("device", pa.list_(pa.int8())),  # DEVICES code
        pa.field("ts", pa.list_(pa.int64())),  # epoch seconds
        pa.field("position", pa.list_(pa.int16())),
    ]
)
TARGET_LIST_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("post_id", pa.int64()),
    ("author_id", pa.int64()),
    ("session_id", pa.int64()),
    ("ts", pa.int64()),
    ("position", pa.int16()),
    ("action", pa.uint8()),
    ("device", pa.int8()),
    *((name, pa.float32()) for name in CONTEXT_FEATURES),  # NaN where Feast had no value
)
EXAMPLE_SCHEMA = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("block_id", pa.int32(), nullable=False),  # per member, time order across all splits
        pa.field("request_ts", pa.int64(), nullable=False),  # first target's ts
        pa.field("history_end", pa.int32(), nullable=False),  # # of the member's interactions with ts < it
        pa.field("industry", pa.string()),  # member_profile as of request_ts
        pa.field("current_role", pa.string()),
        pa.field("member_embedding", pa.list_(pa.float32())),  # null: no row valid at request_ts
        *(pa.field(name, pa.list_(dtype)) for name, dtype in TARGET_LIST_FIELDS),
    ]
)
POSTS_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("author_id", pa.int64()),  # raw_posts; null for a post missing there
        pa.field("embedding", pa.list_(pa.float32())),
    ]
)
# Flat target rows as Spark stages them (one row per target impression).
TARGET_STAGE_SCHEMA = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("split_idx", pa.int8(), nullable=False),
        pa.field("block_id", pa.int32(), nullable=False),
        pa.field("request_ts", pa.int64(), nullable=False),
        pa.field("history_end", pa.int32(), nullable=False),
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("author_id", pa.int64(), nullable=False),
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("position", pa.int16(), nullable=False),
        pa.field("action", pa.uint8(), nullable=False),
        pa.field("device", pa.int8(), nullable=False),
    ]
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "event_id",
    "member_id",
    "post_id",
    "event_timestamp",
    "session_id",
    "device_type",
    "position",
    *LABELS,
)
TARGET_FEATURES: tuple[str, ...] = (
    "member_affinity:top_author_ids",
    "member_affinity:top_author_scores",
    "member_affinity:top_topics",
    "member_affinity:top_topic_scores",
    "post_content:topic",
    "post_content:created_at",
    "post_engagement:view_percentile",
    "post_engagement:like_percentile",
    "post_engagement:comment_percentile",
    "post_engagement:share_percentile",
    "author_stats:follower_percentile",
)
EXAMPLE_FEATURES: tuple[str, ...] = (
    "member_profile:industry",
    "member_profile:current_role",
    "member_embedding:embedding",
    "member_embedding:model_version",
)
PERCENTILE_CONTEXT: dict[str, str] = {
    "view_percentile": "post_engagement__view_percentile",
    "like_percentile": "post_engagement__like_percentile",
    "comment_percentile": "post_engagement__comment_percentile",
    "share_percentile": "post_engagement__share_percentile",
    "follower_percentile": "author_stats__follower_percentile",
}
TARGET_KEYS: tuple[str, ...] = ("member_id", "post_id", "author_id", "ts")


class RankingSetError(ValueError):
    """The set cannot be built (missing tables or columns, no valid impressions, no targets)."""


@dataclass(frozen=True)
class RankingSetConfig:
    """What goes into the set. Only ``max_targets`` and the windows shape the examples."""

    name: str = "default"
    # Recorded only: sequences keep every interaction and examples point into them; the loader truncates each
    # history to the newest max_history (a longer model context needs no rebuild).
    max_history: int = 1024
    max_targets: int = 64  # targets per example block (a session longer than this is cut)
    test_days: int = 7
    validation_days: int = 7
    shards: int = 4  # Parquet files per folder (sequences/ and each split)
    feast_variant: str = "local"
    # Entity rows per Feast historical call: bounds the DuckDB join's memory (affinity lists are ~10 kB/row).
    feast_chunk_rows: int = 250_000

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise RankingSetError(f"set name must be a plain folder name, got {self.name!r}")
        for name in (
            "max_history",
            "max_targets",
            "test_days",
            "validation_days",
            "shards",
            "feast_chunk_rows",
        ):
            if getattr(self, name) < 1:
                raise RankingSetError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class BuildState:
    """Mutable state of one build (local to :func:`build_ranking_set`, never module level)."""

    cfg: RankingSetConfig
    skipped: Counter[str] = field(default_factory=Counter)
    counts: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def set_dir(paths: FeedPaths, name: str) -> Path:
    """Where the set ``name`` lives."""
    return paths.data / "training" / "ranking" / name


def promoted_retrieval_version(paths: FeedPaths) -> str | None:
    """The promoted retrieval model version (``artifacts/retrieval/CURRENT``), or None."""
    current = paths.artifacts / RETRIEVAL_DIR / CURRENT_FILE
    version = current.read_text().strip() if current.is_file() else ""
    return version or None


# --- build


def build_ranking_set(paths: FeedPaths, cfg: RankingSetConfig, spark_cfg: SparkConfig | None = None) -> Path:
    """Build the set ``cfg.name`` from raw_impressions, post_content and Feast (applied here for ``paths``);
    replace any previous set of that name atomically. Returns the set's folder."""
    from pipelines import delta_io
    from pipelines.feature_store import apply
    from pipelines.spark import get_spark

    began = time.perf_counter()
    state = BuildState(cfg)
    for table in ("raw_impressions", "post_content"):
        if not delta_io.exists(paths.table(table)):
            raise RankingSetError(
                f"Delta table {paths.table(table)} is missing; "
                "run `feed data ingest` and `feed features build` first"
            )
    # Register the checked-out definitions first (idempotent), as the retrieval set does.
    apply(paths, cfg.feast_variant)
    out = set_dir(paths, cfg.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{cfg.name}.tmp-{uuid.uuid4().hex[:8]}"
    imp = None
    try:
        spark = get_spark(spark_cfg)
        t0 = time.perf_counter()
        imp = load_impressions(spark, paths, state.skipped)
        windows = data_windows(imp, cfg)
        state.seconds["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        lengths = write_sequences(imp, tmp, cfg)
        state.counts["interactions_per_member"] = interaction_stats(lengths, cfg.max_history)
        state.seconds["sequences"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        targets = stage_targets(assign_blocks(imp, windows, cfg, state.skipped), tmp / "_staging" / "targets")
        state.seconds["blocks"] = time.perf_counter() - t0
        if targets.empty:
            raise RankingSetError(f"no targets on or after the first snapshot {windows.first_snapshot}")

        t0 = time.perf_counter()
        post_ids = _sequence_posts(tmp)  # every post in the set: targets are impressions too
        targets = attach_target_context(paths, targets, state)
        examples = example_rows(targets)
        examples = attach_example_context(paths, examples, promoted_retrieval_version(paths), state)
        state.seconds["feast"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_examples(tmp, targets, examples, cfg, state)
        write_posts(paths, tmp, post_ids, state)
        shutil.rmtree(tmp / "_staging", ignore_errors=True)
        state.seconds["write"] = time.perf_counter() - t0
        state.seconds["total"] = time.perf_counter() - began
        write_report(tmp, windows, state)
        _publish(tmp, out)
    finally:
        if imp is not None:
            imp.unpersist()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("ranking set %s: %s", out, state.counts.get("examples_per_split"))
    return out


def _publish(tmp: Path, out: Path) -> None:
    """Swap the finished ``tmp`` folder into ``out`` (two renames; the old set is removed afterwards)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_impressions(spark: SparkSession, paths: FeedPaths, skipped: Counter[str]) -> DataFrame:
    """raw_impressions with post authors from post_content, cleaned (:func:`clean_impressions`) and cached."""
    from pipelines import delta_io

    raw = delta_io.spark_read(spark, paths.table("raw_impressions"))
    catalog = delta_io.spark_read(spark, paths.table("post_content")).select("post_id", "author_id")
    return clean_impressions(raw, catalog, skipped).cache()


def clean_impressions(raw: DataFrame, catalog: DataFrame, skipped: Counter[str]) -> DataFrame:
    """Valid impressions as (event_id, member_id, post_id, author_id, session_id, ts (epoch s), position,
    action, device). Bad rows are counted in ``skipped`` by reason and dropped; a missing column raises."""
    from pyspark.sql import functions as F

    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise RankingSetError(f"raw_impressions lacks column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")
    authors = catalog.filter(F.col("post_id").isNotNull()).dropDuplicates(["post_id"])
    imp = raw.select(*REQUIRED_COLUMNS).join(authors, on="post_id", how="left")
    null_key = F.lit(False)
    for column in ("event_id", "member_id", "post_id", "event_timestamp", "session_id", "position"):
        null_key = null_key | F.col(column).isNull()
    labels_ok = F.lit(True)
    for label in LABELS:
        labels_ok = labels_ok & F.coalesce(F.col(label).isin(0, 1), F.lit(False))
    reason = (
        F.when(null_key, "null_id_time_or_position")
        .when(~labels_ok, "label_not_0_or_1")
        .when(F.col("author_id").isNull(), "unknown_post")
    )
    imp = imp.withColumn("_reason", reason)
    unknown_device = (device_code() == UNKNOWN_DEVICE).cast("long")
    for row in (
        imp.groupBy("_reason").agg(F.count("*").alias("n"), F.sum(unknown_device).alias("d")).collect()
    ):
        if row["_reason"] is None:
            skipped["valid_impressions"] += int(row["n"])
            if row["d"]:
                skipped["impression_unknown_device_kept"] += int(row["d"])
        else:
            skipped[f"impression_{row['_reason']}"] += int(row["n"])
    if not skipped["valid_impressions"]:
        raise RankingSetError(f"raw_impressions has no valid rows: {dict(skipped)}")
    return imp.filter(F.col("_reason").isNull()).select(
        "event_id",
        "member_id",
        "post_id",
        "author_id",
        "session_id",
        F.unix_seconds(F.col("event_timestamp")).alias("ts"),  # floor to the second
        F.col("position").cast("int"),
        action_code().alias("action"),
        device_code().alias("device"),
    )


def action_code() -> Column:
    """training.ranking.features action code: sum(label_i << i) over TASKS order (fits a tinyint: < 64)."""
    from pyspark.sql import functions as F

    code = F.lit(0)
    for i, task in enumerate(TASKS):
        code = code + F.col(task).cast("int") * (1 << i)
    return code.cast("tinyint")


def device_code() -> Column:
    """DEVICES code of device_type (0 for a null or unknown value)."""
    from pyspark.sql import functions as F

    code = F.lit(UNKNOWN_DEVICE)
    for i, name in enumerate(DEVICES):
        if i != UNKNOWN_DEVICE:
            code = F.when(F.col("device_type") == name, F.lit(i)).otherwise(code)
    return code.cast("tinyint")


def data_windows(imp: DataFrame, cfg: RankingSetConfig) -> SplitWindows:
    """Split windows from the first and last valid impression (same rule as the retrieval set)."""
    from pyspark.sql import functions as F

    row = imp.agg(F.min("ts").alias("lo"), F.max("ts").alias("hi")).collect()[0]
    first = dt.datetime.fromtimestamp(int(row["lo"]), dt.UTC)
    last = dt.datetime.fromtimestamp(int(row["hi"]), dt.UTC)
    return split_windows(first, last, cfg)  # the retrieval set's rule, shared on purpose


def write_sequences(imp: DataFrame, out: Path, cfg: RankingSetConfig) -> np.ndarray:
    """``out/sequences/part-*.parquet``: one row per member, every interaction in (ts, position, event_id)
    order. Returns the interaction count per member."""
    from pyspark.sql import functions as F

    items = F.struct("ts", "position", "event_id", "post_id", "action", "device")
    seq = (
        imp.groupBy("member_id")
        .agg(F.array_sort(F.collect_list(items)).alias("_s"))
        .select(
            "member_id",
            *(F.col(f"_s.{c}").alias(c) for c in ("post_id", "action", "device", "ts", "position")),
        )
        .repartition(cfg.shards, "member_id")
        .sortWithinPartitions("member_id")
    )
    staging = out / "_staging" / SEQUENCES_DIR
    _stage(seq, staging)
    return _rewrite_shards(staging, out / SEQUENCES_DIR, SEQUENCE_SCHEMA, count_column="post_id")


def _stage(df: DataFrame, staging: Path) -> None:
    from pipelines.delta_io import stage_parquet

    staging.parent.mkdir(parents=True, exist_ok=True)
    stage_parquet(df, staging)


def _rewrite_shards(staging: Path, dest: Path, schema: pa.Schema, *, count_column: str) -> np.ndarray:
    """Spark's part files → ``dest/part-00000.parquet`` … conformed to ``schema`` (exact types: Spark has no
    uint8/int16 lists). Returns the list lengths of ``count_column`` over all rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.delta_io import conform

    dest.mkdir(parents=True, exist_ok=True)
    lengths = []
    files = sorted(staging.glob("*.parquet"))
    for i, src in enumerate(files):
        table = conform(pq.read_table(src), schema, name=str(src))
        pq.write_table(table, dest / f"part-{i:05d}.parquet")
        lengths.append(pc.list_value_length(table.column(count_column)).to_numpy(zero_copy_only=False))
    return np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)


def _sequence_posts(out: Path) -> np.ndarray:
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    table = pads.dataset(out / SEQUENCES_DIR, format="parquet").to_table(columns=["post_id"])
    return pc.unique(pc.list_flatten(table.column("post_id"))).to_numpy()


def interaction_stats(lengths: np.ndarray, max_history: int) -> dict[str, Any]:
    """Distribution of interactions per member (the issue asks for many members above 1,000)."""
    if lengths.size == 0:
        return {"members": 0}
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return {
        "members": int(lengths.size),
        "total": int(lengths.sum()),
        "mean": round(float(lengths.mean()), 1),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": int(lengths.max()),
        "members_over_1000": int((lengths > 1000).sum()),
        "members_over_max_history": int((lengths > max_history).sum()),
    }


def assign_blocks(
    imp: DataFrame, windows: SplitWindows, cfg: RankingSetConfig, skipped: Counter[str]
) -> DataFrame:
    """Target impressions with split_idx, block_id, request_ts and history_end (see the module rules)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def seconds(at: dt.datetime) -> int:
        return int(at.timestamp())

    max_t = cfg.max_targets
    # history_end: rank() - 1 over the member's impressions by ts = how many have a strictly smaller ts.
    ranked = imp.withColumn("_before", F.rank().over(Window.partitionBy("member_id").orderBy("ts")) - 1)
    early = F.col("ts") < seconds(windows.first_snapshot)
    skipped["target_before_first_snapshot"] += imp.filter(early).count()
    split_idx = (
        F.when(F.col("ts") < seconds(windows.validation_start), 0)
        .when(F.col("ts") < seconds(windows.test_start), 1)
        .otherwise(2)
    )
    targets = ranked.filter(~early).withColumn("split_idx", split_idx.cast("tinyint"))
    by_session = Window.partitionBy("member_id", "split_idx", "session_id")
    targets = (
        targets.withColumn("_rn", F.row_number().over(by_session.orderBy("ts", "position", "event_id")))
        .withColumn("_chunk", F.floor((F.col("_rn") - 1) / max_t).cast("int"))  # cut long sessions
        .withColumn("_session_start", F.min("ts").over(by_session))
    )
    chunks = targets.groupBy("member_id", "split_idx", "_session_start", "session_id", "_chunk").agg(
        F.count("*").cast("int").alias("_n")
    )
    # Greedy packing of the member's chunks (in time order) into blocks of <= max_targets: a left fold.
    pack = (
        f"aggregate(_chunks, named_struct('b', -1, 'fill', {max_t}, 'ids', cast(array() as array<int>)), "
        f"(acc, c) -> if(acc.fill + c._n > {max_t}, "
        "named_struct('b', acc.b + 1, 'fill', c._n, 'ids', concat(acc.ids, array(acc.b + 1))), "
        "named_struct('b', acc.b, 'fill', acc.fill + c._n, 'ids', concat(acc.ids, array(acc.b)))), "
        "acc -> acc.ids)"
    )
    packed = (
        chunks.groupBy("member_id", "split_idx")
        .agg(
            F.array_sort(F.collect_list(F.struct("_session_start", "session_id", "_chunk", "_n"))).alias(
                "_chunks"
            )
        )
        .withColumn("_blk", F.expr(pack))
        .select("member_id", "split_idx", F.explode(F.arrays_zip("_chunks", "_blk")).alias("_z"))
        .select(
            "member_id",
            "split_idx",
            F.col("_z._chunks.session_id").alias("session_id"),
            F.col("_z._chunks._chunk").alias("_chunk"),
            F.col("_z._blk").alias("_blk"),
        )
    )
    targets = targets.join(packed, on=["member_id", "split_idx", "session_id", "_chunk"], how="inner")
    block_id = F.dense_rank().over(Window.partitionBy("member_id").orderBy("split_idx", "_blk")) - 1
    targets = targets.withColumn("block_id", block_id.cast("int"))
    by_block = Window.partitionBy("member_id", "block_id")
    return targets.select(
        "member_id",
        "split_idx",
        "block_id",
        F.min("ts").over(by_block).alias("request_ts"),
        F.min("_before").over(by_block).cast("int").alias("history_end"),
        "event_id",
        "post_id",
        "author_id",
        "session_id",
        "ts",
        "position",
        "action",
        "device",
    )


def stage_targets(targets: DataFrame, staging: Path) -> pd.DataFrame:
    """Spark → staged Parquet → one pandas frame sorted by (split, member, block, ts, position, event_id)."""
    from pipelines.delta_io import read_staged

    _stage(targets, staging)
    frame = read_staged(staging, TARGET_STAGE_SCHEMA).to_pandas()
    order = ["split_idx", "member_id", "block_id", "ts", "position", "event_id"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


# --- Feast point-in-time context


def _timestamps(seconds: np.ndarray) -> pd.Series:
    import pandas as pd

    return pd.Series(pd.to_datetime(seconds, unit="s", utc=True))


def _historical(
    paths: FeedPaths,
    entity: pd.DataFrame,
    features: tuple[str, ...],
    cfg: RankingSetConfig,
    reduce: Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame:
    """:func:`pipelines.feature_store.historical_features` in chunks of ``cfg.feast_chunk_rows`` entity rows,
    each chunk's answer ``reduce``d at once (Feast's list cells are Python objects: keeping every chunk's
    raw answer would hold gigabytes at the ``small`` scale)."""
    import pandas as pd

    from pipelines.feature_store import historical_features

    parts = []
    for start in range(0, len(entity), cfg.feast_chunk_rows):
        chunk = entity.iloc[start : start + cfg.feast_chunk_rows]
        parts.append(reduce(historical_features(paths, chunk, list(features), variant=cfg.feast_variant)))
    return pd.concat(parts, ignore_index=True)


def attach_target_context(paths: FeedPaths, targets: pd.DataFrame, state: BuildState) -> pd.DataFrame:
    """CONTEXT_FEATURES columns (float32, NaN = no feature row at the target's ts) on every target."""
    keys = list(TARGET_KEYS)
    entity = targets[keys].drop_duplicates().reset_index(drop=True)
    entity["event_timestamp"] = _timestamps(entity["ts"].to_numpy())

    def reduce(rows: pd.DataFrame) -> pd.DataFrame:
        return target_context(rows).assign(**{k: rows[k].to_numpy() for k in keys})

    context = _historical(paths, entity, TARGET_FEATURES, state.cfg, reduce)
    targets = targets.merge(context, on=keys, how="left", validate="many_to_one")
    state.counts["target_context_missing"] = {
        name: int(targets[name].isna().sum()) for name in CONTEXT_FEATURES
    }
    return targets


def _list_lookup(
    ids: pd.Series, scores: pd.Series, wanted: np.ndarray, value_type: pa.DataType
) -> np.ndarray:
    """Per row: the score at the position of ``wanted[row]`` in the row's id list; 0 when absent from the
    list; NaN when the row has no list (no feature row at that time)."""
    import pyarrow.compute as pc

    # numpy-array cells convert without a Python list per row; None/NaN → null
    id_lists = pa.array(ids.astype(object), type=pa.list_(value_type), from_pandas=True)
    score_lists = pa.array(scores.astype(object), type=pa.list_(pa.float64()), from_pandas=True)
    out = np.zeros(len(ids), dtype=np.float32)
    out[id_lists.is_null().to_numpy(zero_copy_only=False)] = np.nan
    parents = pc.list_parent_indices(id_lists).to_numpy()
    flat_ids = pc.list_flatten(id_lists).to_numpy(zero_copy_only=False)
    flat_scores = pc.list_flatten(score_lists).to_numpy(zero_copy_only=False)
    if len(flat_ids) != len(flat_scores):
        raise RankingSetError("member_affinity id and score lists differ in length")
    hit = flat_ids == wanted[parents]
    out[parents[hit]] = flat_scores[hit]
    return out


def _plain(value: Any) -> Any:
    """A Feast list cell (numpy array, list, or missing) as a list or None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return list(value)


def target_context(rows: pd.DataFrame) -> pd.DataFrame:
    """The CONTEXT_FEATURES of Feast rows (``view__feature`` columns of TARGET_FEATURES + entity columns)."""
    import pandas as pd

    out = pd.DataFrame(index=rows.index)
    out["author_affinity"] = _list_lookup(
        rows["member_affinity__top_author_ids"],
        rows["member_affinity__top_author_scores"],
        rows["author_id"].to_numpy(),
        pa.int64(),
    )
    topics = rows["post_content__topic"].fillna("").astype(str).to_numpy()
    out["topic_affinity"] = _list_lookup(
        rows["member_affinity__top_topics"], rows["member_affinity__top_topic_scores"], topics, pa.string()
    )
    for name, column in PERCENTILE_CONTEXT.items():
        out[name] = (pd.to_numeric(rows[column], errors="coerce") / 100.0).astype("float32")
    created = pd.to_datetime(rows["post_content__created_at"], utc=True)
    hours = (rows["event_timestamp"] - created).dt.total_seconds().to_numpy() / 3600.0
    out["post_age_hours_log1p"] = np.log1p(np.clip(hours, 0.0, None)).astype("float32")
    return out[list(CONTEXT_FEATURES)].astype("float32")


def example_rows(targets: pd.DataFrame) -> pd.DataFrame:
    """One row per (member, block) in target order, with its target range [start, end) in ``targets``."""
    import pandas as pd

    key = targets[["member_id", "block_id"]].to_numpy()
    change = np.ones(len(targets), dtype=bool)
    change[1:] = (key[1:] != key[:-1]).any(axis=1)
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(targets))
    first = targets.iloc[starts]
    return pd.DataFrame(
        {
            "split_idx": first["split_idx"].to_numpy(),
            "member_id": first["member_id"].to_numpy(),
            "block_id": first["block_id"].to_numpy(),
            "request_ts": first["request_ts"].to_numpy(),
            "history_end": first["history_end"].to_numpy(),
            "start": starts,
            "end": ends,
        }
    )


def attach_example_context(
    paths: FeedPaths, examples: pd.DataFrame, version: str | None, state: BuildState
) -> pd.DataFrame:
    """industry, current_role and member_embedding as of each example's request_ts. The embedding is kept
    only when it comes from the promoted retrieval model ``version`` (the posts' vectors come from it too)."""
    entity = examples[["member_id", "request_ts"]].drop_duplicates().reset_index(drop=True)
    entity["event_timestamp"] = _timestamps(entity["request_ts"].to_numpy())
    rows = _historical(paths, entity, EXAMPLE_FEATURES, state.cfg, lambda rows: rows)
    rows = rows.rename(
        columns={
            "member_profile__industry": "industry",
            "member_profile__current_role": "current_role",
            "member_embedding__embedding": "member_embedding",
        }
    )
    embedding = rows["member_embedding"].apply(_plain)
    present = embedding.notna()
    same_model = (
        rows["member_embedding__model_version"].astype(object).eq(version) if version else present & False
    )
    kept = present & same_model
    state.counts["member_embedding"] = {
        "present": int(kept.sum()),
        "null_no_row_at_request_ts": int((~present).sum()),
        "dropped_other_model_version": int((present & ~same_model).sum()),
        "promoted_retrieval_version": version,
    }
    rows["member_embedding"] = embedding.where(kept, None)
    dims = {len(v) for v in rows["member_embedding"].dropna()}
    if len(dims) > 1:
        raise RankingSetError(f"member embeddings of model {version!r} have several sizes: {sorted(dims)}")
    # One size for the whole set (the loader's Em): a split may have no embedding at all.
    state.counts["member_embedding"]["dim"] = dims.pop() if dims else 0
    rows = rows[["member_id", "request_ts", "industry", "current_role", "member_embedding"]]
    examples = examples.merge(rows, on=["member_id", "request_ts"], how="left", validate="many_to_one")
    state.counts["example_profile_missing"] = {
        c: int(examples[c].isna().sum()) for c in ("industry", "current_role")
    }
    return examples


# --- write


def write_examples(
    out: Path, targets: pd.DataFrame, examples: pd.DataFrame, cfg: RankingSetConfig, state: BuildState
) -> None:
    """Each split's examples, in (member, block) order, as ``cfg.shards`` files out/<split>/part-*."""
    import pyarrow.parquet as pq

    columns = {name: targets[name].to_numpy() for name, _ in TARGET_LIST_FIELDS}
    per_split: dict[str, int] = {}
    targets_per_split: dict[str, int] = {}
    for idx, split in enumerate(SPLITS):
        part = examples[examples["split_idx"] == idx].reset_index(drop=True)
        per_split[split] = len(part)
        targets_per_split[split] = int((part["end"] - part["start"]).sum())
        (out / split).mkdir(parents=True, exist_ok=True)
        bounds = np.linspace(0, len(part), min(cfg.shards, max(len(part), 1)) + 1).astype(np.int64)
        for shard, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            table = _example_table(part.iloc[lo:hi], columns)
            pq.write_table(table, out / split / f"part-{shard:05d}.parquet")
    state.counts["examples_per_split"] = per_split
    state.counts["targets_per_split"] = targets_per_split
    sizes = (examples["end"] - examples["start"]).to_numpy()
    state.counts["targets_per_example"] = {
        "mean": round(float(sizes.mean()), 2) if sizes.size else None,
        "max": int(sizes.max()) if sizes.size else 0,
        "full_blocks": int((sizes == cfg.max_targets).sum()),
    }
    state.counts["members_with_examples"] = int(examples["member_id"].nunique())


def _example_table(part: pd.DataFrame, columns: dict[str, np.ndarray]) -> pa.Table:
    """Examples ``part`` (each with its target range [start, end) — contiguous in ``targets`` order) as
    EXAMPLE_SCHEMA rows; the per-target lists are slices of the flat columns (no per-row Python)."""
    starts = part["start"].to_numpy(dtype=np.int64)
    ends = part["end"].to_numpy(dtype=np.int64)
    lo = int(starts[0]) if len(part) else 0
    hi = int(ends[-1]) if len(part) else 0
    offsets = pa.array(np.append(starts, hi) - lo, type=pa.int32())
    arrays: dict[str, pa.Array] = {
        "member_id": pa.array(part["member_id"].to_numpy(), pa.int64()),
        "block_id": pa.array(part["block_id"].to_numpy(), pa.int32()),
        "request_ts": pa.array(part["request_ts"].to_numpy(), pa.int64()),
        "history_end": pa.array(part["history_end"].to_numpy(), pa.int32()),
        "industry": pa.array(part["industry"].tolist(), pa.string()),
        "current_role": pa.array(part["current_role"].tolist(), pa.string()),
        "member_embedding": pa.array(part["member_embedding"].tolist(), pa.list_(pa.float32())),
    }
    for name, dtype in TARGET_LIST_FIELDS:
        values = pa.array(columns[name][lo:hi], type=dtype, from_pandas=True)
        arrays[name] = (
            pa.ListArray.from_arrays(offsets, values) if len(part) else pa.array([], pa.list_(dtype))
        )
    return pa.Table.from_arrays([arrays[f.name] for f in EXAMPLE_SCHEMA], schema=EXAMPLE_SCHEMA)


def write_posts(paths: FeedPaths, out: Path, post_ids: np.ndarray, state: BuildState) -> None:
    """``posts.parquet``: every post in the set, with its post_embeddings vector of the promoted retrieval
    model (the newest row per post) or null (no promoted model, or not embedded)."""
    import pandas as pd
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from pipelines import delta_io

    version = promoted_retrieval_version(paths)
    posts = pd.DataFrame({"post_id": np.sort(post_ids).astype(np.int64)})
    vectors = pd.DataFrame({"post_id": pd.Series(dtype="int64"), "embedding": pd.Series(dtype=object)})
    table = paths.table("post_embeddings")
    if version is not None and delta_io.exists(table):
        rows = delta_io.read(
            table,
            columns=["post_id", "embedding", "event_timestamp"],
            filter=pads.field("model_version") == version,
        ).to_pandas()
        vectors = rows.sort_values(["post_id", "event_timestamp"]).drop_duplicates("post_id", keep="last")
    posts = posts.merge(vectors[["post_id", "embedding"]], on="post_id", how="left")
    authors = delta_io.read(paths.table("raw_posts"), columns=["post_id", "author_id"]).to_pandas()
    posts = posts.merge(authors.drop_duplicates("post_id", keep="last"), on="post_id", how="left")
    embedding = posts["embedding"].apply(_plain)
    dims = {len(v) for v in embedding.dropna()}
    if len(dims) > 1:
        raise RankingSetError(f"post embeddings of model {version!r} have several sizes: {sorted(dims)}")
    state.counts["posts"] = {
        "rows": len(posts),
        "with_embedding": int(embedding.notna().sum()),
        "embedding_dim": dims.pop() if dims else 0,
        "promoted_retrieval_version": version,
    }
    table_out = pa.table(
        {
            "post_id": pa.array(posts["post_id"].to_numpy(), pa.int64()),
            "author_id": pa.array(posts["author_id"].astype("Int64"), pa.int64(), from_pandas=True),
            "embedding": pa.array(embedding.tolist(), pa.list_(pa.float32())),
        },
        schema=POSTS_SCHEMA,
    )
    pq.write_table(table_out, out / POSTS_FILE)


def write_report(out: Path, windows: SplitWindows, state: BuildState) -> None:
    report = {
        "config": asdict(state.cfg),
        "windows": {k: v.isoformat() for k, v in asdict(windows).items()},
        "context_features": list(CONTEXT_FEATURES),
        "devices": list(DEVICES),
        "tasks": list(TASKS),
        **state.counts,
        "skipped": dict(sorted(state.skipped.items())),
        "seconds": {k: round(v, 2) for k, v in state.seconds.items()},
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")
