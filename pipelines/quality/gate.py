"""The data-quality gate: nothing reaches a published Delta table without passing its suite.

``gate_and_publish`` conforms a batch to the table's canonical schema, validates it with the table's GX suite
and either commits it (returning the new Delta version) or writes it to ``data/quarantine/<table>/<run_id>/``
(``batch.parquet`` + ``validation.json``) and leaves the published table untouched, so readers — Feast,
training — keep seeing the previous version. Data faults never raise; only programming errors do (an unknown
table, a bad ``mode`` or ``run_id``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.quality.suites import (
    TIMESTAMP,
    GateConfig,
    RowCountBounds,
    SuiteInputs,
    build_suite,
    is_feature_table,
    row_count_bounds,
    suite_name,
    table_schema,
)
from pipelines.quality.validation import schema_failures, summarize, validate_batch
from pipelines.schemas import FEATURE_SCHEMAS

log = logging.getLogger(__name__)

BATCH_FILE = "batch.parquet"
VALIDATION_FILE = "validation.json"
_MODES = ("overwrite", "append")


@dataclass(frozen=True)
class GateResult:
    table: str
    passed: bool
    version: int | None  # Delta version published (None when blocked)
    quarantine_path: Path | None  # where the refused batch went
    summary: str  # readable one-paragraph summary of failed expectations
    failures: list[dict]  # expectation type, column, observed value, unexpected count/sample
    rows: int


@dataclass(frozen=True)
class QuarantinedBatch:
    """A refused batch found under ``paths.quarantine``."""

    table: str
    run_id: str
    path: Path
    rows: int | None
    created_at: str | None
    summary: str
    failures: list[dict]


def gate_and_publish(
    table: str,
    batch: pa.Table,
    *,
    paths: FeedPaths,
    run_id: str,
    predicate: str | None = None,
    expected_snapshots: list[datetime] | None = None,
    now: datetime | None = None,
    mode: str = "overwrite",
    config: GateConfig | None = None,
) -> GateResult:
    """Validate ``batch`` for ``table`` and publish it to ``paths.table(table)`` only if every expectation
    passes. ``predicate`` (with ``mode="overwrite"``) replaces just the matching rows, so re-running a job
    for the same snapshot replaces its output instead of duplicating it. Naive datetimes are taken as UTC."""
    schema = table_schema(table)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    _check_run_id(run_id)
    config = config or GateConfig()
    now = _utc(now) if now is not None else datetime.now(UTC)
    snapshots = [_utc(s) for s in expected_snapshots] if expected_snapshots else None
    path = paths.table(table)

    problems = schema_failures(batch, schema)
    if problems:
        summary = summarize(table, batch.num_rows, problems, evaluated=0)
        result = {"success": False, "suite_name": suite_name(table), "results": [], "statistics": {}}
        return _refuse(table, batch, problems, summary, result, paths=paths, run_id=run_id)

    conformed = delta_io.conform(batch, _nullable(schema), name=table)
    bounds = _row_count_reference(table, path, delta_io.version(path), conformed, config)
    suite = build_suite(table, SuiteInputs(now=now, expected_snapshots=snapshots, row_count=bounds), config)
    validation = validate_batch(table, conformed, suite, config)
    summary = summarize(table, conformed.num_rows, validation.failures, validation.evaluated)
    if not validation.success:
        return _refuse(
            table, batch, validation.failures, summary, validation.result, paths=paths, run_id=run_id
        )

    version = _publish(path, conformed, schema=schema, mode=mode, predicate=predicate)
    log.info("published %s version %d (%d rows, run %s)", table, version, conformed.num_rows, run_id)
    return GateResult(
        table=table,
        passed=True,
        version=version,
        quarantine_path=None,
        summary=f"{summary} Published version {version}.",
        failures=[],
        rows=conformed.num_rows,
    )


def validate_published(
    paths: FeedPaths,
    tables: Sequence[str] | None = None,
    now: datetime | None = None,
    config: GateConfig | None = None,
) -> list[GateResult]:
    """Validate the current version of each published feature table (never writes). Row counts are compared
    with the table's previous version. ``tables=None`` means every feature table that exists; a named table
    that does not exist is reported as failed."""
    config = config or GateConfig()
    now = _utc(now) if now is not None else datetime.now(UTC)
    names = list(tables) if tables else [t for t in FEATURE_SCHEMAS if delta_io.exists(paths.table(t))]
    results = []
    for table in names:
        schema = table_schema(table)
        path = paths.table(table)
        current = delta_io.version(path)
        if current is None:
            failure = {
                "expectation_type": "table_exists",
                "check": "published",
                "column": None,
                "message": f"no Delta table at {path}",
            }
            results.append(
                GateResult(table, False, None, None, f"{table}: not published ({path}).", [failure], 0)
            )
            continue
        data = delta_io.conform(delta_io.read(path), _nullable(schema), name=str(path))
        previous = current - 1 if current > 0 else None
        bounds = _row_count_reference(table, path, previous, data, config)
        suite = build_suite(table, SuiteInputs(now=now, row_count=bounds), config)
        validation = validate_batch(table, data, suite, config)
        summary = summarize(table, data.num_rows, validation.failures, validation.evaluated)
        results.append(
            GateResult(table, validation.success, current, None, summary, validation.failures, data.num_rows)
        )
    return results


def list_quarantined(paths: FeedPaths) -> list[QuarantinedBatch]:
    """Every refused batch under ``paths.quarantine``, oldest first."""
    found = []
    for report in sorted(paths.quarantine.glob(f"*/*/{VALIDATION_FILE}")):
        try:
            doc = json.loads(report.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            doc = {"summary": f"unreadable {report}: {exc}", "failures": []}
        found.append(
            QuarantinedBatch(
                table=doc.get("table", report.parent.parent.name),
                run_id=doc.get("run_id", report.parent.name),
                path=report.parent,
                rows=doc.get("rows"),
                created_at=doc.get("created_at"),
                summary=doc.get("summary", ""),
                failures=doc.get("failures", []),
            )
        )
    return sorted(found, key=lambda q: q.created_at or "")


def quarantine_dir(paths: FeedPaths, table: str, run_id: str) -> Path:
    return paths.quarantine / table / run_id


def _refuse(
    table: str,
    batch: pa.Table,
    failures: list[dict],
    summary: str,
    gx_result: dict[str, Any],
    *,
    paths: FeedPaths,
    run_id: str,
) -> GateResult:
    """Write the refused batch (as received, before conforming) and the validation result to quarantine."""
    target = quarantine_dir(paths, table, run_id)
    target.mkdir(parents=True, exist_ok=True)
    pq.write_table(batch, target / BATCH_FILE)
    doc = {
        **gx_result,
        "table": table,
        "run_id": run_id,
        "rows": batch.num_rows,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": summary,
        "failures": failures,
    }
    (target / VALIDATION_FILE).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    log.warning("quality gate refused %s (run %s), quarantined in %s: %s", table, run_id, target, summary)
    return GateResult(
        table=table,
        passed=False,
        version=None,
        quarantine_path=target,
        summary=summary,
        failures=failures,
        rows=batch.num_rows,
    )


def _publish(path: Path, batch: pa.Table, *, schema: pa.Schema, mode: str, predicate: str | None) -> int:
    """Commit to Delta. A first write creates the table (a replace predicate has nothing to match yet)."""
    if not delta_io.exists(path):
        return delta_io.write(path, batch, mode=mode, schema=schema)
    return delta_io.write(path, batch, mode=mode, predicate=predicate, schema=schema)


def _row_count_reference(
    table: str, path: Path, version: int | None, batch: pa.Table, config: GateConfig
) -> RowCountBounds | None:
    """Row-count bounds from the published ``version``'s rows per snapshot. Reference snapshots: those the
    batch also holds (a re-run or full rebuild compares like with like); for new snapshots, the latest as many
    published ones — feature tables grow as the lake fills (more members with history, more posts in the
    28-day cohort), so an average over all of history would flag ordinary growth as a blow-up."""
    if version is None or not is_feature_table(table) or table in config.row_count_exempt:
        return None
    reference = delta_io.read(path, columns=[TIMESTAMP], version=version).column(TIMESTAMP).drop_null()
    if len(reference) == 0:
        return None
    counts = pc.value_counts(reference)
    per_snapshot = dict(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    )
    batch_snapshots = set(pc.unique(batch.column(TIMESTAMP).drop_null()).to_pylist())
    shared = [per_snapshot[s] for s in batch_snapshots if s in per_snapshot]
    latest = [per_snapshot[s] for s in sorted(per_snapshot)[-max(1, len(batch_snapshots)) :]]
    if not shared and table in config.changes_only:
        return None  # new snapshots of a change-only table: no stable reference (see GateConfig)
    basis = shared or latest
    return row_count_bounds(
        config,
        reference_rows_per_snapshot=sum(basis) / len(basis),
        batch_snapshots=len(batch_snapshots),
        reference_version=version,
    )


def _nullable(schema: pa.Schema) -> pa.Schema:
    """The schema with every field nullable: nulls in key columns must reach the suite's not-null
    expectations (which count and locate them) instead of failing the cast."""
    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise ValueError(f"run_id must be a non-empty single path component, got {run_id!r}")
