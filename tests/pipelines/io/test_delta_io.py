"""The Delta I/O module: writes conform to the canonical schema, datasets stream, time travel works."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pipelines import delta_io
from pipelines.schemas import RAW_FOLLOWS, TS


def _follows(ids: range) -> pa.Table:
    created = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "member_id": list(ids),
            "author_id": [i + 1000 for i in ids],
            "created_at": pa.array([created] * len(ids), type=TS),
        }
    )


def test_dataset_input_streams_and_conforms(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for part, ids in enumerate((range(0, 5), range(5, 12))):
        # int32 ids on disk: the write must cast them to the schema's int64
        table = _follows(ids).cast(
            pa.schema([("member_id", pa.int32()), ("author_id", pa.int32()), ("created_at", TS)])
        )
        pq.write_table(table, src / f"part-{part}.parquet")
    target = tmp_path / "follows"

    version = delta_io.write(target, pads.dataset(str(src), format="parquet"), schema=RAW_FOLLOWS)

    assert version == 0
    out = delta_io.read(target)
    assert out.schema.field("member_id").type == pa.int64()
    assert sorted(out.column("member_id").to_pylist()) == list(range(12))


def test_missing_column_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    target = tmp_path / "follows"
    with pytest.raises(delta_io.SchemaMismatchError, match="created_at"):
        delta_io.write(target, _follows(range(3)).drop_columns(["created_at"]), schema=RAW_FOLLOWS)
    assert not delta_io.exists(target)


def test_replace_by_predicate_and_time_travel(tmp_path: Path) -> None:
    target = tmp_path / "follows"
    delta_io.write(target, _follows(range(4)), schema=RAW_FOLLOWS)
    delta_io.write(
        target, _follows(range(2)), schema=RAW_FOLLOWS, mode="overwrite", predicate="member_id < 2"
    )
    assert delta_io.read(target).num_rows == 4  # rows 0-1 replaced, not duplicated
    assert delta_io.version(target) == 1
    assert delta_io.read(target, version=0).num_rows == 4
