"""Great Expectations suites for every published table, built in code (one suite per table).

A suite is rebuilt for each batch because some bounds depend on the run: "not in the future" needs ``now``,
freshness needs the expected snapshots, and the row-count bounds come from the previously published version.
Every expectation carries ``meta["check"]``, a short stable name for the rule it enforces (``key_not_null``,
``window_le_cumulative``, ``freshness`` …), so failures read the same in logs, quarantine files and tests.

GX cannot look inside list columns, so rules about them are stated over derived columns (``<column>__length``)
that :func:`derive_columns` adds to a copy of the batch before validation. The lengths are computed in Arrow
(``list_value_length``) rather than pandas: one vectorised pass instead of a Python call per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.schemas import (
    DEVICE_TYPES,
    FEATURE_KEYS,
    FEATURE_SCHEMAS,
    LABELS,
    POST_ENGAGEMENT_COUNTS,
    POST_ENGAGEMENT_PERCENTILES,
    POST_ENGAGEMENT_WINDOWS,
    POST_FORMATS,
    RAW_KEYS,
    RAW_SCHEMAS,
    TS,
)

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.expectations import Expectation

TIMESTAMP = "event_timestamp"
LENGTH_SUFFIX = "__length"

# Percentile buckets are 1 + floor(99 × percent_rank) (DESIGN.md), so always integers in 1..100.
PERCENTILE_COLUMNS: dict[str, tuple[str, ...]] = {
    "post_engagement": POST_ENGAGEMENT_PERCENTILES,
    "author_stats": ("follower_percentile", "engagement_percentile"),
}
NON_NEGATIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    "post_engagement": POST_ENGAGEMENT_COUNTS
    + tuple(f"{c}_{w}" for c in POST_ENGAGEMENT_COUNTS for w in POST_ENGAGEMENT_WINDOWS),
    "author_stats": ("followers", "posts_28d", "engagements_28d"),
    "member_history": ("history_length",),
    "member_sequence": ("sequence_length",),
}
# List columns whose lengths some rule needs (see module docstring).
LIST_LENGTH_COLUMNS: dict[str, tuple[str, ...]] = {
    "member_history": ("engaged_post_ids",),
    "member_sequence": ("post_ids", "actions", "timestamps"),
    "member_affinity": ("top_author_ids", "top_author_scores", "top_topics", "top_topic_scores"),
    "member_embeddings": ("embedding",),
    "post_embeddings": ("embedding",),
}

# member_sequence: derived per-row counts of bad list elements (see sequence_violations) → their check names.
SEQUENCE_VIOLATIONS: dict[str, str] = {
    "actions__out_of_range": "action_code_range",
    "timestamps__unordered": "sequence_ordered",
    "timestamps__not_before_snapshot": "sequence_before_snapshot",
}
N_ACTION_CODES = 1 << len(LABELS)  # action code = sum(label_i << i): 0..63 (training.ranking.features)


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the quality gate."""

    # A batch's rows per snapshot must lie within [min, max] × the previous version's rows per snapshot:
    # catches a join that silently lost most rows (collapse) or fanned out (duplication) without blocking the
    # organic growth of a feed between two daily runs.
    row_count_min_ratio: float = 0.5
    row_count_max_ratio: float = 2.0
    # post_content's event_timestamp is each post's creation time, not a snapshot, so neither "rows per
    # snapshot" nor "contains the latest snapshot" means anything there.
    row_count_exempt: tuple[str, ...] = ("post_content",)
    freshness_exempt: tuple[str, ...] = ("post_content",)
    min_rows: int = 1  # an empty feature batch is a fault (raw tables may legitimately be empty) ...
    # ... except for tables that hold a row only where something changed (a member's profile, history or
    # affinities on a day they did something): a day without changes is an empty batch, and their rows per
    # snapshot swing with activity, so a NEW snapshot has no stable reference. Re-runs of snapshots already
    # published are still held to the previous version's counts (like with like).
    changes_only: tuple[str, ...] = ("member_profile", "member_history", "member_sequence", "member_affinity")
    # Clock skew allowed between the machine that stamped the rows and the one running the gate.
    future_tolerance: timedelta = timedelta(0)
    # GX's SUMMARY format gives unexpected counts plus a sample; COMPLETE would list every unexpected row.
    result_format: str = "SUMMARY"
    unexpected_sample: int = 10


