"""Raw ingestion: a landing folder of Parquet files → validated → the raw Delta tables in the lake.

Landing layout (the contract between producers — generator, loaders — and this module):
``<dir>/<table>.parquet`` for each of raw_members, raw_posts, raw_follows, raw_impressions,
raw_profile_updates, audit_attributes, truth_members, truth_posts (the last three optional); a large table may
instead be split as ``<dir>/<table>/part-*.parquet``. Columns follow :mod:`pipelines.schemas`.

Bad input never reaches the lake: every file is validated first (schema, types, nulls, allowed values, ids,
timestamps, references between tables and against what the lake already holds) and one :class:`RawDataError`
lists the problems, each naming the file, the row (0-based Parquet row index) and the field. Only when every
file passes are the tables committed; if a commit fails midway, the tables already committed are rolled back.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.schemas import (
    DEVICE_TYPES,
    LABELS,
    POST_FORMATS,
    RAW_KEYS,
    RAW_SCHEMAS,
    SIDE_SCHEMAS,
)

log = logging.getLogger(__name__)

LANDING_SCHEMAS: dict[str, pa.Schema] = {**RAW_SCHEMAS, **SIDE_SCHEMAS}
LANDING_KEYS: dict[str, tuple[str, ...]] = {
    **RAW_KEYS,
    "audit_attributes": ("member_id", "attribute"),
    "truth_members": ("member_id",),
    "truth_posts": ("post_id",),
}
# Members first: later tables reference them. A failed commit rolls back in reverse.
COMMIT_ORDER: tuple[str, ...] = tuple(RAW_SCHEMAS) + tuple(SIDE_SCHEMAS)
# (table, column) → the table whose id it must name (landing rows plus what the lake holds).
REFERENCES: dict[tuple[str, str], str] = {
    ("raw_posts", "author_id"): "raw_members",
    ("raw_follows", "member_id"): "raw_members",
    ("raw_follows", "author_id"): "raw_members",
    ("raw_impressions", "member_id"): "raw_members",
    ("raw_impressions", "post_id"): "raw_posts",
    ("raw_profile_updates", "member_id"): "raw_members",
    ("audit_attributes", "member_id"): "raw_members",
    ("truth_members", "member_id"): "raw_members",
    ("truth_posts", "post_id"): "raw_posts",
}
ID_COLUMNS: dict[str, str] = {"raw_members": "member_id", "raw_posts": "post_id"}
ALLOWED_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("raw_posts", "format"): POST_FORMATS,
    ("raw_impressions", "device_type"): DEVICE_TYPES,
}
NON_NEGATIVE: tuple[str, ...] = ("member_id", "post_id", "author_id", "event_id", "session_id", "position")
MAX_LISTED = 20  # problems spelled out in the error message; the rest are counted
ROWS_PER_CHECK = 5  # rows listed per (file, field, check) before "... N more rows"
CAST_BLOCK = 1024


# --- problems ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    file: str  # landing file, relative to the landing folder
    row: int | None  # 0-based Parquet row index; None for file- or column-level problems
    field: str | None
    message: str
    count: int = 1  # >1 for a "same problem in N more rows" summary line

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.field is not None:
            where += f" field {self.field!r}"
        return f"{where}: {self.message}"


class RawDataError(ValueError):
    """Landing data that must not reach the lake; ``problems`` holds every problem found (``total`` counts
    rows summarised as well)."""

    def __init__(self, src: Path | str, problems: list[Problem]) -> None:
        self.src = str(src)
        self.problems = problems
        self.total = sum(p.count for p in problems)
        shown = problems[:MAX_LISTED]
        lines = [f"{self.total} problem(s) in landing data {src}; nothing was committed (rows are 0-based):"]
        lines += [f"  - {p}" for p in shown]
        rest = self.total - sum(p.count for p in shown)
        if rest:
            lines.append(f"  ... and {rest} more problem(s)")
        super().__init__("\n".join(lines))


@dataclass
class _Report:
    """Collects problems during one validation run (never module state)."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, file: str, row: int | None, field_name: str | None, message: str) -> None:
        self.problems.append(Problem(file, row, field_name, message))

    def add_rows(self, file: str, rows: np.ndarray, field_name: str, describe: Callable[[int], str]) -> None:
        for row in rows[:ROWS_PER_CHECK]:
            self.add(file, int(row), field_name, describe(int(row)))
        rest = len(rows) - ROWS_PER_CHECK
        if rest > 0:
            self.problems.append(Problem(file, None, field_name, f"same problem in {rest} more row(s)", rest))


# --- landing layout ----------------------------------------------------------------------------------------


def _clear(out: Path, name: str) -> None:
    (out / f"{name}.parquet").unlink(missing_ok=True)
    if (out / name).is_dir():
        shutil.rmtree(out / name)


