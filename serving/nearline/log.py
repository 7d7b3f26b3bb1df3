"""Delta tables as logs: read what each commit appended, and commit output together with the input offset.

A consumer's offset is the last input table version it has fully processed. The prompt and embed workers
commit their output rows and that offset in ONE Delta commit, as an idempotent-writer app transaction
(``txn`` action: ``appId`` + ``version``), read back with ``DeltaTable.transaction_version(app_id)``: either
both land or neither does. The same mechanism is Spark Structured Streaming's idempotent Delta sink
(``txnAppId`` / ``txnVersion``).

New rows are read commit by commit from ``_delta_log/<version>.json`` (the ``add`` actions of that version),
so each row is known with the version it arrived in and a consumer never rescans the table. The tables are
append-only by contract: a commit that removes data (``remove`` with ``dataChange``) is an error here, and so
is an input commit that was already cleaned from the log (log retention must exceed the longest consumer
outage; the default is 30 days).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from pipelines import delta_io
from pipelines.erase import resolve_rewritten

LOG_DIR = "_delta_log"


class NearlineLogError(RuntimeError):
    """A nearline table broke the append-only log contract (data removed, commit file missing)."""


@dataclass(frozen=True)
class Commit:
    """The rows one input commit appended."""

    version: int
    committed_at: dt.datetime  # the commit's own timestamp (commitInfo), UTC
    rows: pa.Table


def head_version(path: Path) -> int | None:
    """The newest committed version of a local Delta table, None when there is no table. Lists the log folder
    (cheap) instead of loading the table's snapshot."""
    log = Path(path) / LOG_DIR
    if not log.is_dir():
        return None
    versions = [int(p.name[:20]) for p in log.iterdir() if p.name.endswith(".json") and p.name[:20].isdigit()]
    return max(versions) if versions else None


def committed_offset(path: Path, app_id: str) -> int:
    """The last input version ``app_id`` committed into the output table at ``path``; -1 when none."""
    if not delta_io.exists(path):
        return -1
    version = DeltaTable(str(path)).transaction_version(app_id)
    return -1 if version is None else int(version)


def _commit_actions(path: Path, version: int) -> list[dict]:
    file = Path(path) / LOG_DIR / f"{version:020d}.json"
    try:
        text = file.read_text()
    except FileNotFoundError as exc:
        raise NearlineLogError(
            f"{file} is missing: commit {version} of {path} was cleaned from the log before this consumer "
            "read "
            "it; rebuild the consumer's output from the table (offset reset) or raise logRetentionDuration"
        ) from exc
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_commit(path: Path, version: int, schema: pa.Schema) -> Commit:
    """The rows commit ``version`` appended to the table at ``path``, conformed to ``schema``."""
    actions = _commit_actions(path, version)
    files: list[str] = []
    committed_ms: int | None = None
    for action in actions:
        if "add" in action and action["add"].get("dataChange", True):
            files.append(unquote(action["add"]["path"]))
        elif "remove" in action and action["remove"].get("dataChange", True):
            raise NearlineLogError(
                f"commit {version} of {path} removes data: nearline tables are append-only logs"
            )
        elif "commitInfo" in action:
            committed_ms = action["commitInfo"].get("timestamp")
    # an erasure (pipelines/erase.py) may have rewritten a file without the erased rows and vacuumed it
    files = resolve_rewritten(path, files)
    parts = [delta_io.conform(pq.read_table(Path(path) / f), schema, name=f"{path}@{version}") for f in files]
    rows = pa.concat_tables(parts) if parts else schema.empty_table()
    when = dt.datetime.fromtimestamp(committed_ms / 1000, dt.UTC) if committed_ms else dt.datetime.now(dt.UTC)
    return Commit(version=version, committed_at=when, rows=rows)


def read_commits(
    path: Path, schema: pa.Schema, after: int, *, max_versions: int, max_rows: int | None = None
) -> list[Commit]:
    """Commits ``after + 1 …`` of the table, at most ``max_versions`` of them and (after the first) stopping
    before ``max_rows`` would be exceeded: a consumer's next batch, whole commits only."""
    head = head_version(path)
    if head is None or head <= after:
        return []
    out: list[Commit] = []
    rows = 0
    for version in range(after + 1, min(head, after + max_versions) + 1):
        commit = read_commit(path, version, schema)
        if out and max_rows is not None and rows + commit.rows.num_rows > max_rows:
            break
        out.append(commit)
        rows += commit.rows.num_rows
    return out


def commit_with_offset(path: Path, rows: pa.Table, schema: pa.Schema, app_id: str, offset: int) -> int:
    """Append ``rows`` (possibly none) and record ``offset`` for ``app_id`` in the same Delta commit; returns
    the new table version."""
    # One chunk: delta-rs writes separate record batches concurrently and may store them out of order, and
    # consumers rely on row order within a commit (the newest row of a key comes last).
    data = delta_io.conform(rows, schema, name=str(path)).combine_chunks()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_deltalake(
        str(path),
        data,
        mode="append",
        commit_properties=CommitProperties(app_transactions=[Transaction(app_id=app_id, version=offset)]),
    )
    return DeltaTable(str(path)).version()


def append(path: Path, rows: pa.Table, schema: pa.Schema) -> int:
    """Append ``rows`` as one commit (the publish API), in their order; returns the new version."""
    return delta_io.write(
        path, delta_io.conform(rows, schema, name=str(path)).combine_chunks(), mode="append"
    )


def read_all(path: Path, schema: pa.Schema, *, columns: list[str] | None = None) -> pa.Table:
    """The whole table (status, tests); empty with ``schema`` when there is no table."""
    if not delta_io.exists(path):
        table = schema.empty_table()
        return table.select(columns) if columns else table
    return delta_io.read(path, columns=columns)
