"""Erasure: ``feed erase member|post ID`` removes one entity's data from every store of a home and proves it.

What "the entity's data" is (docs/erasure.md has the reasoning):

* a **member**: every row whose ``member_id`` or ``author_id`` is the member (profile, impressions, follows in
  both directions, profile updates, audit attributes, truth, feature rows, embeddings, nearline rows), and the
  posts the member authored, which cascade as post erasures;
* a **post**: every row whose ``post_id`` is the post (the post, its impressions, truth, features, embeddings,
  nearline rows) and the member prompts in the nearline log that quote it in a history item;
* id lists inside other members' rows (``member_history.engaged_post_ids``, ``member_sequence.post_ids`` and
  its parallel lists, ``member_affinity.top_author_ids`` and its scores) are rewritten without the id — the
  rest of the row is the other member's data, not the erased entity's. An id list without a rule here makes
  its rows be deleted instead (nothing is left behind because a column was not foreseen).

Stores, in the order an erasure runs: Milvus (every ``posts_*`` collection; on Milvus Lite the collection is
rebuilt without the rows, because Lite keeps deleted rows in its data files until a compaction that a lone
segment never triggers), the Feast online store (SQLite rows deleted and the file VACUUMed; Redis keys
deleted), every Delta table of the lake (one rewrite commit per table, then VACUUM with the configured
retention; the nearline logs get a rewrite that consumers skip, see :func:`resolve_rewritten`), the loose
Parquet copies (landing batches, staging, quarantine, the Spark variant's Feast exports), the training sets
(a set holding the id is deleted: it is derived and rebuilt by the next training run), and saved HNSW replica
snapshots (rebuilt without the posts). Then everything is scanned again (:func:`verify`) and a receipt is
written to ``data/erasure/``.

Safety: an id found nowhere (and never erased before) is refused (:class:`UnknownIdError`); ``dry_run``
reports what would be removed and changes nothing; every step is idempotent, so a run that failed halfway is
finished by running it again, and a run over an already erased id changes nothing.

Heavy dependencies (Feast, pymilvus, FAISS) are imported inside the steps that need them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import delta_io

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from feed.config import FeedPaths

log = logging.getLogger(__name__)

Kind = Literal["member", "post"]
KINDS: tuple[str, ...] = ("member", "post")

RECEIPTS_DIR = "erasure"  # data/erasure/<kind>-<id>-<UTC time>.json
ERASURE_METADATA_KEY = (
    "feed.erasure"  # commitInfo key of an erasure rewrite commit: {"rewrites": {old: [new]}}
)
DEFAULT_RETENTION_HOURS = 0
# The nearline tables are append-only logs read commit by commit (serving/nearline/log.py): their erasure
# rewrite is committed with dataChange=false, so consumers skip it instead of failing on a removal.
LOG_TABLES: frozenset[str] = frozenset(
    {"nearline_events", "nearline_prompts", "nearline_embeddings", "nearline_indexed"}
)
PROMPTS_TABLE = "nearline_prompts"
# Row kinds of the nearline tables' (kind, entity_id) pair.
MEMBER_ROW_KINDS: frozenset[str] = frozenset({"member"})
POST_ROW_KINDS: frozenset[str] = frozenset({"post", "stats"})
# Loose Parquet copies outside the lake, scrubbed in place (relative to data/).
LOOSE_ROOTS: tuple[str, ...] = ("landing", "staging", "quarantine", "feast/parquet")
TRAINING_ROOT = "training"  # data/training/<model>/<set>/ — a set holding the id is deleted
# Folders under data/ the final on-disk scan skips: receipts name the id by design; Delta logs hold no rows.
SCAN_SKIP: frozenset[str] = frozenset({RECEIPTS_DIR, "_delta_log", "milvus_server"})
SNAPSHOT_FILES = ("state.json", "slots.npz", "hnsw.faiss")  # serving/index/replica.py save()


class EraseError(RuntimeError):
    """An erasure cannot run as asked."""


class EraseInputError(EraseError, ValueError):
    """A bad kind, id or option (nothing was looked at or changed)."""


class UnknownIdError(EraseError):
    """The id is found in no store and was never erased: refused (a typo must not look like a success)."""


# --- what to remove ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayRule:
    """An id list inside rows that belong to someone else: the id is cut out of ``column``, the same
    positions out of the ``aligned`` lists, and ``count`` (an uncapped length) is lowered by the items cut."""

    table: str  # Delta table = Feast feature view name
    column: str
    aligned: tuple[str, ...] = ()
    count: str | None = None


ARRAY_RULES: tuple[ArrayRule, ...] = (
    ArrayRule("member_history", "engaged_post_ids", count="history_length"),
    ArrayRule("member_sequence", "post_ids", aligned=("actions", "timestamps"), count="sequence_length"),
    ArrayRule("member_affinity", "top_author_ids", aligned=("top_author_scores",)),
)


def column_kind(name: str) -> Kind | None:
    """Which entity an integer (or integer-list) column identifies, by its name: ``*post_id*`` → post,
    ``*member_id*`` / ``*author_id*`` → member (authors are members). ``entity_id`` needs its ``kind``."""
    lower = name.lower()
    if "post_id" in lower:
        return "post"
    if "member_id" in lower or "author_id" in lower:
        return "member"
    return None


@dataclass(frozen=True)
class Targets:
    """The ids an erasure removes: the subject and what cascades from it."""

    kind: Kind
    subject: int
    member_ids: frozenset[int] = frozenset()
    post_ids: frozenset[int] = frozenset()
    # history-item snippets of the erased posts, as member prompts quote them (never written to a receipt)
    snippets: tuple[str, ...] = ()

    def ids(self, kind: Kind) -> frozenset[int]:
        return self.member_ids if kind == "member" else self.post_ids

    @property
    def empty(self) -> bool:
        return not self.member_ids and not self.post_ids


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _is_int_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type)


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _isin(col: pa.Array | pa.ChunkedArray, ids: Iterable[int]) -> np.ndarray:
    values = pa.array(sorted(ids), pa.int64())
    arr = _array(col)
    if not pa.types.is_int64(arr.type):
        arr = arr.cast(pa.int64())
    return pc.fill_null(pc.is_in(arr, value_set=values), False).to_numpy(zero_copy_only=False)


def _list_hits(
    col: pa.Array | pa.ChunkedArray, ids: Iterable[int]
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(the list array, parent row of each flattened value, whether that value is one of ``ids``)."""
    arr = _array(col)
    flat = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    hit = _isin(flat, ids) if len(flat) else np.zeros(0, dtype=bool)
    return arr, parents, hit


def _lengths(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _rebuild_list(arr: pa.Array, keep: np.ndarray) -> pa.Array:
    """``arr`` with the flattened values where ``keep`` is False removed (row nulls kept)."""
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    counts = np.bincount(parents[keep], minlength=len(arr))
    large = pa.types.is_large_list(arr.type)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int64() if large else pa.int32())
    values = pc.list_flatten(arr).filter(pa.array(keep))
    cls = pa.LargeListArray if large else pa.ListArray
    mask = arr.is_null() if arr.null_count else None
    return cls.from_arrays(offsets, values, type=arr.type, mask=mask)


@dataclass
class Scrubbed:
    """The result of :func:`scrub` on one table or file."""

    table: pa.Table
    deleted: int = 0  # rows removed
    rewritten: int = 0  # rows kept with an id cut out of a list
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.deleted or self.rewritten)