@dataclass(frozen=True)
class RowCountBounds:
    """Row-count bounds for a batch, derived from the previously published version."""

    min_rows: int
    max_rows: int
    reason: str  # e.g. "previous version 3: 40.0 rows/snapshot × 2 snapshot(s) in the batch"


@dataclass(frozen=True)
class SuiteInputs:
    """Run-dependent inputs of a suite."""

    now: datetime
    expected_snapshots: Sequence[datetime] | None = None
    row_count: RowCountBounds | None = None


def table_schema(table: str) -> pa.Schema:
    """The canonical schema of a gated table; an unknown name is a programming error."""
    if table in FEATURE_SCHEMAS:
        return FEATURE_SCHEMAS[table]
    if table in RAW_SCHEMAS:
        return RAW_SCHEMAS[table]
    known = sorted(FEATURE_SCHEMAS) + sorted(RAW_SCHEMAS)
    raise KeyError(f"no quality suite for table {table!r}; known tables: {known}")


def is_feature_table(table: str) -> bool:
    return table in FEATURE_SCHEMAS


def suite_name(table: str) -> str:
    return f"{table}_suite"


def table_keys(table: str) -> tuple[str, ...]:
    """Columns identifying a row: (key, event_timestamp) for feature tables, the primary key for raw ones."""
    if is_feature_table(table):
        return (FEATURE_KEYS[table], TIMESTAMP)
    return RAW_KEYS[table]


def row_count_bounds(
    config: GateConfig, *, reference_rows_per_snapshot: float, batch_snapshots: int, reference_version: int
) -> RowCountBounds:
    """Bounds on the batch's total rows: ratio × the reference's rows per snapshot × the batch's snapshots.
    A batch with no snapshot at all (empty) is held to one snapshot's worth, so it fails as a collapse."""
    snapshots = max(1, batch_snapshots)
    expected = reference_rows_per_snapshot * snapshots
    return RowCountBounds(
        min_rows=math.ceil(config.row_count_min_ratio * expected),
        max_rows=math.floor(config.row_count_max_ratio * expected),
        reason=(
            f"previous version {reference_version}: {reference_rows_per_snapshot:.1f} rows/snapshot × "
            f"{snapshots} snapshot(s) in the batch, allowed ratio "
            f"[{config.row_count_min_ratio}, {config.row_count_max_ratio}]"
        ),
    )


def derive_columns(table: str, batch: pa.Table) -> pa.Table:
    """A copy of ``batch`` with ``<list column>__length`` added for the list rules of ``table`` (and, for
    member_sequence, per-row counts of bad list elements: :func:`sequence_violations`)."""
    out = batch
    for column in LIST_LENGTH_COLUMNS.get(table, ()):
        if column in out.column_names:
            out = out.append_column(column + LENGTH_SUFFIX, pc.list_value_length(out.column(column)))
    if table == "member_sequence" and {"actions", "timestamps", TIMESTAMP} <= set(out.column_names):
        for name, counts in sequence_violations(out).items():
            out = out.append_column(name, counts)
    return out


def _flat(column: pa.ChunkedArray, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """The elements of a list column (null elements as ``fill``) and the row each belongs to."""
    lists = column.combine_chunks()
    values = pc.fill_null(pc.list_flatten(lists), fill).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)


