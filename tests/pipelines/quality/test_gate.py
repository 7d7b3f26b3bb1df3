"""The quality gate publishes clean batches and quarantines each injected fault without touching the table."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.quality import gate_and_publish, list_quarantined
from pipelines.quality.gate import BATCH_FILE, VALIDATION_FILE
from pipelines.schemas import FEATURE_SCHEMAS, RAW_SCHEMAS

TABLE = "post_engagement"
BASELINE_VERSION = 1  # published_home holds snapshots 0 and 1 as versions 0 and 1


def _fault_cases() -> list[Any]:
    """(fault builder, gate kwargs, expected expectation type, expected check) per injected fault."""

    def case(name: str, build: Callable, expectation: str, check: str, **kwargs: Any) -> Any:
        return pytest.param(build, kwargs, expectation, check, id=name)

    between = "expect_column_values_to_be_between"
    return [
        case("null_key", lambda k, b: k.set_value(b, "post_id", 3, None),
             "expect_column_values_to_not_be_null", "not_null"),
        case("duplicate_key_timestamp", lambda k, b: pa.concat_tables([b, b.slice(7, 1)]),
             "expect_compound_columns_to_be_unique", "key_unique"),
        case("bucket_0", lambda k, b: k.set_value(b, "view_percentile", 2, 0), between, "percentile_range"),
        case("bucket_101", lambda k, b: k.set_value(b, "share_percentile", 2, 101),
             between, "percentile_range"),
        case("negative_count", lambda k, b: k.set_value(b, "likes_1d", 4, -1), between, "count_non_negative"),
        case("window_above_cumulative", lambda k, b: k.set_value(b, "views_28d", 5, 10_000),
             "expect_column_pair_values_a_to_be_greater_than_b", "window_le_cumulative"),
        case("window_above_window", lambda k, b: k.set_value(b, "comments_1d", 6, 10_000),
             "expect_column_pair_values_a_to_be_greater_than_b", "window_le_window"),
        case("future_timestamp",
             lambda k, b: k.feature_batch(TABLE, snapshots=[k.now + timedelta(days=1)]),
             between, "not_in_future"),
        case("missing_column", lambda k, b: b.drop_columns(["share_percentile"]),
             "expect_batch_to_conform_to_schema", "schema"),
        case("wrong_type", lambda k, b: k.replace_column(b, "views", ["many"] * b.num_rows, pa.string()),
             "expect_batch_to_conform_to_schema", "schema"),
        case("row_count_collapse", lambda k, b: b.slice(0, 5),
             "expect_table_row_count_to_be_between", "row_count_change"),
        case("row_count_blowup", lambda k, b: pa.concat_tables(
                 [b] + [k.feature_batch(TABLE, keys=range(i, i + k.n_keys), snapshots=[k.snapshots[2]])
                        for i in (1000, 2000)]),
             "expect_table_row_count_to_be_between", "row_count_change"),
        case("stale_batch", lambda k, b: k.feature_batch(TABLE, snapshots=[k.snapshots[1]]),
             "expect_column_max_to_be_between", "freshness", expected_snapshots=True),
    ]  # fmt: skip


@pytest.mark.parametrize(("build", "kwargs", "expectation", "check"), _fault_cases())
def test_gate_blocks_fault(
    kit: Any,
    published_paths: FeedPaths,
    build: Callable,
    kwargs: dict[str, Any],
    expectation: str,
    check: str,
) -> None:
    path = published_paths.table(TABLE)
    before = delta_io.read(path)
    batch = build(kit, kit.feature_batch(TABLE, snapshots=[kit.snapshots[2]]))
    snapshots = list(kit.snapshots) if kwargs.get("expected_snapshots") else None

    result = gate_and_publish(
        TABLE,
        batch,
        paths=published_paths,
        run_id="run-fault",
        predicate=kit.snapshot_predicate(kit.snapshots[2]),
        expected_snapshots=snapshots,
        now=kit.now,
    )

    assert not result.passed
    assert result.version is None
    assert result.rows == batch.num_rows
    # Exactly the injected fault is reported, under its expectation and check names.
    assert {(f["expectation_type"], f["check"]) for f in result.failures} == {(expectation, check)}
    assert expectation in result.summary
    # Quarantine: the refused batch as received plus the validation result naming the expectation.
    assert result.quarantine_path == published_paths.quarantine / TABLE / "run-fault"
    assert pq.read_table(result.quarantine_path / BATCH_FILE).equals(batch)
    doc = json.loads((result.quarantine_path / VALIDATION_FILE).read_text())
    assert doc["success"] is False
    assert doc["table"] == TABLE
    assert [f["expectation_type"] for f in doc["failures"]] == [expectation]
    # The published table is untouched and every earlier version stays readable.
    assert delta_io.version(path) == BASELINE_VERSION
    assert delta_io.read(path).equals(before)
    assert delta_io.read(path, version=0).num_rows == kit.n_keys


def test_fault_locates_rows_and_values(kit: Any, published_paths: FeedPaths) -> None:
    batch = kit.feature_batch(TABLE, snapshots=[kit.snapshots[2]])
    batch = kit.set_value(kit.set_value(batch, "like_percentile", 3, 0), "like_percentile", 9, 101)

    result = gate_and_publish(TABLE, batch, paths=published_paths, run_id="locate", now=kit.now)

    (failure,) = result.failures
    assert failure["column"] == "like_percentile"
    assert failure["unexpected_count"] == 2
    assert sorted(failure["unexpected_sample"]) == [0, 101]
    assert sorted(failure["unexpected_rows"]) == [3, 9]
    assert "like_percentile" in result.summary
    assert "rows [3, 9]" in result.summary


def test_clean_batch_publishes_next_version(kit: Any, published_paths: FeedPaths) -> None:
    path = published_paths.table(TABLE)
    batch = kit.feature_batch(TABLE, snapshots=[kit.snapshots[2]])

    result = gate_and_publish(
        TABLE,
        batch,
        paths=published_paths,
        run_id="run-clean",
        predicate=kit.snapshot_predicate(kit.snapshots[2]),
        expected_snapshots=list(kit.snapshots),
        now=kit.now,
    )

    assert result.passed, result.summary
    assert result.failures == []
    assert result.quarantine_path is None
    assert result.version == BASELINE_VERSION + 1 == delta_io.version(path)
    published = delta_io.read(path)
    assert published.num_rows == 3 * kit.n_keys
    latest = published.filter(
        pc.field("event_timestamp")
        == pa.scalar(kit.snapshots[2], published.schema.field("event_timestamp").type)
    )
    assert sorted(latest.column("post_id").to_pylist()) == list(range(kit.n_keys))
    assert not (published_paths.quarantine / TABLE).exists()


def test_replace_by_predicate_rerun_does_not_duplicate(kit: Any, published_paths: FeedPaths) -> None:
    path = published_paths.table(TABLE)
    snapshot = kit.snapshots[1]  # already published once by the baseline
    rerun = kit.feature_batch(TABLE, snapshots=[snapshot])
    rerun = kit.replace_column(rerun, "views", [v + 1 for v in rerun.column("views").to_pylist()])

    for attempt in range(2):
        result = gate_and_publish(
            TABLE,
            rerun,
            paths=published_paths,
            run_id=f"rerun-{attempt}",
            predicate=kit.snapshot_predicate(snapshot),
            now=kit.now,
        )
        assert result.passed, result.summary
        assert result.version == BASELINE_VERSION + 1 + attempt

    published = delta_io.read(path)
    assert published.num_rows == 2 * kit.n_keys
    ts_type = published.schema.field("event_timestamp").type
    replaced = published.filter(pc.field("event_timestamp") == pa.scalar(snapshot, ts_type))
    assert sorted(replaced.column("views").to_pylist()) == [101 + k for k in range(kit.n_keys)]
    untouched = published.filter(pc.field("event_timestamp") == pa.scalar(kit.snapshots[0], ts_type))
    assert sorted(untouched.column("views").to_pylist()) == [100 + k for k in range(kit.n_keys)]


@pytest.mark.parametrize("table", sorted(FEATURE_SCHEMAS))
def test_clean_feature_batch_creates_table(kit: Any, feed_paths: FeedPaths, table: str) -> None:
    batch = kit.feature_batch(table, snapshots=list(kit.snapshots))

    result = gate_and_publish(
        table, batch, paths=feed_paths, run_id="first", expected_snapshots=list(kit.snapshots), now=kit.now
    )

    assert result.passed, result.summary
    assert result.version == 0
    assert delta_io.read(feed_paths.table(table)).num_rows == batch.num_rows


def _other_feature_faults() -> list[Any]:
    def lengthen(column: str, extra: list[Any]) -> Callable:
        return lambda k, b: k.set_value(b, column, 0, b.column(column)[0].as_py() + extra)

    return [
        pytest.param("member_history", lambda k, b: k.set_value(b, "history_length", 1, 2),
                     "expect_column_pair_values_a_to_be_greater_than_b", "history_length_ge_list",
                     id="history_shorter_than_list"),
        pytest.param("member_sequence", lambda k, b: k.set_value(b, "sequence_length", 1, 2),
                     "expect_column_pair_values_a_to_be_greater_than_b", "sequence_length_ge_list",
                     id="sequence_shorter_than_list"),
        pytest.param("member_sequence", lengthen("actions", [1]),
                     "expect_column_pair_values_to_be_equal", "parallel_lists_same_length",
                     id="sequence_lists_misaligned"),
        pytest.param("member_sequence", lambda k, b: k.set_value(b, "actions", 0, [0, 64, 1]),
                     "expect_column_values_to_be_between", "action_code_range", id="action_code_64"),
        pytest.param("member_sequence", lambda k, b: k.set_value(b, "timestamps", 0, [5, 4, 6]),
                     "expect_column_values_to_be_between", "sequence_ordered", id="sequence_unordered"),
        pytest.param("member_sequence",
                     lambda k, b: k.set_value(b, "timestamps", 0, [1, 2, int(k.snapshots[0].timestamp())]),
                     "expect_column_values_to_be_between", "sequence_before_snapshot",
                     id="sequence_item_at_snapshot"),
        pytest.param("member_affinity", lengthen("top_author_scores", [0.1]),
                     "expect_column_pair_values_to_be_equal", "parallel_lists_same_length",
                     id="affinity_lists_misaligned"),
        pytest.param("post_embeddings", lengthen("embedding", [0.5]),
                     "expect_column_unique_value_count_to_be_between", "embedding_dimension",
                     id="embedding_dimension_mixed"),
        pytest.param("author_stats", lambda k, b: k.set_value(b, "follower_percentile", 0, 0),
                     "expect_column_values_to_be_between", "percentile_range", id="author_bucket_0"),
        pytest.param("post_content", lambda k, b: k.set_value(b, "format", 0, "hologram"),
                     "expect_column_values_to_be_in_set", "format_in_set", id="unknown_post_format"),
        pytest.param("member_profile", lambda k, b: k.set_value(b, "event_timestamp", 0, None),
                     "expect_column_values_to_not_be_null", "not_null", id="null_timestamp"),
        # an empty batch of a dense table (a row per author per snapshot); change-only tables may be empty
        pytest.param("author_stats", lambda k, b: b.slice(0, 0),
                     "expect_table_row_count_to_be_between", "row_count_change", id="empty_batch"),
    ]  # fmt: skip


@pytest.mark.parametrize(("table", "build", "expectation", "check"), _other_feature_faults())
def test_gate_blocks_faults_in_other_feature_tables(
    kit: Any, feed_paths: FeedPaths, table: str, build: Callable, expectation: str, check: str
) -> None:
    batch = build(kit, kit.feature_batch(table))

    result = gate_and_publish(table, batch, paths=feed_paths, run_id="bad", now=kit.now)

    assert not result.passed
    assert {(f["expectation_type"], f["check"]) for f in result.failures} == {(expectation, check)}
    assert (result.quarantine_path / VALIDATION_FILE).is_file()
    assert not delta_io.exists(feed_paths.table(table))


@pytest.mark.parametrize("table", sorted(RAW_SCHEMAS))
def test_clean_raw_batch_publishes(kit: Any, feed_paths: FeedPaths, table: str) -> None:
    batch = kit.raw_batch(table)

    result = gate_and_publish(table, batch, paths=feed_paths, run_id="ingest", mode="append", now=kit.now)

    assert result.passed, result.summary
    assert result.version == 0
    assert delta_io.read(feed_paths.table(table)).num_rows == batch.num_rows


def _raw_faults() -> list[Any]:
    return [
        pytest.param("raw_impressions", lambda k, b: k.set_value(b, "like", 0, 2),
                     "expect_column_values_to_be_in_set", "label_binary", id="label_2"),
        pytest.param("raw_impressions", lambda k, b: k.set_value(b, "device_type", 0, "fax"),
                     "expect_column_values_to_be_in_set", "device_in_set", id="unknown_device"),
        pytest.param("raw_impressions", lambda k, b: k.set_value(b, "position", 0, -1),
                     "expect_column_values_to_be_between", "position_non_negative", id="negative_position"),
        pytest.param("raw_impressions", lambda k, b: k.set_value(b, "event_id", 0, 1),
                     "expect_column_values_to_be_unique", "key_unique", id="duplicate_event_id"),
        pytest.param("raw_posts", lambda k, b: k.set_value(b, "format", 0, "tweet"),
                     "expect_column_values_to_be_in_set", "format_in_set", id="unknown_raw_format"),
        pytest.param("raw_follows", lambda k, b: pa.concat_tables([b, b.slice(0, 1)]),
                     "expect_compound_columns_to_be_unique", "key_unique", id="duplicate_follow"),
        pytest.param("raw_members", lambda k, b: k.set_value(b, "member_id", 0, None),
                     "expect_column_values_to_not_be_null", "not_null", id="null_member_id"),
    ]  # fmt: skip


@pytest.mark.parametrize(("table", "build", "expectation", "check"), _raw_faults())
def test_gate_blocks_raw_faults(
    kit: Any, feed_paths: FeedPaths, table: str, build: Callable, expectation: str, check: str
) -> None:
    result = gate_and_publish(table, build(kit, kit.raw_batch(table)), paths=feed_paths, run_id="bad-raw")

    assert not result.passed
    assert {(f["expectation_type"], f["check"]) for f in result.failures} == {(expectation, check)}
    assert not delta_io.exists(feed_paths.table(table))


def test_list_quarantined_reads_refused_batches(kit: Any, feed_paths: FeedPaths) -> None:
    batch = kit.set_value(kit.raw_batch("raw_impressions"), "click", 0, 7)
    gate_and_publish("raw_impressions", batch, paths=feed_paths, run_id="2026-01-01T00:00:00+00:00")

    (found,) = list_quarantined(feed_paths)

    assert (found.table, found.run_id, found.rows) == (
        "raw_impressions",
        "2026-01-01T00:00:00+00:00",
        kit.n_keys,
    )
    assert found.failures[0]["check"] == "label_binary"
    assert "click" in found.summary


def test_programming_errors_raise(kit: Any, feed_paths: FeedPaths) -> None:
    batch = kit.feature_batch(TABLE)
    with pytest.raises(KeyError, match="no quality suite for table 'post_stats'"):
        gate_and_publish("post_stats", batch, paths=feed_paths, run_id="x")
    with pytest.raises(ValueError, match="mode must be one of"):
        gate_and_publish(TABLE, batch, paths=feed_paths, run_id="x", mode="merge")
    with pytest.raises(ValueError, match="run_id"):
        gate_and_publish(TABLE, batch, paths=feed_paths, run_id="../escape")
    with pytest.raises(TypeError, match=r"pyarrow\.Table"):
        gate_and_publish(TABLE, batch.to_pandas(), paths=feed_paths, run_id="x")
    assert not feed_paths.quarantine.exists()


def test_row_count_reference_for_a_new_snapshot_is_the_latest_published_one(
    kit: Any, feed_paths: FeedPaths
) -> None:
    """A growing table (25 → 40 → 70 rows per snapshot) passes: 70 is within 2× the latest snapshot (40),
    although it is more than 2× the all-history average (32.5)."""
    for keys, snapshot in ((25, kit.snapshots[0]), (40, kit.snapshots[1]), (70, kit.snapshots[2])):
        result = gate_and_publish(
            TABLE,
            kit.feature_batch(TABLE, keys=range(keys), snapshots=[snapshot]),
            paths=feed_paths,
            run_id=f"grow-{keys}",
            predicate=kit.snapshot_predicate(snapshot),
            now=kit.now,
        )
        assert result.passed, result.summary
    assert delta_io.read(feed_paths.table(TABLE)).num_rows == 25 + 40 + 70


def test_change_only_table_accepts_a_quiet_day_but_not_a_collapsed_rerun(
    kit: Any, feed_paths: FeedPaths
) -> None:
    """member_history holds rows only where a member engaged: a new day with few (or no) changes is normal,
    while re-running an already published day that lost most of its rows is still a collapse."""
    table = "member_history"
    first = gate_and_publish(
        table,
        kit.feature_batch(table, keys=range(40), snapshots=[kit.snapshots[0]]),
        paths=feed_paths,
        run_id="day-0",
        predicate=kit.snapshot_predicate(kit.snapshots[0]),
        now=kit.now,
    )
    assert first.passed, first.summary
    for run_id, keys, snapshot in (
        ("quiet-day", range(3), kit.snapshots[1]),
        ("empty-day", range(0), kit.snapshots[2]),
    ):
        result = gate_and_publish(
            table,
            kit.feature_batch(table, keys=keys, snapshots=[snapshot]),
            paths=feed_paths,
            run_id=run_id,
            predicate=kit.snapshot_predicate(snapshot),
            now=kit.now,
        )
        assert result.passed, result.summary
    version = delta_io.version(feed_paths.table(table))
    rerun = gate_and_publish(
        table,
        kit.feature_batch(table, keys=range(5), snapshots=[kit.snapshots[0]]),
        paths=feed_paths,
        run_id="collapsed-rerun",
        predicate=kit.snapshot_predicate(kit.snapshots[0]),
        now=kit.now,
    )
    assert not rerun.passed
    assert any(f.get("check") == "row_count_change" for f in rerun.failures)
    assert delta_io.version(feed_paths.table(table)) == version