def scrub(table: pa.Table, name: str, targets: Targets) -> Scrubbed:
    """``table`` (rows of the Delta table / file kind ``name``) without the targets' data.

    Rows are deleted when an id column holds a target (scalar ``*member_id*``/``*author_id*``/``*post_id*``,
    a nearline ``(kind, entity_id)`` pair, an id list without an :data:`ARRAY_RULES` rule, or a member prompt
    quoting an erased post); id lists with a rule are rewritten. Row order is kept (the nearline logs rely
    on it). Works on a subset of the columns too (a cheap count for plans): missing columns are skipped."""
    rules = {r.column: r for r in ARRAY_RULES if r.table == name}
    notes: list[str] = []
    drop = np.zeros(table.num_rows, dtype=bool)
    if table.num_rows:
        drop = _id_column_rows(table, name, targets, set(rules), notes)
        drop |= _log_entity_rows(table, targets) | _quoting_rows(table, targets)
    out = table.filter(pa.array(~drop)) if drop.any() else table
    result = Scrubbed(out, deleted=int(drop.sum()), notes=notes)
    for rule in rules.values():
        _apply_array_rule(result, rule, targets, name)
    return result


def _id_column_rows(
    table: pa.Table, name: str, targets: Targets, ruled: set[str], notes: list[str]
) -> np.ndarray:
    """Rows whose scalar id column, or id list without a rule, holds a target."""
    n = table.num_rows
    drop = np.zeros(n, dtype=bool)
    for fld in table.schema:
        kind = column_kind(fld.name)
        ids = targets.ids(kind) if kind else frozenset()
        if not ids:
            continue
        if _is_int(fld.type):
            drop |= _isin(table[fld.name], ids)
        elif _is_int_list(fld.type) and fld.name not in ruled:
            _, parents, hit = _list_hits(table[fld.name], ids)
            rows = np.zeros(n, dtype=bool)
            rows[parents[hit]] = True
            if rows.any():
                notes.append(
                    f"{name}.{fld.name}: no array rule; {int(rows.sum())} row(s) holding an id deleted"
                )
            drop |= rows
    return drop


def _log_entity_rows(table: pa.Table, targets: Targets) -> np.ndarray:
    """Nearline rows whose ``(kind, entity_id)`` names a target."""
    drop = np.zeros(table.num_rows, dtype=bool)
    if not {"kind", "entity_id"} <= set(table.column_names):
        return drop
    kinds = _array(table["kind"])
    for row_kinds, ids in ((MEMBER_ROW_KINDS, targets.member_ids), (POST_ROW_KINDS, targets.post_ids)):
        if ids:
            of_kind = pc.fill_null(pc.is_in(kinds, value_set=pa.array(sorted(row_kinds))), False)
            drop |= of_kind.to_numpy(zero_copy_only=False) & _isin(table["entity_id"], ids)
    return drop


def _quoting_rows(table: pa.Table, targets: Targets) -> np.ndarray:
    """Member prompt rows that quote an erased post in a history item."""
    drop = np.zeros(table.num_rows, dtype=bool)
    if not targets.snippets or not {"kind", "prompt"} <= set(table.column_names):
        return drop
    for snippet in targets.snippets:
        drop |= pc.fill_null(pc.match_substring(table["prompt"], snippet), False).to_numpy(
            zero_copy_only=False
        )
    member_rows = pc.fill_null(pc.equal(table["kind"], "member"), False).to_numpy(zero_copy_only=False)
    return drop & member_rows


def _apply_array_rule(result: Scrubbed, rule: ArrayRule, targets: Targets, name: str) -> None:
    table = result.table
    kind = column_kind(rule.column)
    ids = targets.ids(kind) if kind else frozenset()
    if rule.column not in table.column_names or not ids or not table.num_rows:
        return
    if not _is_int_list(table.schema.field(rule.column).type):
        return
    arr, parents, hit = _list_hits(table[rule.column], ids)
    if not hit.any():
        return
    n = table.num_rows
    affected = np.zeros(n, dtype=bool)
    affected[parents[hit]] = True
    lengths = _lengths(arr)
    starts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    bad_rows = np.zeros(n, dtype=bool)  # an aligned list of another length: cut positions are unknown
    new_cols: dict[str, pa.Array] = {rule.column: _rebuild_list(arr, ~hit)}
    for name_a in rule.aligned:
        if name_a not in table.column_names:
            continue
        a_arr = _array(table[name_a])
        a_lengths = _lengths(a_arr)
        bad_rows |= affected & (a_lengths != lengths)
        a_parents = pc.list_parent_indices(a_arr).to_numpy(zero_copy_only=False).astype(np.int64)
        a_starts = np.concatenate([[0], np.cumsum(a_lengths)])[:-1]
        pos = np.arange(len(a_parents)) - a_starts[a_parents]  # index within its row
        same = (a_lengths == lengths)[a_parents] & (pos < lengths[a_parents])
        key_index = np.where(same, starts[a_parents] + pos, 0)
        a_keep = ~(same & hit[key_index]) if len(hit) else np.ones(len(a_parents), dtype=bool)
        new_cols[name_a] = _rebuild_list(a_arr, a_keep)
    if rule.count and rule.count in table.column_names:
        removed = np.bincount(parents[hit], minlength=n)
        count = _array(table[rule.count])
        values = pc.fill_null(count, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        lowered = np.maximum(values - removed, 0)
        new_cols[rule.count] = pa.array(
            lowered, count.type, mask=count.is_null().to_numpy(zero_copy_only=False)
        )
    for col_name, col in new_cols.items():
        table = table.set_column(table.column_names.index(col_name), col_name, col)
    if bad_rows.any():
        table = table.filter(pa.array(~bad_rows))
        result.notes.append(
            f"{name}.{rule.column}: {int(bad_rows.sum())} row(s) with parallel lists of other lengths deleted"
        )
        result.deleted += int(bad_rows.sum())
    result.rewritten += int((affected & ~bad_rows).sum())
    result.table = table


def _relevant_columns(schema: pa.Schema, name: str, targets: Targets) -> list[str]:
    """The columns :func:`scrub` looks at (a cheap scan reads only these)."""
    cols = [f.name for f in schema if column_kind(f.name) and (_is_int(f.type) or _is_int_list(f.type))]
    names = set(schema.names)
    if {"kind", "entity_id"} <= names:
        cols += ["kind", "entity_id"]
        if targets.snippets and "prompt" in names:
            cols.append("prompt")
    return list(dict.fromkeys(cols))


def count_hits(table: pa.Table, name: str, targets: Targets) -> int:
    """Rows of ``table`` an erasure of ``targets`` would delete or rewrite."""
    done = scrub(table, name, targets)
    return done.deleted + done.rewritten


# --- step results and the receipt ----------------------------------------------------------------------


@dataclass
class Step:
    """What one step did (or, in a plan, would do) to one target."""

    store: str  # delta | vacuum | loose | training | feast_online | milvus | replica
    target: str  # table, file, collection, folder
    deleted: int = 0  # rows / keys / vectors removed
    rewritten: int = 0  # rows kept with an id cut out
    files: int = 0  # data files rewritten, vacuumed, or deleted
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def touched(self) -> bool:
        return bool(self.deleted or self.rewritten or self.files)


@dataclass(frozen=True)
class EraseOptions:
    """How an erasure runs. ``retention_hours`` is the VACUUM retention: 0 (the default) deletes the files the
    erasure removed at once — erasure requires the old files gone, so time travel to before it is lost."""

    dry_run: bool = False
    retention_hours: int = DEFAULT_RETENTION_HOURS
    feast_variant: str = "local"
    redis_connection: str | None = None
    milvus_uri: str | None = None  # None: this home's Milvus Lite server (started for the erasure if needed)
    milvus_token: str = ""
    start_milvus: bool = True
    replica_snapshots: tuple[Path, ...] = ()  # saved HnswReplica folders outside data/ and artifacts/
    verify: bool = True

    def __post_init__(self) -> None:
        if self.retention_hours < 0:
            raise EraseInputError(f"retention_hours must be >= 0, got {self.retention_hours}")


@dataclass
class Result:
    """An erasure's outcome (also the receipt's content)."""

    kind: Kind
    id: int
    status: str  # complete | pending_vacuum | partial | noop | dry_run
    started_at: str
    finished_at: str
    options: dict[str, Any]
    cascade: dict[str, list[int]]
    steps: list[Step]
    verification: dict[str, Any]
    previous_receipts: list[str]
    receipt: str | None = None  # path of the receipt written (None for dry runs and no-ops)

    @property
    def errors(self) -> list[Step]:
        return [s for s in self.steps if s.error]

    def totals(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for s in self.steps:
            t = out.setdefault(s.store, {"deleted": 0, "rewritten": 0, "files": 0, "targets": 0})
            t["deleted"] += s.deleted
            t["rewritten"] += s.rewritten
            t["files"] += s.files
            t["targets"] += int(s.touched)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "options": self.options,
            "cascade": self.cascade,
            "totals": self.totals(),
            "steps": [asdict(s) for s in self.steps if s.touched or s.error or s.detail],
            "verification": self.verification,
            "previous_receipts": self.previous_receipts,
            "not_covered": NOT_COVERED,
        }


NOT_COVERED: list[str] = [
    "trained model weights (retrain to forget; the GR's hashed-id rows are shared by many ids)",
    "aggregates of other entities (engagement and follower counts) until the next feature build",
    "other members' embeddings computed from histories that held an erased post, until they are re-embedded",
    "in-memory caches of running services (candidate features, popular fallback) until their TTL or restart",
    "min/max statistics of removed files in old Delta commit files, until the log retention expires them",
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="seconds")


def receipts_dir(paths: FeedPaths) -> Path:
    return paths.data / RECEIPTS_DIR


def previous_receipts(paths: FeedPaths, kind: Kind, entity_id: int) -> list[Path]:
    """Receipts of earlier erasures of this entity, oldest first."""
    folder = receipts_dir(paths)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{kind}-{entity_id}-*.json"))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    os.replace(tmp, path)


# --- Delta tables --------------------------------------------------------------------------------------


def lake_tables(paths: FeedPaths) -> list[str]:
    """Every Delta table under the lake (any folder with a ``_delta_log``), sorted."""
    if not paths.lake.is_dir():
        return []
    return sorted(p.parent.name for p in paths.lake.glob("*/_delta_log") if p.is_dir())


@dataclass(frozen=True)
class _DataFile:
    rel: str  # path relative to the table, as the log has it (unquoted)
    size: int
    partition_values: dict[str, str | None]


def _data_files(path: Path) -> list[_DataFile]:
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).to_pydict()
    parts = [c for c in actions if c.startswith("partition.")]
    out = []
    for i, rel in enumerate(actions.get("path", [])):
        values = {c.removeprefix("partition."): _partition_text(actions[c][i]) for c in parts}
        out.append(_DataFile(unquote(rel), int(actions["size_bytes"][i]), values))
    return out