def sequence_violations(batch: pa.Table) -> dict[str, pa.Array]:
    """Per row of a member_sequence batch, how many list elements break a rule GX cannot see inside lists:

    * ``actions__out_of_range``: an action code outside 0..63 (or null);
    * ``timestamps__unordered``: a timestamp smaller than the one before it (oldest first is the contract);
    * ``timestamps__not_before_snapshot``: a timestamp at or after the row's snapshot (a leak: a snapshot
      sees only impressions strictly before it), or null.
    """
    n = batch.num_rows

    def per_row(rows: np.ndarray) -> pa.Array:
        return pa.array(np.bincount(rows, minlength=n).astype(np.int64), pa.int64())

    actions, action_rows = _flat(batch.column("actions"), -1)
    bad_action = (actions < 0) | (actions >= N_ACTION_CODES)
    ts, ts_rows = _flat(batch.column("timestamps"), np.iinfo(np.int64).max)
    same_row = ts_rows[1:] == ts_rows[:-1]
    unordered = same_row & (ts[1:] < ts[:-1])
    micros = pc.cast(pc.cast(batch.column(TIMESTAMP), TS), pa.int64()).to_numpy(zero_copy_only=False)
    snapshot_s = np.floor_divide(micros, 1_000_000)  # snapshots are whole seconds (UTC midnights)
    late = ts >= snapshot_s[ts_rows]
    return {
        "actions__out_of_range": per_row(action_rows[bad_action]),
        "timestamps__unordered": per_row(ts_rows[1:][unordered]),
        "timestamps__not_before_snapshot": per_row(ts_rows[late]),
    }


def build_suite(table: str, inputs: SuiteInputs, config: GateConfig | None = None) -> ExpectationSuite:
    """The expectation suite named ``<table>_suite`` for one batch of ``table``."""
    import great_expectations as gx

    config = config or GateConfig()
    schema = table_schema(table)
    expectations = _common_expectations(table, schema)
    if is_feature_table(table):
        expectations += _feature_expectations(table, inputs, config)
    else:
        expectations += _raw_expectations(table)
    return gx.ExpectationSuite(name=suite_name(table), expectations=expectations)


def _common_expectations(table: str, schema: pa.Schema) -> list[Expectation]:
    """Non-null for every non-nullable column (keys, timestamps) and a unique row identity."""
    import great_expectations.expectations as gxe

    out: list[Expectation] = [
        gxe.ExpectColumnValuesToNotBeNull(column=f.name, meta={"check": "not_null"})
        for f in schema
        if not f.nullable
    ]
    keys = list(table_keys(table))
    if len(keys) == 1:
        out.append(gxe.ExpectColumnValuesToBeUnique(column=keys[0], meta={"check": "key_unique"}))
    else:
        out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=keys, meta={"check": "key_unique"}))
    return out


def _feature_expectations(table: str, inputs: SuiteInputs, config: GateConfig) -> list[Expectation]:
    import great_expectations.expectations as gxe

    out: list[Expectation] = [
        # Backfills may stamp `created` long after event_timestamp, so only "not in the future" is checked.
        # A per-row check rather than the column max: it locates the offending rows and passes on an empty
        # batch (which the row-count rule judges).
        gxe.ExpectColumnValuesToBeBetween(
            column=TIMESTAMP,
            max_value=inputs.now + config.future_tolerance,
            meta={"check": "not_in_future", "now": inputs.now.isoformat()},
        )
    ]
    out += [
        gxe.ExpectColumnValuesToBeBetween(
            column=c, min_value=1, max_value=100, meta={"check": "percentile_range"}
        )
        for c in PERCENTILE_COLUMNS.get(table, ())
    ]
    out += [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, meta={"check": "count_non_negative"})
        for c in NON_NEGATIVE_COLUMNS.get(table, ())
    ]
    out += _table_specific(table)
    if table not in config.freshness_exempt and inputs.expected_snapshots:
        latest = max(inputs.expected_snapshots)
        # max == latest: the newest expected snapshot is present and nothing newer slipped in.
        out.append(
            gxe.ExpectColumnMaxToBeBetween(
                column=TIMESTAMP,
                min_value=latest,
                max_value=latest,
                meta={"check": "freshness", "latest_expected_snapshot": latest.isoformat()},
            )
        )
    if table not in config.row_count_exempt:
        floor = 0 if table in config.changes_only else config.min_rows
        min_rows, max_rows, reason = floor, None, "no previous version: at least min_rows"
        if inputs.row_count is not None:
            min_rows = max(floor, inputs.row_count.min_rows)
            max_rows, reason = inputs.row_count.max_rows, inputs.row_count.reason
        out.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=min_rows, max_value=max_rows, meta={"check": "row_count_change", "basis": reason}
            )
        )
    return out


