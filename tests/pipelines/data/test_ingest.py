"""Ingest: valid landing data reaches the lake; every kind of bad input is refused with a message naming the
file, row and field, and the lake stays unchanged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.delta_io import SchemaMismatchError
from pipelines.ingest import MAX_LISTED, RawDataError, commit_tables, ingest, write_landing
from pipelines.schemas import RAW_SCHEMAS

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _lake_state(paths: FeedPaths) -> dict[str, int | None]:
    return {name: delta_io.version(paths.table(name)) for name in RAW_SCHEMAS}


def _set(table: pa.Table, column: str, row: int, value: object, type_: pa.DataType | None = None) -> pa.Table:
    """``table`` with one cell replaced (the column's type widened to ``type_`` when given)."""
    values = table.column(column).to_pylist()
    if type_ is not None and pa.types.is_string(type_):  # a numeric column written as text
        values = [str(v) for v in values]
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, type=type_))


def _refused(paths: FeedPaths, src: Path, *expected: str) -> RawDataError:
    before = _lake_state(paths)
    with pytest.raises(RawDataError) as info:
        ingest(paths, src, now=NOW)
    message = str(info.value)
    for text in expected:
        assert text in message, message
    assert "nothing was committed" in message
    assert _lake_state(paths) == before
    return info.value


def test_valid_landing_is_committed(feed_paths: FeedPaths, make_landing: Callable[..., Path]) -> None:
    result = ingest(feed_paths, make_landing(), now=NOW)
    assert result.rows["raw_impressions"] == 4
    assert set(result.versions) == set(RAW_SCHEMAS)
    lake = delta_io.read(feed_paths.table("raw_impressions"))
    assert lake.schema.equals(RAW_SCHEMAS["raw_impressions"])
    assert sorted(lake.column("event_id").to_pylist()) == [1, 2, 3, 4]


def test_tiny_synthetic_data_ingests(tiny_raw_lake: FeedPaths) -> None:
    for name in (*RAW_SCHEMAS, "audit_attributes", "truth_members", "truth_posts"):
        assert delta_io.exists(tiny_raw_lake.table(name)), name
    assert delta_io.read(tiny_raw_lake.table("raw_members"), columns=["member_id"]).num_rows == 1000


TS = pa.timestamp("us", tz="UTC")
IMP = "raw_impressions"
BAD_CELLS = [
    # (table, column, row, value, arrow type or None, expected text)
    (IMP, "click", 3, 2, pa.int8(), "row 3 field 'click': label value 2 not in {0, 1}"),
    (IMP, "position", 0, -1, pa.int32(), "row 0 field 'position': negative value -1"),
    (IMP, "position", 2, "abc", pa.string(), "row 2 field 'position': value 'abc' is not a valid int32"),
    (IMP, "click", 1, 0.5, pa.float64(), "row 1 field 'click': value 0.5 is not a valid int8"),
    (IMP, "device_type", 1, "smart_tv", None, "row 1 field 'device_type': value 'smart_tv' not in"),
    (IMP, "skip", 0, 1, pa.int8(), "row 0 field 'skip': skip and long_dwell are both 1"),
    (IMP, "member_id", 2, 99, pa.int64(), "row 2 field 'member_id': member_id 99 is not in raw_members"),
    (IMP, "post_id", 1, 12, pa.int64(), "row 1 field 'post_id': post_id 12 is not in raw_posts"),
    (IMP, "event_id", 3, 1, pa.int64(), "row 3 field 'event_id': duplicate key (event_id=1)"),
    (IMP, "event_timestamp", 1, datetime(2027, 1, 1, tzinfo=UTC), TS,
     "row 1 field 'event_timestamp': timestamp 2027-01-01 00:00:00+00:00 is in the future"),
    (IMP, "event_timestamp", 0, datetime(2026, 9, 1, tzinfo=UTC), TS,
     "row 0 field 'event_timestamp': impression of post 10 before the post was created"),
    ("raw_posts", "format", 1, "tweet", None, "row 1 field 'format': value 'tweet' not in"),
    ("raw_posts", "author_id", 1, None, pa.int64(), "row 1 field 'author_id': null in a non-nullable field"),
    ("raw_members", "member_id", 2, 1, pa.int64(), "row 2 field 'member_id': duplicate key (member_id=1)"),
    ("raw_follows", "author_id", 0, 42, pa.int64(), "row 0 field 'author_id': author_id 42 is not in"),
    ("raw_profile_updates", "member_id", 0, 7, pa.int64(), "row 0 field 'member_id': member_id 7 is not in"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "column", "row", "value", "type_", "expected"), BAD_CELLS)
def test_bad_cell_is_refused(
    feed_paths: FeedPaths,
    make_landing: Callable[..., Path],
    landing_tables: dict[str, pa.Table],
    table: str,
    column: str,
    row: int,
    value: object,
    type_: pa.DataType | None,
    expected: str,
) -> None:
    if (table, column) == ("raw_impressions", "skip"):  # make long_dwell 1 where skip is set
        landing_tables[table] = _set(landing_tables[table], "long_dwell", row, 1, pa.int8())
    bad = _set(landing_tables[table], column, row, value, type_)
    src = make_landing(**{table: bad})
    error = _refused(feed_paths, src, f"{table}.parquet", expected)
    assert any(p.row == row and p.field == column for p in error.problems)