def _partition_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _table_schema(path: Path) -> pa.Schema:
    from deltalake import DeltaTable

    return pa.schema(DeltaTable(str(path)).schema().to_arrow())


def _read_file(file: Path, columns: Sequence[str] | None = None) -> pa.Table:
    if columns is not None:
        present = set(pq.read_schema(file).names)
        columns = [c for c in columns if c in present]
    return pq.read_table(file, columns=columns)


def scrub_delta_table(
    paths: FeedPaths, name: str, targets: Targets, *, apply: bool, erasure_id: str = ""
) -> Step:
    """Rewrite every data file of table ``name`` that holds the targets (one commit); in a plan, count.

    Lake tables commit a real delete (``dataChange=true``). The nearline logs commit the same rewrite with
    ``dataChange=false`` — what a compaction looks like to a log consumer, so the consumers skip it instead
    of refusing a removal — and record which file replaced which (``commitInfo["feed.erasure"]``) so a
    consumer replaying an old commit whose file the erasure removed reads the replacement
    (:func:`resolve_rewritten`)."""
    path = paths.table(name)
    step = Step("delta", name)
    if not delta_io.exists(path):
        return step
    cols = _relevant_columns(_table_schema(path), name, targets)
    if not cols:
        return step
    data_change = name not in LOG_TABLES
    actions: list[Any] = []
    rewrites: dict[str, list[str]] = {}
    now_ms = int(time.time() * 1000)
    for f in _data_files(path):
        file = path / f.rel
        if count_hits(_read_file(file, cols), name, targets) == 0:
            continue
        done = scrub(_read_file(file), name, targets)
        step.deleted += done.deleted
        step.rewritten += done.rewritten
        step.files += 1
        step.detail.setdefault("notes", []).extend(done.notes)
        if not apply:
            continue
        from deltalake.transaction import AddAction, RemoveAction

        actions.append(RemoveAction(f.rel, data_change, now_ms, f.size, f.partition_values))
        rewrites[f.rel] = []
        if done.table.num_rows:
            rel_new = str(Path(f.rel).parent / f"part-erase-{erasure_id or 'x'}-{uuid.uuid4().hex}.parquet")
            rel_new = rel_new.removeprefix("./")
            out = path / rel_new
            pq.write_table(done.table, out)
            stats = json.dumps({"numRecords": done.table.num_rows})
            actions.append(
                AddAction(rel_new, out.stat().st_size, f.partition_values, now_ms, data_change, stats)
            )
            rewrites[f.rel] = [rel_new]
    if not step.detail.get("notes"):
        step.detail.pop("notes", None)
    if apply and actions:
        from deltalake import DeltaTable
        from deltalake.transaction import CommitProperties

        dt_ = DeltaTable(str(path))
        meta = {ERASURE_METADATA_KEY: {"erasure": erasure_id, "rewrites": rewrites}}
        dt_.create_write_transaction(
            actions,
            mode="append",
            schema=dt_.schema(),
            partition_by=list(dt_.metadata().partition_columns) or None,
            commit_properties=CommitProperties(custom_metadata=meta),
        )
        step.detail["version"] = DeltaTable(str(path)).version()
        step.detail["data_change"] = data_change
    return step


def _vacuum_candidates(path: Path, retention_hours: int) -> list[Path]:
    """Files VACUUM would delete now that still exist on disk (delta-rs also lists tombstones of files an
    earlier VACUUM already deleted)."""
    from deltalake import DeltaTable

    listed = DeltaTable(str(path)).vacuum(
        retention_hours=retention_hours, dry_run=True, enforce_retention_duration=False, full=True
    )
    out = []
    for item in listed:
        p = Path(unquote(item.removeprefix("file://")))
        p = p if p.is_absolute() else path / p
        if p.is_file():
            out.append(p)
    return out


def _stale_files_with_ids(path: Path, name: str, targets: Targets) -> list[Path]:
    """Data files on disk outside the current snapshot that hold the targets (any age)."""
    current = {str(path / f.rel) for f in _data_files(path)}
    out = []
    for file in sorted(path.rglob("*.parquet")):
        if "_delta_log" in file.parts or str(file) in current:
            continue
        with contextlib.suppress(Exception):  # a half-written orphan: VACUUM removes it either way
            table = _read_file(file, _relevant_columns(pq.read_schema(file), name, targets))
            if count_hits(table, name, targets):
                out.append(file)
    return out


def vacuum_table(
    paths: FeedPaths, name: str, targets: Targets, *, apply: bool, rewritten: bool, retention_hours: int
) -> Step:
    """VACUUM a table the erasure rewrote, or one whose removed files still hold the targets (a rerun after a
    failure, or after an earlier run with a retention). Files younger than the retention stay (reported)."""
    path = paths.table(name)
    step = Step("vacuum", name)
    if not delta_io.exists(path):
        return step
    stale = _stale_files_with_ids(path, name, targets)
    if not rewritten and not stale:
        return step
    if not apply:
        step.files = len(stale)
        return step
    from deltalake import DeltaTable

    retention = int(retention_hours)
    candidates = _vacuum_candidates(path, retention)
    if candidates:
        DeltaTable(str(path)).vacuum(
            retention_hours=retention, dry_run=False, enforce_retention_duration=False, full=True
        )
    step.files = sum(1 for c in candidates if not c.exists())
    left = [p for p in _stale_files_with_ids(path, name, targets) if p.exists()]
    if left:
        step.detail["pending_files"] = [str(p.relative_to(path)) for p in left]
    return step