def write_landing(out: Path, tables: Mapping[str, pa.Table]) -> dict[str, int]:
    """Write each table as ``out/<name>.parquet`` (conformed to its schema, replacing an earlier copy).
    Returns rows per table."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, table in tables.items():
        conformed = delta_io.conform(table, LANDING_SCHEMAS[name], name=name)
        _clear(out, name)
        pq.write_table(conformed, out / f"{name}.parquet")
        rows[name] = conformed.num_rows
    return rows


def write_landing_parts(out: Path, name: str, parts: Iterable[pa.Table]) -> int:
    """Write ``parts`` as ``out/<name>/part-00000.parquet`` …, replacing earlier files; returns the rows."""
    _clear(out, name)
    folder = out / name
    folder.mkdir(parents=True)
    total = 0
    for i, part in enumerate(parts):
        conformed = delta_io.conform(part, LANDING_SCHEMAS[name], name=f"{name} part {i}")
        pq.write_table(conformed, folder / f"part-{i:05d}.parquet")
        total += conformed.num_rows
    return total


def landing_files(src: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """The Parquet files of each landing table, plus problems with the folder layout itself."""
    files: dict[str, list[Path]] = {}
    layout: list[str] = []
    for entry in sorted(src.iterdir()):
        if entry.name.startswith((".", "_")):
            continue  # hidden files, Spark's _SUCCESS markers
        name = entry.stem if entry.is_file() else entry.name
        if entry.is_file() and entry.suffix != ".parquet":
            layout.append(f"{entry.name}: not a Parquet file (expected <table>.parquet)")
        elif name not in LANDING_SCHEMAS:
            layout.append(f"{entry.name}: unknown table {name!r}; expected one of {sorted(LANDING_SCHEMAS)}")
        elif name in files:
            layout.append(f"{entry.name}: {name} is given both as {name}.parquet and as folder {name}/")
        else:
            files[name] = [entry] if entry.is_file() else sorted(entry.glob("*.parquet"))
    return files, layout


# --- per-file checks ---------------------------------------------------------------------------------------


def _uncastable_rows(col: pa.Array, target: pa.DataType) -> np.ndarray:
    """Rows of ``col`` that do not cast to ``target`` (error path only: block-wise, then per element)."""
    bad: list[int] = []
    for start in range(0, len(col), CAST_BLOCK):
        block = col.slice(start, CAST_BLOCK)
        try:
            block.cast(target)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        for i in range(len(block)):
            try:
                block.slice(i, 1).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                bad.append(start + i)
    return np.asarray(bad, dtype=np.int64)


def _conform_column(col: pa.Array, target: pa.Field, file: str, report: _Report) -> pa.Array | None:
    if not col.type.equals(target.type):
        try:
            col = col.cast(target.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            bad = _uncastable_rows(col, target.type)
            if len(bad) == 0:  # the type itself has no cast (e.g. a struct for an int)
                report.add(file, None, target.name, f"type {col.type} cannot be read as {target.type}")
            report.add_rows(
                file, bad, target.name, lambda r: f"value {col[r].as_py()!r} is not a valid {target.type}"
            )
            return None
    if not target.nullable and col.null_count:
        rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
        report.add_rows(file, rows, target.name, lambda _: "null in a non-nullable field")
        return None
    return col


def _read_part(name: str, path: Path, file: str, report: _Report) -> pa.Table | None:
    """Read one landing file and conform it to its table's schema, reporting what does not fit."""
    try:
        raw = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        report.add(file, None, None, f"not a readable Parquet file ({exc})")
        return None
    schema = LANDING_SCHEMAS[name]
    missing = [f.name for f in schema if f.name not in raw.column_names]
    extra = [c for c in raw.column_names if c not in schema.names]
    for col in missing:
        report.add(file, None, col, f"missing column (the {name} contract has {schema.names})")
    for col in extra:
        # Also what keeps sensitive attributes out of raw tables: they belong in audit_attributes only.
        report.add(file, None, col, f"unexpected column (not in the {name} contract)")
    if missing or extra:
        return None
    columns = [_conform_column(raw.column(f.name).combine_chunks(), f, file, report) for f in schema]
    if any(c is None for c in columns):
        return None
    return pa.Table.from_arrays(columns, schema=schema)


def _rows_where(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))


def _check_labels(table: pa.Table, file: str, report: _Report) -> None:
    for label in LABELS:
        col = table.column(label)
        bad = _rows_where(pc.invert(pc.is_in(col, value_set=pa.array([0, 1], type=col.type))))
        report.add_rows(file, bad, label, lambda r, c=col: f"label value {c[r].as_py()} not in {{0, 1}}")
    both = pc.and_(pc.equal(table.column("skip"), 1), pc.equal(table.column("long_dwell"), 1))
    report.add_rows(file, _rows_where(both), "skip", lambda _: "skip and long_dwell are both 1")