def test_missing_and_unexpected_columns(
    feed_paths: FeedPaths, make_landing: Callable[..., Path], landing_tables: dict[str, pa.Table]
) -> None:
    members = landing_tables["raw_members"].drop_columns(["headline"])
    members = members.append_column("gender", pa.array(["F", "M", "F"]))  # sensitive: audit_attributes only
    _refused(
        feed_paths,
        make_landing(raw_members=members),
        "raw_members.parquet field 'headline': missing column",
        "raw_members.parquet field 'gender': unexpected column",
    )


def test_missing_table_and_unknown_file(feed_paths: FeedPaths, make_landing: Callable[..., Path]) -> None:
    src = make_landing(raw_follows=None)
    pq.write_table(pa.table({"x": [1]}), src / "raw_membrs.parquet")
    (src / "notes.txt").write_text("hello")
    _refused(
        feed_paths,
        src,
        "raw_follows.parquet: missing (required",
        "raw_membrs.parquet: unknown table 'raw_membrs'",
        "notes.txt: not a Parquet file",
    )


def test_unreadable_file(feed_paths: FeedPaths, make_landing: Callable[..., Path]) -> None:
    src = make_landing()
    (src / "raw_posts.parquet").write_bytes(b"not parquet at all")
    _refused(feed_paths, src, "raw_posts.parquet: not a readable Parquet file")


def test_duplicates_against_the_lake(feed_paths: FeedPaths, make_landing: Callable[..., Path]) -> None:
    ingest(feed_paths, make_landing(), now=NOW)
    _refused(
        feed_paths,
        make_landing(),
        "raw_members.parquet row 0 field 'member_id': key (member_id=1) is already in the lake table",
        "raw_follows.parquet row 0 field 'member_id': key (member_id=1, author_id=2) is already in the lake",
    )


def test_later_batch_may_reference_the_lake(
    feed_paths: FeedPaths, make_landing: Callable[..., Path], landing_tables: dict[str, pa.Table]
) -> None:
    """A second landing folder with only new impressions refers to members and posts already in the lake."""
    ingest(feed_paths, make_landing(), now=NOW)
    more = landing_tables["raw_impressions"].set_column(0, "event_id", pa.array([5, 6, 7, 8], pa.int64()))
    src = feed_paths.landing / "day-2"
    write_landing(src, {"raw_impressions": more})
    result = ingest(feed_paths, src, now=NOW)
    assert result.rows == {"raw_impressions": 4}
    assert delta_io.read(feed_paths.table("raw_impressions")).num_rows == 8


def test_split_table_names_the_part(
    feed_paths: FeedPaths, make_landing: Callable[..., Path], landing_tables: dict[str, pa.Table]
) -> None:
    src = make_landing(raw_impressions=None)
    (src / "raw_impressions").mkdir()
    imp = landing_tables["raw_impressions"]
    pq.write_table(imp.slice(0, 2), src / "raw_impressions" / "part-00000.parquet")
    pq.write_table(
        _set(imp.slice(2, 2), "like", 1, 3, pa.int8()), src / "raw_impressions" / "part-00001.parquet"
    )
    _refused(feed_paths, src, "raw_impressions/part-00001.parquet row 1 field 'like': label value 3")
    pq.write_table(imp.slice(2, 2), src / "raw_impressions" / "part-00001.parquet")
    assert ingest(feed_paths, src, now=NOW).rows["raw_impressions"] == 4


def test_problem_list_is_capped(
    feed_paths: FeedPaths, make_landing: Callable[..., Path], landing_tables: dict[str, pa.Table]
) -> None:
    imp = landing_tables["raw_impressions"]
    big = pa.concat_tables([imp] * 50)
    big = big.set_column(0, "event_id", pa.array(range(1, 201), pa.int64()))
    for label in ("click", "like", "share", "comment", "long_dwell"):
        big = big.set_column(big.schema.get_field_index(label), label, pa.array([7] * 200, pa.int8()))
    error = _refused(feed_paths, make_landing(raw_impressions=big), "more problem(s)")
    assert error.total == 5 * 200
    assert str(error).count("\n  - ") == MAX_LISTED


def test_failed_commit_is_rolled_back(feed_paths: FeedPaths, make_landing: Callable[..., Path]) -> None:
    """A commit failing halfway undoes the commits of that ingest: an existing table is restored to its
    earlier version, a table the ingest created is removed."""
    ingest(feed_paths, make_landing(), now=NOW)
    members = pa.table(
        {
            "member_id": [4],
            "headline": ["New"],
            "current_role": [None],
            "industry": [None],
            "skills": [None],
            "education": [None],
            "work_history": [None],
            "created_at": [datetime(2026, 9, 2, tzinfo=UTC)],
        },
        schema=RAW_SCHEMAS["raw_members"],
    )
    audit = pa.table({"member_id": [4], "attribute": ["group"], "value": ["A"]})
    broken = pa.table({"post_id": [10]})  # fails at commit time: truth_posts needs topic and quality
    with pytest.raises(SchemaMismatchError, match="truth_posts"):
        commit_tables(feed_paths, {"raw_members": members, "audit_attributes": audit, "truth_posts": broken})
    ids = (
        delta_io.read(feed_paths.table("raw_members"), columns=["member_id"]).column("member_id").to_pylist()
    )
    assert sorted(ids) == [1, 2, 3]
    assert not delta_io.exists(feed_paths.table("audit_attributes"))