def rewritten_files(table: Path | str) -> dict[str, list[str]]:
    """``{data file removed by an erasure: the files that replaced it}`` over every erasure commit of the
    Delta table (read from ``commitInfo["feed.erasure"]`` in ``_delta_log``)."""
    out: dict[str, list[str]] = {}
    log_dir = Path(table) / "_delta_log"
    if not log_dir.is_dir():
        return out
    for commit in sorted(log_dir.glob("*.json")):
        for line in commit.read_text().splitlines():
            if ERASURE_METADATA_KEY not in line:
                continue
            info = json.loads(line).get("commitInfo", {}).get(ERASURE_METADATA_KEY)
            if isinstance(info, dict):
                out.update({k: list(v) for k, v in (info.get("rewrites") or {}).items()})
    return out


def resolve_rewritten(table: Path | str, files: Sequence[str]) -> list[str]:
    """``files`` (paths relative to the table, as a commit's ``add`` actions name them) with every file an
    erasure removed replaced by its rewrite (transitively; none when all its rows were erased), order kept.

    For readers that replay old commits of an append-only log (serving/nearline/log.py, the replica's tail):
    after an erasure + VACUUM an old commit's file is gone, and its rewrite holds the same rows minus the
    erased ones. Files that exist are returned as they are, so the common case reads no commit files."""
    table = Path(table)
    if all((table / f).exists() for f in files):
        return list(files)
    rewrites = rewritten_files(table)
    out: list[str] = []

    def expand(f: str, depth: int = 0) -> None:
        if (table / f).exists() or f not in rewrites or depth > 100:
            out.append(f)  # a file missing for another reason: the caller's read fails as before
            return
        for g in rewrites[f]:
            expand(g, depth + 1)

    for f in files:
        expand(f)
    return out


# --- loose Parquet files and training sets ------------------------------------------------------------


def _known_table_names() -> set[str]:
    from feed.config import AUDIT_TABLE, EMBEDDING_TABLES, FEATURE_TABLES, RAW_TABLES, TRUTH_TABLES

    return {*RAW_TABLES, *FEATURE_TABLES, *EMBEDDING_TABLES, *TRUTH_TABLES, AUDIT_TABLE, *LOG_TABLES} | {
        r.table for r in ARRAY_RULES
    }


def _table_name_of(file: Path, root: Path, known: set[str]) -> str:
    """The table a loose file belongs to: its stem or the nearest folder named like a table."""
    if file.stem in known:
        return file.stem
    for part in reversed(file.relative_to(root).parts[:-1]):
        if part in known:
            return part
    return file.stem


def _parquet_files(root: Path) -> Iterator[Path]:
    """Parquet files under ``root``; hidden files and :data:`SCAN_SKIP` folders left out."""
    if not root.is_dir():
        return
    for file in sorted(root.rglob("*.parquet")):
        rel = file.relative_to(root).parts
        if any(p.startswith(".") or p in SCAN_SKIP for p in rel):
            continue
        yield file


def scrub_loose_files(paths: FeedPaths, targets: Targets, *, apply: bool) -> list[Step]:
    """Scrub the Parquet copies outside the lake in place: landing batches (ingested or not — a re-ingest
    must not bring the data back), staging, quarantine and the Spark variant's Feast exports."""
    known = _known_table_names()
    steps = []
    for rel_root in LOOSE_ROOTS:
        root = paths.data / rel_root
        for file in _parquet_files(root):
            name = _table_name_of(file, root, known)
            try:
                cols = _relevant_columns(pq.read_schema(file), name, targets)
                if not cols or count_hits(_read_file(file, cols), name, targets) == 0:
                    continue
                done = scrub(_read_file(file), name, targets)
            except Exception as exc:  # an unreadable file is reported, not skipped silently
                steps.append(
                    Step("loose", str(file.relative_to(paths.data)), error=f"{type(exc).__name__}: {exc}")
                )
                continue
            step = Step("loose", str(file.relative_to(paths.data)), done.deleted, done.rewritten, 1)
            if done.notes:
                step.detail["notes"] = done.notes
            if apply:
                tmp = file.with_name(f".{file.name}.erase-{uuid.uuid4().hex}.tmp")
                pq.write_table(done.table, tmp)
                os.replace(tmp, file)
                crc = file.with_name(f".{file.name}.crc")  # Hadoop's checksum would no longer match
                crc.unlink(missing_ok=True)
            steps.append(step)
    return steps


def training_sets(paths: FeedPaths) -> list[Path]:
    """``data/training/<model>/<set>/`` folders."""
    root = paths.data / TRAINING_ROOT
    if not root.is_dir():
        return []
    return sorted(s for m in root.iterdir() if m.is_dir() for s in m.iterdir() if s.is_dir())


def scrub_training_sets(paths: FeedPaths, targets: Targets, *, apply: bool) -> list[Step]:
    """Delete every training set holding the targets. A set is derived from the lake (rebuilt by the next
    training run from the erased tables); its rows are blocks of parallel lists cut at positions other
    columns point into (``history_end``), so cutting one item out would corrupt it."""
    steps = []
    for folder in training_sets(paths):
        hits = 0
        for file in _parquet_files(folder):
            cols = _relevant_columns(pq.read_schema(file), file.stem, targets)
            if cols:
                hits += count_hits(_read_file(file, cols), file.stem, targets)
        if not hits:
            continue
        step = Step("training", str(folder.relative_to(paths.data)), deleted=hits, files=1)
        step.detail["action"] = "set deleted; rebuilt by the next training run"
        if apply:
            shutil.rmtree(folder)
        steps.append(step)
    return steps


# --- Feast online store --------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name in ("feast", "feast.infra", "feast.repo_config"):
            logger = logging.getLogger(name)
            level = logger.level
            logger.setLevel(logging.ERROR)
            stack.callback(logger.setLevel, level)
        yield


def _feast_store(paths: FeedPaths, options: EraseOptions) -> Any | None:
    """The home's FeatureStore, or None when Feast was never applied here."""
    from pipelines import feature_store

    cfg = feature_store.config_dict(
        paths, feature_store.StoreOptions(options.feast_variant, options.redis_connection)
    )
    if not Path(cfg["registry"]["path"]).exists():
        return None
    with _quiet():
        return feature_store.store(paths, options.feast_variant, redis_connection=options.redis_connection)


def _entity_key(join_key: str, value: int) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=int(value))])


def _list_values(value: Any) -> tuple[str, list[Any]] | None:
    """(oneof field name, items) of a Feast list ValueProto; None for scalars / unset."""
    which = value.WhichOneof("val")
    if which is None or not which.endswith("_list_val"):
        return None
    return which, list(getattr(value, which).val)


def _cut_values(values: dict[str, Any], rule: ArrayRule, ids: frozenset[int]) -> dict[str, Any] | None:
    """Feature name → new ValueProto for one online row, or None when the row does not hold the ids."""
    from feast.protos.feast.types.Value_pb2 import Value

    key = values.get(rule.column)
    parsed = _list_values(key) if key is not None else None
    if parsed is None:
        return None
    _, items = parsed
    keep = [int(v) not in ids for v in items]
    if all(keep):
        return None
    out: dict[str, Any] = {}
    for name in (rule.column, *rule.aligned):
        value = values.get(name)
        p = _list_values(value) if value is not None else None
        if p is None:
            continue
        fname, vals = p
        new = Value()
        kept = [v for v, k in zip(vals, keep, strict=False) if k] if len(vals) == len(keep) else []
        getattr(new, fname).val.extend(kept)
        out[name] = new
    if rule.count and rule.count in values and values[rule.count].WhichOneof("val") == "int64_val":
        out[rule.count] = Value(int64_val=max(0, values[rule.count].int64_val - keep.count(False)))
    return out


