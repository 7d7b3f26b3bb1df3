"""The one module that owns Delta Lake I/O.

Embedded default: ``deltalake`` (delta-rs) reads and writes the tables; Spark jobs exchange data with it
as Parquet files (Spark reads a table's current data files; Spark writes Parquet to a staging folder which is
then committed to Delta here). On a cluster that can resolve the delta-spark jars, ``DeltaBackend.SPARK``
reads and writes with ``spark.read.format("delta")`` instead — delta-spark cannot start on machines without
Maven access (its wheel ships no jars), which is why it is not the default.

Writes are atomic Delta commits: a reader sees the previous version until the commit lands, and any earlier
version stays readable through time travel (``version=``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import DeltaTable, write_deltalake

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class DeltaBackend(enum.StrEnum):
    DELTA_RS = "delta-rs"  # deltalake package, no JVM; the embedded default
    SPARK = "delta-spark"  # io.delta:delta-spark jars on the cluster's classpath


class SchemaMismatchError(ValueError):
    """Raised when a batch does not match the table's canonical schema."""


def exists(path: Path | str) -> bool:
    return DeltaTable.is_deltatable(str(path))


def version(path: Path | str) -> int | None:
    """Current version of the table, or None when there is no table."""
    return DeltaTable(str(path)).version() if exists(path) else None


def conform(table: pa.Table, schema: pa.Schema, *, name: str = "batch") -> pa.Table:
    """Select and cast ``table`` to ``schema``'s columns and order; a missing column or a failed cast raises
    :class:`SchemaMismatchError` naming the column, so nothing off-contract reaches a table."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise SchemaMismatchError(f"{name}: missing column(s) {missing}; expected {schema.names}")
    cols = []
    for field in schema:
        col = table.column(field.name)
        if not col.type.equals(field.type):
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatchError(
                    f"{name}: column {field.name!r} has type {col.type}, cannot cast to {field.type}: {exc}"
                ) from exc
        if not field.nullable and col.null_count:
            raise SchemaMismatchError(f"{name}: column {field.name!r} has {col.null_count} null(s)")
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def write(
    path: Path | str,
    data: pa.Table | pads.Dataset,
    *,
    mode: str = "append",
    predicate: str | None = None,
    schema: pa.Schema | None = None,
    partition_by: Sequence[str] | None = None,
) -> int:
    """Commit ``data`` to the Delta table at ``path`` and return the new version.

    ``mode="overwrite"`` with a ``predicate`` (SQL over the table's columns) replaces just the matching rows —
    how a job re-run for the same interval replaces its output instead of duplicating it.
    """
    if schema is not None and isinstance(data, pa.Table):
        data = conform(data, schema, name=str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {"mode": mode}
    if predicate is not None:
        kwargs["predicate"] = predicate
    if partition_by:
        kwargs["partition_by"] = list(partition_by)
    if isinstance(data, pads.Dataset):
        # streamed batch by batch (bounded memory); delta-rs takes a RecordBatchReader
        reader = data.scanner().to_reader()
        if schema is not None:
            reader = pa.RecordBatchReader.from_batches(
                schema,
                (conform(pa.Table.from_batches([b]), schema).to_batches()[0] for b in reader if b.num_rows),
            )
        data = reader
    write_deltalake(str(path), data, **kwargs)
    return DeltaTable(str(path)).version()


def _native_fs(path: Path | str) -> pafs.FileSystem | None:
    """A C++ filesystem rooted at a local table. deltalake's default Python filesystem handler makes the
    process abort at exit ("terminate called without an active exception") once pyarrow scanned through it
    (deltalake 1.6 + pyarrow 26, seen here); the native one does not."""
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        return None  # object stores: deltalake's own handler
    return pafs.SubTreeFileSystem(text.removeprefix("file://"), pafs.LocalFileSystem())


def dataset(path: Path | str, *, version: int | None = None) -> pads.Dataset:
    """A pyarrow dataset over the table's snapshot (current, or ``version``)."""
    dt = DeltaTable(str(path), version=version)
    return dt.to_pyarrow_dataset(filesystem=_native_fs(path))


def read(
    path: Path | str,
    *,
    columns: Sequence[str] | None = None,
    version: int | None = None,
    filter: pads.Expression | None = None,  # pyarrow's own name
) -> pa.Table:
    """Read the table (optionally an earlier ``version``: Delta time travel)."""
    return dataset(path, version=version).to_table(columns=list(columns) if columns else None, filter=filter)


def data_files(path: Path | str, *, version: int | None = None) -> list[str]:
    """The Parquet files that make up the table's snapshot (no deletion vectors: delta-rs writes none)."""
    return list(DeltaTable(str(path), version=version).file_uris())


def history(path: Path | str) -> list[dict]:
    return DeltaTable(str(path)).history()


# --- Spark side --------------------------------------------------------------------------------------------


def spark_read(
    spark: SparkSession, path: Path | str, *, backend: DeltaBackend = DeltaBackend.DELTA_RS
) -> DataFrame:
    """A Spark DataFrame over the table's current snapshot."""
    if backend is DeltaBackend.SPARK:
        return spark.read.format("delta").load(str(path))
    files = data_files(path)
    schema = DeltaTable(str(path)).schema().to_arrow()
    if not files:
        from pyspark.sql.pandas.types import from_arrow_schema

        return spark.createDataFrame([], from_arrow_schema(pa.schema(schema)))
    return spark.read.parquet(*files)


def spark_write(
    df: DataFrame,
    path: Path | str,
    *,
    staging: Path,
    schema: pa.Schema,
    mode: str = "append",
    predicate: str | None = None,
    backend: DeltaBackend = DeltaBackend.DELTA_RS,
) -> int | None:
    """Write a Spark DataFrame to a Delta table: Spark writes Parquet into ``staging`` (distributed), then the
    files are committed here in one Delta transaction, conformed to ``schema``."""
    if backend is DeltaBackend.SPARK:
        writer = df.write.format("delta").mode(mode)
        if predicate is not None:
            writer = writer.option("replaceWhere", predicate)
        writer.save(str(path))
        return None
    stage_parquet(df, staging)
    return write(path, read_staged(staging, schema), mode=mode, predicate=predicate, schema=schema)


def stage_parquet(df: DataFrame, staging: Path) -> Path:
    """Spark writes the DataFrame as Parquet into ``staging`` (replacing what was there)."""
    df.write.mode("overwrite").parquet(str(staging))
    return staging


def read_staged(staging: Path, schema: pa.Schema) -> pa.Table:
    """Read a staged Parquet folder back, conformed to ``schema``."""
    files = sorted(str(p) for p in Path(staging).glob("*.parquet"))
    if not files:
        return schema.empty_table()
    table = pads.dataset(files, format="parquet").to_table()
    return conform(table, schema, name=str(staging))


def restore(path: Path | str, version: int) -> int:
    """Make ``version`` the table's current state again (a new commit; history is kept). Used to undo a
    multi-table ingest that failed halfway."""
    DeltaTable(str(path)).restore(version)
    return DeltaTable(str(path)).version()