def _table_specific(table: str) -> list[Expectation]:
    import great_expectations.expectations as gxe

    def a_ge_b(a: str, b: str, check: str) -> Expectation:
        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=a,
            column_B=b,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            meta={"check": check},
        )

    def same_length(a: str, b: str) -> Expectation:
        return gxe.ExpectColumnPairValuesToBeEqual(
            column_A=a + LENGTH_SUFFIX,
            column_B=b + LENGTH_SUFFIX,
            ignore_row_if="either_value_is_missing",
            meta={"check": "parallel_lists_same_length"},
        )

    out: list[Expectation] = []
    if table == "post_engagement":
        for count in POST_ENGAGEMENT_COUNTS:
            out += [
                a_ge_b(f"{count}_7d", f"{count}_1d", "window_le_window"),
                a_ge_b(f"{count}_28d", f"{count}_7d", "window_le_window"),
                a_ge_b(count, f"{count}_28d", "window_le_cumulative"),
            ]
    elif table == "member_history":
        # history_length counts every engaged impression; the id list is capped, never longer.
        out.append(a_ge_b("history_length", "engaged_post_ids" + LENGTH_SUFFIX, "history_length_ge_list"))
    elif table == "member_sequence":
        # sequence_length counts every impression before S; the lists keep the newest sequence_max_len.
        out += [
            a_ge_b("sequence_length", "post_ids" + LENGTH_SUFFIX, "sequence_length_ge_list"),
            same_length("post_ids", "actions"),
            same_length("post_ids", "timestamps"),
        ]
        out += [
            gxe.ExpectColumnValuesToBeBetween(column=name, min_value=0, max_value=0, meta={"check": check})
            for name, check in SEQUENCE_VIOLATIONS.items()
        ]
    elif table == "member_affinity":
        # Ids and scores are parallel lists: a score without its id (or the reverse) is a broken join.
        out += [
            same_length("top_author_ids", "top_author_scores"),
            same_length("top_topics", "top_topic_scores"),
        ]
    elif table == "post_content":
        out.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="format", value_set=list(POST_FORMATS), meta={"check": "format_in_set"}
            )
        )
    elif table in ("member_embeddings", "post_embeddings"):
        out += [
            gxe.ExpectColumnValuesToNotBeNull(
                column="embedding" + LENGTH_SUFFIX, meta={"check": "embedding_present"}
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="embedding" + LENGTH_SUFFIX, min_value=1, meta={"check": "embedding_dimension"}
            ),
            # One model version writes one dimension: more than one distinct length is a mixed-up batch.
            gxe.ExpectColumnUniqueValueCountToBeBetween(
                column="embedding" + LENGTH_SUFFIX,
                min_value=0,
                max_value=1,
                meta={"check": "embedding_dimension"},
            ),
        ]
    return out


def _raw_expectations(table: str) -> list[Expectation]:
    import great_expectations.expectations as gxe

    out: list[Expectation] = []
    if table == "raw_impressions":
        out += [
            gxe.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1], meta={"check": "label_binary"})
            for label in LABELS
        ]
        out += [
            gxe.ExpectColumnValuesToBeBetween(
                column="position", min_value=0, meta={"check": "position_non_negative"}
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="device_type", value_set=list(DEVICE_TYPES), meta={"check": "device_in_set"}
            ),
        ]
    elif table == "raw_posts":
        out.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="format", value_set=list(POST_FORMATS), meta={"check": "format_in_set"}
            )
        )
    return out