def scrub_feast_online(
    paths: FeedPaths, targets: Targets, options: EraseOptions, *, apply: bool
) -> list[Step]:
    """Delete the targets' rows from every feature view's online table, rewrite id lists of other members'
    rows (:data:`ARRAY_RULES`), and VACUUM the SQLite file so the deleted pages leave the disk. Redis: the
    entity keys are deleted and the id lists rewritten (a SCAN over the member keys)."""
    fs = _feast_store(paths, options)
    if fs is None:
        return [Step("feast_online", "(none)", detail={"skipped": "Feast was never applied in this home"})]
    with _quiet():
        views = fs.list_feature_views()
    if "redis" in type(fs.config.online_store).__name__.lower():
        return _scrub_redis(fs, views, targets, apply=apply)
    db = Path(fs.config.online_store.path)
    if not db.exists():
        return [Step("feast_online", "(none)", detail={"skipped": f"no online store file {db}"})]
    steps = []
    conn = sqlite3.connect(db, timeout=30)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for view in views:
            step = _scrub_sqlite_view(conn, fs.config, view, tables, targets, apply=apply)
            if step is not None and step.touched:
                steps.append(step)
        if apply:
            conn.commit()
    finally:
        conn.close()
    if apply and steps:
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        try:
            conn.execute("VACUUM")  # deleted rows stay in free pages of the file until a VACUUM
        except sqlite3.OperationalError as exc:
            steps.append(Step("feast_online", "VACUUM", error=f"{exc} (rows are deleted; rerun to VACUUM)"))
        finally:
            conn.close()
    return steps


def _scrub_sqlite_view(
    conn: sqlite3.Connection, config: Any, view: Any, tables: set[str], targets: Targets, *, apply: bool
) -> Step | None:
    """One view's SQLite table: the targets' entity rows deleted, id lists rewritten."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import compute_table_id

    versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    table = compute_table_id(config.project, view, versioning)
    if table not in tables:
        return None
    step = Step("feast_online", view.name)
    keys = [c.name for c in view.entity_columns]
    kind = column_kind(keys[0]) if len(keys) == 1 else None
    ids = targets.ids(kind) if kind else frozenset()
    quoted = '"' + table.replace('"', '""') + '"'
    if ids:
        version = config.entity_key_serialization_version
        blobs = [serialize_entity_key(_entity_key(keys[0], i), version) for i in sorted(ids)]
        marks = ",".join("?" * len(blobs))
        (step.deleted,) = conn.execute(
            f"SELECT COUNT(DISTINCT entity_key) FROM {quoted} WHERE entity_key IN ({marks})", blobs
        ).fetchone()
        if apply and step.deleted:
            conn.execute(f"DELETE FROM {quoted} WHERE entity_key IN ({marks})", blobs)
    rule = next((r for r in ARRAY_RULES if r.table == view.name), None)
    rule_ids = targets.ids(column_kind(rule.column) or "post") if rule else frozenset()
    if rule and rule_ids:
        step.rewritten = _rewrite_sqlite_lists(conn, quoted, rule, rule_ids, apply=apply)
    return step


def _rewrite_sqlite_lists(
    conn: sqlite3.Connection, quoted: str, rule: ArrayRule, ids: frozenset[int], *, apply: bool
) -> int:
    from feast.protos.feast.types.Value_pb2 import Value

    names = [rule.column, *rule.aligned, *([rule.count] if rule.count else [])]
    marks = ",".join("?" * len(names))
    rows: dict[bytes, dict[str, Any]] = {}
    for key, fname, blob in conn.execute(
        f"SELECT entity_key, feature_name, value FROM {quoted} WHERE feature_name IN ({marks})", names
    ):
        value = Value()
        value.ParseFromString(blob)
        rows.setdefault(key, {})[fname] = value
    changed = 0
    for key, values in rows.items():
        new = _cut_values(values, rule, ids)
        if new is None:
            continue
        changed += 1
        if apply:
            for fname, value in new.items():
                conn.execute(
                    f"UPDATE {quoted} SET value = ? WHERE entity_key = ? AND feature_name = ?",
                    (value.SerializeToString(), key, fname),
                )
    return changed


def _scrub_redis(fs: Any, views: list[Any], targets: Targets, *, apply: bool) -> list[Step]:
    """Redis keeps one hash per entity key holding every view of that entity: deleting the key removes the
    entity from all of them. Id lists are rewritten after a SCAN over the keys of the rule's entity."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    client = RedisOnlineStore()._get_client(fs.config.online_store)
    steps = _delete_redis_entities(client, fs.config, views, targets, apply=apply)
    for view in views:
        rule = next((r for r in ARRAY_RULES if r.table == view.name), None)
        if rule is not None and len(view.entity_columns) == 1:
            step = _rewrite_redis_lists(client, fs.config, view, rule, targets, apply=apply)
            if step.touched:
                steps.append(step)
    return steps


def _delete_redis_entities(
    client: Any, config: Any, views: list[Any], targets: Targets, *, apply: bool
) -> list[Step]:
    from feast.infra.online_stores.helpers import _redis_key

    steps = []
    join_keys = sorted({c.name for v in views for c in v.entity_columns if len(v.entity_columns) == 1})
    for jk in join_keys:
        kind = column_kind(jk)
        step = Step("feast_online", f"redis {jk}")
        for i in sorted(targets.ids(kind) if kind else ()):
            key = _redis_key(config.project, _entity_key(jk, i), config.entity_key_serialization_version)
            if client.exists(key):
                step.deleted += 1
                if apply:
                    client.delete(key)
        if step.touched:
            steps.append(step)
    return steps


def _rewrite_redis_lists(
    client: Any, config: Any, view: Any, rule: ArrayRule, targets: Targets, *, apply: bool
) -> Step:
    from feast.infra.online_stores.helpers import _mmh3, _redis_key_prefix
    from feast.protos.feast.types.Value_pb2 import Value

    step = Step("feast_online", view.name)
    ids = targets.ids(column_kind(rule.column) or "post")
    if not ids:
        return step
    names = [rule.column, *rule.aligned, *([rule.count] if rule.count else [])]
    fields = [_mmh3(f"{view.name}:{n}") for n in names]
    pattern = b"".join(
        [_redis_key_prefix([c.name for c in view.entity_columns]), b"*", config.project.encode()]
    )
    for rkey in client.scan_iter(pattern):
        values = {}
        for n, blob in zip(names, client.hmget(rkey, fields), strict=True):
            if blob is not None:
                values[n] = Value()
                values[n].ParseFromString(blob)
        new = _cut_values(values, rule, ids)
        if new is None:
            continue
        step.rewritten += 1
        if apply:
            client.hset(
                rkey, mapping={_mmh3(f"{view.name}:{n}"): v.SerializeToString() for n, v in new.items()}
            )
    return step


# --- Milvus --------------------------------------------------------------------------------------------


@dataclass
class _Milvus:
    client: MilvusClient
    uri: str
    lite: bool
    local: bool  # this home's Lite server: its data files are under data/milvus (scanned for leftovers)
    started: bool  # the erasure started this home's Lite server (stopped at the end)