def _check_values(name: str, table: pa.Table, file: str, now_us: int, report: _Report) -> None:
    """Value rules that need only the file itself."""
    if name == "raw_impressions":
        _check_labels(table, file, report)
    for col_name in NON_NEGATIVE:
        if col_name in table.column_names:
            col = table.column(col_name)
            report.add_rows(
                file,
                _rows_where(pc.less(col, 0)),
                col_name,
                lambda r, c=col: f"negative value {c[r].as_py()}",
            )
    for (table_name, col_name), allowed in ALLOWED_VALUES.items():
        if table_name == name:
            col = table.column(col_name)
            bad = _rows_where(pc.invert(pc.is_in(col, value_set=pa.array(allowed))))
            report.add_rows(
                file, bad, col_name, lambda r, c=col, a=allowed: f"value {c[r].as_py()!r} not in {list(a)}"
            )
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            col = table.column(f.name)
            future = _rows_where(pc.greater(col.cast(pa.int64()), now_us))
            report.add_rows(
                file, future, f.name, lambda r, c=col: f"timestamp {c[r].as_py()} is in the future"
            )


# --- cross-file checks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Landed:
    """One table's landing files, conformed: concatenated rows plus where each file starts."""

    name: str
    files: list[str]
    table: pa.Table
    starts: np.ndarray  # first global row of each file, plus the total at the end

    def report_rows(
        self, rows: np.ndarray, field_name: str, describe: Callable[[int], str], report: _Report
    ) -> None:
        """Report global ``rows`` against the file and local row they came from."""
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for i, file in enumerate(self.files):
            local = rows[which == i]
            report.add_rows(
                file, local - self.starts[i], field_name, lambda r, s=self.starts[i]: describe(r + s)
            )


def _key_frame(table: pa.Table, columns: tuple[str, ...]) -> pd.DataFrame:
    return table.select(list(columns)).to_pandas()


def _check_keys(landed: _Landed, lake_table: Path, report: _Report) -> None:
    """Primary keys unique within the landing files and new to the lake."""
    keys = LANDING_KEYS[landed.name]
    frame = _key_frame(landed.table, keys)

    def label(row: int) -> str:
        values = frame.iloc[[row]].to_dict("records")[0]
        return ", ".join(f"{k}={v!r}" for k, v in values.items())

    dup = np.flatnonzero(frame.duplicated(keep="first").to_numpy())
    landed.report_rows(dup, keys[0], lambda r: f"duplicate key ({label(r)}) in the landing data", report)
    if not delta_io.exists(lake_table):
        return
    lake = delta_io.read(lake_table, columns=list(keys)).to_pandas()
    if len(keys) == 1:
        seen = frame[keys[0]].isin(lake[keys[0]]).to_numpy()
    else:
        seen = pd.MultiIndex.from_frame(frame).isin(pd.MultiIndex.from_frame(lake))
    landed.report_rows(
        np.flatnonzero(seen),
        keys[0],
        lambda r: f"key ({label(r)}) is already in the lake table",
        report,
    )


def _known_ids(target: str, landed: Mapping[str, _Landed], paths: FeedPaths) -> np.ndarray:
    col = ID_COLUMNS[target]
    parts = [landed[target].table.column(col).to_numpy()] if target in landed else []
    if delta_io.exists(paths.table(target)):
        parts.append(delta_io.read(paths.table(target), columns=[col]).column(col).to_numpy())
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def _check_references(landed: Mapping[str, _Landed], paths: FeedPaths, report: _Report) -> None:
    known = {t: _known_ids(t, landed, paths) for t in ID_COLUMNS}
    for (name, col), target in REFERENCES.items():
        if name not in landed:
            continue
        values = landed[name].table.column(col).to_numpy()
        unknown = np.flatnonzero(~np.isin(values, known[target]))
        landed[name].report_rows(
            unknown,
            col,
            lambda r, v=values, t=target, c=col: f"{c} {v[r]} is not in {t} (landing or lake)",
            report,
        )


def _post_created(landed: Mapping[str, _Landed], paths: FeedPaths) -> tuple[np.ndarray, np.ndarray]:
    """(sorted post ids, their created_at in µs) over the landing posts and the lake."""
    tables = [landed["raw_posts"].table] if "raw_posts" in landed else []
    if delta_io.exists(paths.table("raw_posts")):
        tables.append(delta_io.read(paths.table("raw_posts"), columns=["post_id", "created_at"]))
    if not tables:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    ids = np.concatenate([t.column("post_id").to_numpy() for t in tables])
    created = np.concatenate([t.column("created_at").cast(pa.int64()).to_numpy() for t in tables])
    order = np.argsort(ids, kind="stable")
    return ids[order], created[order]