def _open_milvus(paths: FeedPaths, options: EraseOptions, *, start: bool) -> _Milvus | None:
    """A client for the configured Milvus, or this home's Lite server; None when this home has no Milvus
    data (nothing to erase there) or, with ``start`` False, when its server is not running."""
    from serving.index import lite
    from serving.index.milvus import connect, is_lite

    started = False
    if options.milvus_uri:
        uri = options.milvus_uri
    else:
        if not lite.data_dir(paths).is_dir():
            return None
        server = lite.running_server(paths)
        if server is None:
            if not start:
                return None
            server = lite.ensure_server(paths)
            started = True
        uri = server.uri
    client = connect(uri, token=options.milvus_token)
    lite_server = is_lite(client)
    return _Milvus(client, uri, lite_server, lite_server and not options.milvus_uri, started)


def _close_milvus(paths: FeedPaths, m: _Milvus | None) -> None:
    if m is None:
        return
    with contextlib.suppress(Exception):
        m.client.close()
    if m.started:
        from serving.index import lite

        lite.stop_server(paths)


def _ids_expr(field_name: str, ids: Iterable[int]) -> str:
    return f"{field_name} in [" + ", ".join(str(int(i)) for i in sorted(ids)) + "]"


def _milvus_expr(targets: Targets) -> str:
    parts = []
    if targets.post_ids:
        parts.append(_ids_expr("post_id", targets.post_ids))
    if targets.member_ids:
        parts.append(_ids_expr("author_id", targets.member_ids))
    return " or ".join(parts)


def _milvus_present(m: _Milvus, name: str, targets: Targets) -> list[int]:
    from serving.index.milvus import MAX_TOPK, _call

    _call("load_collection", m.client.load_collection, name)
    rows = _call(
        "query", m.client.query, name, filter=_milvus_expr(targets), output_fields=["post_id"], limit=MAX_TOPK
    )
    return sorted(int(r["post_id"]) for r in rows)


def milvus_authored_posts(m: _Milvus, member_ids: Iterable[int]) -> set[int]:
    from serving.index.milvus import posts_collections

    ids = set(member_ids)
    if not ids:
        return set()
    out: set[int] = set()
    probe = Targets("member", 0, member_ids=frozenset(ids))
    for name in posts_collections(m.client):
        out.update(_milvus_present(m, name, probe))
    return out


def _lite_collection_dir(paths: FeedPaths, name: str) -> Path:
    from serving.index import lite

    return lite.data_dir(paths) / "collections" / name


def _files_holding(root: Path, targets: Targets) -> list[Path]:
    """Parquet files under ``root`` holding the targets in an id column (any table kind)."""
    out = []
    for file in _parquet_files(root) if root.is_dir() else ():
        with contextlib.suppress(Exception):
            cols = _relevant_columns(pq.read_schema(file), file.stem, targets)
            if cols and count_hits(_read_file(file, cols), file.stem, targets):
                out.append(file)
    return out


def scrub_milvus(paths: FeedPaths, targets: Targets, m: _Milvus | None, *, apply: bool) -> list[Step]:
    """Delete the posts (and, for a member, every post it authored) from every ``posts_*`` collection.

    A Milvus delete is a tombstone: the row stays in the segment files until a compaction rewrites them. On
    a cluster the erasure asks for a compaction and waits for it; Milvus Lite compacts only when a size
    bucket holds four files, so there the collection is rebuilt without the rows (a copy under the next
    ``posts_<version>_r<n>`` name, same index, aliases moved, the old collection dropped — its files go)."""
    if m is None:
        # no server (a dry run does not start one): read Lite's data files on disk instead
        root = paths.data / "milvus" / "collections"
        steps = []
        for coll in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            files = _files_holding(coll, targets)
            if files:
                steps.append(
                    Step("milvus", coll.name, files=len(files), detail={"inspected": "data files on disk"})
                )
        return steps
    from serving.index.milvus import _call, posts_collections

    steps = []
    for name in posts_collections(m.client):
        step = Step("milvus", name)
        present = _milvus_present(m, name, targets)
        physical = _files_holding(_lite_collection_dir(paths, name), targets) if m.local else []
        step.deleted = len(present)
        step.files = len(physical)
        if not apply or not (present or physical):
            if step.touched:
                steps.append(step)
            continue
        if present:
            _call("delete", m.client.delete, name, ids=present)
            _call("flush", m.client.flush, name)
        if m.lite:
            new = _rebuild_lite_collection(
                m.client, name, set(present) | set(targets.post_ids), targets.member_ids
            )
            step.detail["rebuilt_as"] = new
        else:
            step.detail["compaction"] = _compact(m.client, name)
        steps.append(step)
    return steps


def _compact(client: MilvusClient, name: str, timeout_s: float = 600.0) -> str:
    from serving.index.milvus import _call

    job = _call("compact", client.compact, name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = str(_call("get_compaction_state", client.get_compaction_state, job))
        if state.endswith("Completed"):
            return "completed"
        time.sleep(1.0)
    return f"requested (job {job}); not completed after {timeout_s:.0f} s"


def _next_collection_name(client: MilvusClient, model_version: str) -> str:
    """``posts_<version>_r<n>`` with the first n >= 2 no collection has (backfill's naming for a rebuild)."""
    import re

    from serving.index.milvus import COLLECTION_PREFIX, posts_collections

    base = COLLECTION_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", model_version)
    existing = set(posts_collections(client))
    n = 2
    while f"{base}_r{n}" in existing:
        n += 1
    return f"{base}_r{n}"


def _rebuild_lite_collection(
    client: MilvusClient, name: str, drop_posts: set[int], drop_authors: Iterable[int]
) -> str:
    """Copy ``name`` without the posts into a new collection (same index), move its aliases, drop ``name``."""
    from serving.index.milvus import (
        VECTOR_FIELD,
        IndexConfig,
        _call,
        create_posts_collection,
        create_vector_index,
        describe_posts,
    )

    info = describe_posts(client, name)
    index = _call("describe_index", client.describe_index, name, VECTOR_FIELD) or {}
    index_type = str(index.get("index_type") or "HNSW").upper()
    reserved = {"index_type", "metric_type", "field_name", "index_name", "total_rows", "indexed_rows"}
    reserved |= {"pending_index_rows", "state", "fail_reason", "params"}
    params = {k: _param(v) for k, v in index.items() if k not in reserved}
    if isinstance(index.get("params"), dict):
        params.update({k: _param(v) for k, v in index["params"].items() if k != "metric_type"})
    authors = {int(a) for a in drop_authors}
    new = _next_collection_name(client, info["model_version"])
    config = IndexConfig(index_type=index_type, params=params)
    create_posts_collection(client, new, info["model_version"], info["dim"], config)
    fields = ["post_id", "author_id", "created_at", "format", "model_version", VECTOR_FIELD]
    kept = 0
    iterator = client.query_iterator(name, batch_size=1000, filter="", output_fields=fields)
    try:
        while True:
            batch = iterator.next()
            if not batch:
                break
            rows = [
                {f: r[f] for f in fields}
                for r in batch
                if int(r["post_id"]) not in drop_posts and int(r["author_id"]) not in authors
            ]
            if rows:
                _call("insert", client.insert, new, rows)
                kept += len(rows)
    finally:
        iterator.close()
    _call("flush", client.flush, new)
    create_vector_index(client, new, config)
    _call("load_collection", client.load_collection, new)
    stored = int(_call("count", client.query, new, filter="", output_fields=["count(*)"])[0]["count(*)"])
    if stored != kept:
        _call("drop_collection", client.drop_collection, new)
        raise EraseError(f"rebuild of {name}: {kept} rows copied but {stored} stored; {name} left in place")
    for alias in _call("list_aliases", client.list_aliases, name).get("aliases", []):
        _call("alter_alias", client.alter_alias, new, alias)
    _call("release_collection", client.release_collection, name)
    _call("drop_collection", client.drop_collection, name)
    log.info("milvus: %s rebuilt as %s without the erased posts (%d rows)", name, new, kept)
    return new


def _param(value: Any) -> Any:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


# --- HNSW replica snapshots ----------------------------------------------------------------------------


def replica_snapshots(paths: FeedPaths, extra: Sequence[Path] = ()) -> list[Path]:
    """Saved :class:`serving.index.replica.HnswReplica` folders under data/ and artifacts/, plus ``extra``."""
    found = {Path(p) for p in extra}
    for root in (paths.data, paths.artifacts):
        if not root.is_dir():
            continue
        for state in root.rglob(SNAPSHOT_FILES[0]):
            folder = state.parent
            if all((folder / f).is_file() for f in SNAPSHOT_FILES):
                found.add(folder)
    return sorted(found)


def scrub_replica_snapshots(
    paths: FeedPaths, targets: Targets, options: EraseOptions, *, apply: bool
) -> list[Step]:
    """Remove the posts from every saved replica and rebuild its graph: a deleted post is only a tombstone
    in a replica (FAISS HNSW cannot remove), its vector would stay in the saved file."""
    steps = []
    for folder in replica_snapshots(paths, options.replica_snapshots):
        with np.load(folder / "slots.npz") as arrays:
            slot_post, author = arrays["slot_post"], arrays["author"]
        hit = np.zeros(len(slot_post), dtype=bool)
        if targets.post_ids:
            hit |= np.isin(slot_post, np.fromiter(targets.post_ids, np.int64))
        if targets.member_ids:
            hit |= np.isin(author, np.fromiter(targets.member_ids, np.int64))
        if not hit.any():
            continue
        step = Step("replica", str(folder), deleted=int(hit.sum()), files=1)
        if apply:
            from serving.index.replica import HnswReplica

            replica = HnswReplica.load(folder)
            replica.config = replace(replica.config, background_rebuild=False)
            replica.delete(np.unique(slot_post[hit]))
            if replica.tombstones:
                replica.rebuild()  # drops every dead slot's vector
            tmp = folder.with_name(f".{folder.name}.erase-{uuid.uuid4().hex}")
            replica.save(tmp)
            for name in SNAPSHOT_FILES:
                os.replace(tmp / name, folder / name)
            shutil.rmtree(tmp, ignore_errors=True)
            step.detail["live_posts"] = len(replica)
        steps.append(step)
    return steps


# --- who is erased -------------------------------------------------------------------------------------


def _filtered(table: pa.Table, mask: Any) -> pa.Table:
    return table.filter(pc.fill_null(mask, False))


def _authored_in(table: pa.Table, name: str, members: frozenset[int]) -> set[int]:
    """Post ids ``members`` authored, from one table (raw_posts-like, or a nearline log's rows)."""
    names = set(table.column_names)
    ids = pa.array(sorted(members), pa.int64())
    out: set[int] = set()
    if {"post_id", "author_id"} <= names:
        rows = _filtered(table, pc.is_in(table["author_id"].cast(pa.int64()), value_set=ids))
        out.update(int(x) for x in rows["post_id"].to_pylist() if x is not None)
    if {"kind", "entity_id", "author_id"} <= names:
        posts = pc.is_in(table["kind"], value_set=pa.array(sorted(POST_ROW_KINDS)))
        mine = pc.is_in(table["author_id"].cast(pa.int64()), value_set=ids)
        rows = _filtered(table, pc.and_(posts, mine))
        out.update(int(x) for x in rows["entity_id"].to_pylist())
    if name == "nearline_events" and {"kind", "member_id", "post_id"} <= names:
        rows = _filtered(
            table,
            pc.and_(
                pc.equal(table["kind"], "post"), pc.is_in(table["member_id"].cast(pa.int64()), value_set=ids)
            ),
        )
        out.update(int(x) for x in rows["post_id"].to_pylist() if x is not None)
    return out


_POST_TEXT_COLUMNS = ("post_id", "author_id", "entity_id", "kind", "member_id", "text", "article_title")


def _post_sources(paths: FeedPaths) -> Iterator[tuple[str, pa.Table]]:
    """(table kind, rows) of every table or loose file that can say who wrote a post and what it says."""
    known = _known_table_names()
    for name in lake_tables(paths):
        schema = _table_schema(paths.table(name))
        cols = [c for c in _POST_TEXT_COLUMNS if c in schema.names]
        if (
            ("post_id" in cols and "author_id" in cols)
            or {"entity_id", "kind", "author_id"} <= set(cols)
            or (name == "nearline_events" and {"kind", "member_id", "post_id"} <= set(cols))
        ):
            yield name, delta_io.read(paths.table(name), columns=cols)
    for rel_root in LOOSE_ROOTS:
        root = paths.data / rel_root
        for file in _parquet_files(root):
            name = _table_name_of(file, root, known)
            names = set(pq.read_schema(file).names)
            if {"post_id", "author_id"} <= names:
                yield name, _read_file(file, [c for c in _POST_TEXT_COLUMNS if c in names])


def _snippets(sources: list[tuple[str, pa.Table]], post_ids: frozenset[int]) -> tuple[str, ...]:
    """How member prompts quote the posts in a history item (training/prompts/v1.py ``history_item``): the
    cleaned article title, else the text, clipped to HISTORY_TEXT_CHARS. Only snippets long enough to be
    specific (>= 12 characters) are used."""
    from training.prompts.text import ELLIPSIS, clean_text
    from training.prompts.v1 import HISTORY_TEXT_CHARS

    if not post_ids:
        return ()
    ids = pa.array(sorted(post_ids), pa.int64())
    out: set[str] = set()
    for _, table in sources:
        names = set(table.column_names)
        if "text" not in names:
            continue
        key = "post_id" if "post_id" in names else "entity_id" if "entity_id" in names else None
        if key is None:
            continue
        rows = _filtered(table, pc.is_in(table[key].cast(pa.int64()), value_set=ids))
        titles = rows["article_title"].to_pylist() if "article_title" in names else [None] * rows.num_rows
        for text, title in zip(rows["text"].to_pylist(), titles, strict=True):
            source = clean_text(title) or clean_text(text)
            snippet = clean_text(source, max_chars=HISTORY_TEXT_CHARS) if source else None
            if snippet:
                snippet = snippet.removesuffix(ELLIPSIS).rstrip()
                if len(snippet) >= 12:
                    out.add(f": {snippet}")
    return tuple(sorted(out))


def resolve_targets(
    paths: FeedPaths, kind: Kind, entity_id: int, m: _Milvus | None, previous: Sequence[Path] = ()
) -> Targets:
    """The ids an erasure of ``kind`` ``entity_id`` removes: a member and every post it authored (found in
    the lake, the nearline logs, landing batches, Milvus and earlier receipts of this member), or a post."""
    if kind not in KINDS:
        raise EraseInputError(f"kind must be one of {KINDS}, got {kind!r}")
    sources = list(_post_sources(paths))
    if kind == "post":
        posts = frozenset({int(entity_id)})
        return Targets("post", int(entity_id), post_ids=posts, snippets=_snippets(sources, posts))
    members = frozenset({int(entity_id)})
    authored: set[int] = set()
    for name, table in sources:
        authored |= _authored_in(table, name, members)
    if m is not None:
        authored |= milvus_authored_posts(m, members)
    for receipt in previous:
        with contextlib.suppress(OSError, ValueError, TypeError):
            authored.update(int(p) for p in json.loads(receipt.read_text())["cascade"]["post_ids"])
    posts = frozenset(authored)
    return Targets("member", int(entity_id), members, posts, _snippets(sources, posts))


# --- the run -------------------------------------------------------------------------------------------


def _guard(steps: list[Step], store: str, target: str, fn: Callable[[], Step | list[Step]]) -> list[Step]:
    """Run one step; a failure is recorded (store, target, error) and the other steps go on."""
    try:
        done = fn()
    except Exception as exc:
        log.exception("erasure step %s %s failed", store, target)
        done = Step(store, target, error=f"{type(exc).__name__}: {exc}")
    new = done if isinstance(done, list) else [done]
    steps.extend(new)
    return new


def run_steps(
    paths: FeedPaths,
    targets: Targets,
    options: EraseOptions,
    m: _Milvus | None,
    *,
    apply: bool,
    erasure_id: str = "",
) -> list[Step]:
    """Every store in order: serving stores first (the entity stops being served), then the lake, the copies
    and the snapshots, then VACUUM. ``apply`` False = a plan (counts only, nothing written)."""
    steps: list[Step] = []
    _guard(steps, "milvus", "posts_*", lambda: scrub_milvus(paths, targets, m, apply=apply))
    _guard(
        steps,
        "feast_online",
        options.feast_variant,
        lambda: scrub_feast_online(paths, targets, options, apply=apply),
    )
    rewritten: dict[str, bool] = {}
    for name in lake_tables(paths):
        (done,) = _guard(
            steps,
            "delta",
            name,
            lambda n=name: scrub_delta_table(paths, n, targets, apply=apply, erasure_id=erasure_id),
        )
        rewritten[name] = done.touched and done.error is None
    _guard(
        steps, "loose", "landing, staging, quarantine", lambda: scrub_loose_files(paths, targets, apply=apply)
    )
    _guard(steps, "training", "data/training", lambda: scrub_training_sets(paths, targets, apply=apply))
    _guard(
        steps, "replica", "snapshots", lambda: scrub_replica_snapshots(paths, targets, options, apply=apply)
    )
    for name in lake_tables(paths):
        _guard(
            steps,
            "vacuum",
            name,
            lambda n=name: vacuum_table(
                paths,
                n,
                targets,
                apply=apply,
                rewritten=rewritten.get(n, False),
                retention_hours=options.retention_hours,
            ),
        )
    return steps


def verify(paths: FeedPaths, targets: Targets, options: EraseOptions, m: _Milvus | None) -> dict[str, Any]:
    """Look for the targets everywhere again: each Delta table's current version, every Parquet file on disk
    under data/ (old Delta files, landing, staging, training sets, Milvus Lite's segments), the Feast online
    store, Milvus and the replica snapshots. ``clean`` is True when nothing holds them."""
    current = {}
    for name in lake_tables(paths):
        step = scrub_delta_table(paths, name, targets, apply=False)
        if step.touched:
            current[name] = step.deleted + step.rewritten
    files = list(_files_holding(paths.data, targets))
    lake_files, other_files = [], []
    for f in files:
        (lake_files if paths.lake in f.parents else other_files).append(str(f.relative_to(paths.data)))
    feast = {
        s.target: s.deleted + s.rewritten
        for s in scrub_feast_online(paths, targets, options, apply=False)
        if s.touched
    }
    milvus = (
        {s.target: s.deleted for s in scrub_milvus(paths, targets, m, apply=False) if s.deleted} if m else {}
    )
    replica = {s.target: s.deleted for s in scrub_replica_snapshots(paths, targets, options, apply=False)}
    clean = not (current or lake_files or other_files or feast or milvus or replica)
    return {
        "clean": clean,
        "delta_current_rows": current,
        "old_delta_files": lake_files,  # younger than the retention when retention_hours > 0
        "other_files": other_files,
        "feast_online": feast,
        "milvus": milvus if m else "not checked (no Milvus server)",
        "replica_snapshots": replica,
    }


def _check_id(kind: str, entity_id: Any) -> int:
    if kind not in KINDS:
        raise EraseInputError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(entity_id, bool) or not isinstance(entity_id, int | np.integer):
        raise EraseInputError(f"{kind} id must be an integer, got {entity_id!r}")
    return int(entity_id)


def _status(steps: list[Step], verification: dict[str, Any], options: EraseOptions) -> str:
    """complete: nothing holds the ids any more; pending_vacuum: only removed Delta files younger than the
    retention do (a later run finishes); partial: a step failed or something else still holds them."""
    if any(s.error for s in steps):
        return "partial"
    if not options.verify or verification["clean"]:
        return "complete"
    others = ("delta_current_rows", "other_files", "feast_online", "replica_snapshots")
    milvus_left = isinstance(verification["milvus"], dict) and bool(verification["milvus"])
    if options.retention_hours and not milvus_left and not any(verification[k] for k in others):
        return "pending_vacuum"
    return "partial"


def _refuse_empty_plan(
    plan: list[Step], kind: str, entity_id: int, paths: FeedPaths, erased_before: bool
) -> None:
    failed = [s for s in plan if s.error]
    if failed:
        raise EraseError(
            f"cannot tell whether {kind} {entity_id} is held anywhere: "
            + "; ".join(f"{s.store} {s.target}: {s.error}" for s in failed)
        )
    if not erased_before:
        raise UnknownIdError(
            f"{kind} {entity_id} is unknown: no Delta table, file, Feast online row, Milvus vector "
            f"or replica snapshot of {paths.home} holds it, and data/{RECEIPTS_DIR}/ has no receipt "
            "of an earlier erasure. Nothing was changed."
        )


def erase(
    paths: FeedPaths,
    kind: Kind,
    entity_id: int,
    options: EraseOptions | None = None,
    *,
    clock: Callable[[], dt.datetime] = _now,
) -> Result:
    """Erase member or post ``entity_id`` from every store of ``paths`` and write a receipt.

    Raises :class:`UnknownIdError` when nothing holds the id and it was never erased. A dry run returns the
    plan (status ``dry_run``) and changes nothing; a run over an already erased id returns status ``noop``
    without writing anything. Any failed step leaves status ``partial`` (rerun to finish)."""
    options = options or EraseOptions()
    entity_id = _check_id(kind, entity_id)
    started = clock()
    previous = previous_receipts(paths, kind, entity_id)
    opts = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    opts["replica_snapshots"] = [str(p) for p in options.replica_snapshots]
    early: list[Step] = []  # a Milvus that cannot be reached: recorded, the other stores go on
    m: _Milvus | None = None
    try:
        m = _open_milvus(paths, options, start=options.start_milvus and not options.dry_run)
    except Exception as exc:
        early.append(Step("milvus", options.milvus_uri or "lite", error=f"{type(exc).__name__}: {exc}"))
    try:
        targets = resolve_targets(paths, kind, entity_id, m, previous)
        cascade = {"post_ids": sorted(targets.post_ids), "member_ids": sorted(targets.member_ids)}

        def result(
            status: str, steps: list[Step], verification: dict[str, Any], receipt: Path | None
        ) -> Result:
            return Result(
                kind=kind,
                id=entity_id,
                status=status,
                started_at=_iso(started),
                finished_at=_iso(clock()),
                options=opts,
                cascade=cascade,
                steps=steps,
                verification=verification,
                previous_receipts=[str(p.relative_to(paths.data)) for p in previous],
                receipt=str(receipt) if receipt else None,
            )

        plan = early + run_steps(paths, targets, options, m, apply=False)
        if not any(s.touched for s in plan):
            _refuse_empty_plan(plan, kind, entity_id, paths, bool(previous))
            return result("noop", plan, {"clean": True}, None)
        if options.dry_run:
            return result("dry_run", plan, {}, None)
        erasure_id = f"{kind}-{entity_id}-{started.strftime('%Y%m%dT%H%M%S%fZ')}"
        receipt = receipts_dir(paths) / f"{erasure_id}.json"
        _write_json(receipt, result("running", plan, {}, receipt).to_json())  # a crash leaves a trace
        steps = early + run_steps(paths, targets, options, m, apply=True, erasure_id=erasure_id)
        verification = verify(paths, targets, options, m) if options.verify else {"skipped": True}
        done = result(_status(steps, verification, options), steps, verification, receipt)
        _write_json(receipt, done.to_json())
        return done
    finally:
        _close_milvus(paths, m)