def _check_impression_times(landed: Mapping[str, _Landed], paths: FeedPaths, report: _Report) -> None:
    """An impression cannot happen before its post exists (it would leak the future into features)."""
    if "raw_impressions" not in landed:
        return
    ids, created = _post_created(landed, paths)
    imp = landed["raw_impressions"].table
    post = imp.column("post_id").to_numpy()
    at = imp.column("event_timestamp").cast(pa.int64()).to_numpy()
    j = np.clip(np.searchsorted(ids, post), 0, max(len(ids) - 1, 0))
    found = (ids[j] == post) if len(ids) else np.zeros(len(post), dtype=bool)
    early = np.flatnonzero(found & (at < created[j]))
    landed["raw_impressions"].report_rows(
        early,
        "event_timestamp",
        lambda r: f"impression of post {post[r]} before the post was created",
        report,
    )


# --- entry points ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    rows: dict[str, int]  # rows committed per table
    versions: dict[str, int]  # Delta version of each table after the commit
    seconds: float


def _now_us(now: datetime | None) -> int:
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp() * 1_000_000)


def _load_tables(
    src: Path, files: Mapping[str, list[Path]], now_us: int, report: _Report
) -> dict[str, _Landed]:
    landed = {}
    for name, paths_ in files.items():
        names, tables = [], []
        for path in paths_:
            rel = str(path.relative_to(src))
            table = _read_part(name, path, rel, report)
            if table is not None:
                _check_values(name, table, rel, now_us, report)
                names.append(rel)
                tables.append(table)
        if len(tables) == len(paths_):
            starts = np.cumsum([0] + [t.num_rows for t in tables])
            combined = pa.concat_tables(tables) if tables else LANDING_SCHEMAS[name].empty_table()
            landed[name] = _Landed(name, names, combined, starts)
    return landed


def validate_landing(src: Path, paths: FeedPaths, *, now: datetime | None = None) -> dict[str, pa.Table]:
    """Validate every file of the landing folder ``src`` against the contract and the lake at ``paths``;
    return the conformed tables, or raise :class:`RawDataError` listing every problem found."""
    src = Path(src)
    if not src.is_dir():
        raise RawDataError(src, [Problem(str(src), None, None, "landing folder does not exist")])
    report = _Report()
    files, layout = landing_files(src)
    for message in layout:
        report.add(message.split(":", 1)[0], None, None, message.split(": ", 1)[1])
    for name in RAW_SCHEMAS:
        if name not in files and not delta_io.exists(paths.table(name)):
            report.add(f"{name}.parquet", None, None, "missing (required: the lake has no such table yet)")
    landed = _load_tables(src, files, _now_us(now), report)
    if not report.problems:  # cross-file rules only make sense over files that conform
        for item in landed.values():
            _check_keys(item, paths.table(item.name), report)
        _check_references(landed, paths, report)
        _check_impression_times(landed, paths, report)
    if report.problems:
        raise RawDataError(src, report.problems)
    return {name: item.table for name, item in landed.items()}


def _rollback(paths: FeedPaths, done: list[str], before: Mapping[str, int | None]) -> None:
    for name in reversed(done):
        path = paths.table(name)
        if before[name] is None:
            shutil.rmtree(path, ignore_errors=True)
        else:
            delta_io.restore(path, before[name])
        log.warning("rolled back %s to version %s", name, before[name])


def commit_tables(paths: FeedPaths, tables: Mapping[str, pa.Table]) -> dict[str, int]:
    """Append validated tables to the lake, all or nothing: on a failure the earlier commits are undone."""
    before = {name: delta_io.version(paths.table(name)) for name in tables}
    versions: dict[str, int] = {}
    done: list[str] = []
    try:
        for name in COMMIT_ORDER:
            if name not in tables or (tables[name].num_rows == 0 and before[name] is not None):
                continue
            versions[name] = delta_io.write(paths.table(name), tables[name], schema=LANDING_SCHEMAS[name])
            done.append(name)
    except BaseException:
        _rollback(paths, done, before)
        raise
    return versions


def ingest(paths: FeedPaths, src: Path, *, now: datetime | None = None) -> IngestResult:
    """Validate the landing folder ``src`` (timestamps after ``now`` are errors; default: the current time),
    then commit every table to the lake. Raises :class:`RawDataError` before committing anything."""
    began = time.perf_counter()
    tables = validate_landing(src, paths, now=now)
    versions = commit_tables(paths, tables)
    rows = {name: tables[name].num_rows for name in versions}
    log.info("ingested %s from %s", rows, src)
    return IngestResult(rows, versions, round(time.perf_counter() - began, 2))
