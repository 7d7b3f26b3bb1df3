"""Task bodies of the ``feed_features`` DAG: ingest → features → freshness/drift → publish → Feast.

Each function takes the settings (default: ``FeedSettings()``, i.e. ``FEED_HOME``) and the run's data
interval, and returns a small JSON-able dict for XCom. Every one is idempotent for its interval:

- ingest: a landing batch is ingested once (ledger ``<lake>/_ingested.json``; a batch whose keys are all in
  the lake already — ingested by ``feed data ingest`` or ``feed demo`` — is adopted, not re-ingested);
- features: the gate replaces exactly the interval's snapshots (Delta ``overwrite`` + predicate);
- drift: a report file per interval, rewritten;
- Feast: ``materialize-incremental`` loads nothing already loaded.

The interval → snapshots mapping: a snapshot is a UTC midnight S (it sees events before S), so the interval
[start, end) yields the midnights in (start, end] — for a daily run, the one at its end. It is clipped to the
data's span (the day after the first impression … the day after the last): an interval entirely *before* the
data has nothing to build and the run skips its remaining tasks (success, logged); one entirely *after* it
fails (:class:`StaleDataError`): the raw data stopped arriving, which must not pass silently.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.features.build import EmptyRawDataError
from pipelines.ingest import RawDataError
from pipelines.quality.drift import DriftConfig, DriftError

if TYPE_CHECKING:
    from feed.config import FeedPaths, FeedSettings
    from pipelines.features.snapshots import SnapshotRange

log = logging.getLogger(__name__)

LEDGER = "_ingested.json"  # in the lake folder: wiping the lake forgets what it had ingested


class FeatureGateError(RuntimeError):
    """The quality gate refused feature tables (quarantined); the message names each with its summary."""


class StaleDataError(RuntimeError):
    """The data interval lies after the raw data's last impression: there is nothing new to build."""


# Data faults the DAG fails on without retrying (retrying would refuse the same data again).
DATA_FAULTS: tuple[type[Exception], ...] = (
    RawDataError,
    EmptyRawDataError,
    FeatureGateError,
    StaleDataError,
    DriftError,
)


@contextmanager
def fail_without_retry() -> Iterator[None]:
    """Inside an Airflow task: re-raise a data fault as ``AirflowFailException`` — the task fails at once,
    skipping its retries (a refused batch is refused again; retries are for transient faults). Also what
    keeps ``airflow dags test`` from waiting out the retry delays on a failed gate."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except DATA_FAULTS as exc:
        raise AirflowFailException(str(exc)) from exc


def _settings(settings: FeedSettings | None) -> FeedSettings:
    from feed.config import FeedSettings

    return settings if settings is not None else FeedSettings()


# --- ingest ------------------------------------------------------------------------------------------------


def _ledger_path(paths: FeedPaths) -> Path:
    return paths.lake / LEDGER


def _read_ledger(paths: FeedPaths) -> dict[str, Any]:
    path = _ledger_path(paths)
    return json.loads(path.read_text()) if path.exists() else {}


def _write_ledger(paths: FeedPaths, ledger: dict[str, Any]) -> None:
    path = _ledger_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ledger, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # a crash leaves the old ledger or the new one, never half of one


def landing_batches(paths: FeedPaths) -> list[Path]:
    """Landing batch folders (``<landing>/<batch>/``), in name order."""
    if not paths.landing.is_dir():
        return []
    return sorted(p for p in paths.landing.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _keys_in_lake(paths: FeedPaths, batch: Path) -> bool:
    """True when every landing table of ``batch`` exists in the lake and holds all of the batch's keys: the
    batch was ingested before (by a run that died before writing the ledger, or outside this DAG)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from pipelines import delta_io
    from pipelines.ingest import LANDING_KEYS, landing_files

    files, layout = landing_files(batch)
    if layout or not files:
        return False
    for name, parts in files.items():
        keys = list(LANDING_KEYS[name])
        if not delta_io.exists(paths.table(name)):
            return False
        landed = pd.concat([pq.read_table(p, columns=keys).to_pandas() for p in parts], ignore_index=True)
        lake = delta_io.read(paths.table(name), columns=keys).to_pandas()
        if not pd.MultiIndex.from_frame(landed).isin(pd.MultiIndex.from_frame(lake)).all():
            return False
    return True


def _generate(paths: FeedPaths, scale: str, seed: int) -> tuple[Path, dt.datetime]:
    """Write the synthetic data set to a landing batch; returns it and the end of its period."""
    from pipelines.synth import synth_config, write_synth

    config = synth_config(scale, seed)
    out = paths.landing / f"synth-{scale}-{seed}"
    rows = write_synth(config, out)
    log.info("generated synthetic %s (seed %d) in %s: %s", scale, seed, out, rows)
    return out, config.start + dt.timedelta(days=config.days)


def ingest_new_data(settings: FeedSettings | None = None, *, scale: str = "tiny", seed: int = 0) -> dict:
    """Ingest every landing batch not ingested yet. With an empty lake and no landing batch, first generate
    the ``scale`` synthetic data set (seed ``seed``) into the landing folder. Bad raw data raises
    :class:`pipelines.ingest.RawDataError` before anything is committed."""
    from feed.config import RAW_TABLES
    from pipelines import delta_io
    from pipelines.ingest import ingest

    paths = _settings(settings).paths()
    generated: dict[str, str] = {}
    clock: dict[str, dt.datetime] = {}
    if not landing_batches(paths) and not all(delta_io.exists(paths.table(t)) for t in RAW_TABLES):
        batch, period_end = _generate(paths, scale, seed)
        generated = {"batch": batch.name, "scale": scale, "seed": str(seed)}
        # "now" for the future-timestamp rule = the end of the synthetic period, whatever the wall clock says
        clock[batch.name] = period_end
    ledger = _read_ledger(paths)
    ingested: dict[str, dict[str, int]] = {}
    adopted: list[str] = []
    for batch in landing_batches(paths):
        if batch.name in ledger:
            continue
        if _keys_in_lake(paths, batch):
            ledger[batch.name] = {"adopted": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
            adopted.append(batch.name)
        else:
            result = ingest(paths, batch, now=clock.get(batch.name))
            ledger[batch.name] = {
                "ingested": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "rows": result.rows,
                "versions": result.versions,
            }
            ingested[batch.name] = result.rows
        _write_ledger(paths, ledger)
    versions = {t: delta_io.version(paths.table(t)) for t in RAW_TABLES}
    if not ingested:
        log.info("no new landing batch in %s: the lake is used as it is (%s)", paths.landing, versions)
    return {"generated": generated, "ingested": ingested, "adopted": adopted, "raw_versions": versions}


# --- interval → snapshots ----------------------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} needs a time zone (UTC)")
    return value.astimezone(dt.UTC)


def interval_days(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """First and last snapshot day of the data interval: the UTC midnights in (start, end]; a zero-length
    interval (a trigger timetable's point in time) gives the midnight at or before it."""
    start, end = _utc(start), _utc(end)
    if end < start:
        raise ValueError(f"data interval end {end.isoformat()} is before its start {start.isoformat()}")
    last = end.date()  # the midnight at or before end
    if end == start:
        return last, last
    first = start.date() + dt.timedelta(days=1)  # the first midnight strictly after start
    if first > last:
        raise ValueError(f"data interval {start.isoformat()}..{end.isoformat()} contains no UTC midnight")
    return first, last


@dataclass(frozen=True)
class SnapshotPlan:
    requested: tuple[dt.date, dt.date]  # from the data interval
    snapshots: SnapshotRange | None  # clipped to the data's span; None: the interval is before the data
    reason: str


def plan_snapshots(
    start: dt.datetime, end: dt.datetime, first_impression: dt.datetime, last_impression: dt.datetime
) -> SnapshotPlan:
    """The interval's snapshots clipped to the data's span (see the module docstring for the two edges)."""
    from pipelines.features.snapshots import SnapshotRange, resolve_snapshots

    lo, hi = interval_days(start, end)
    span = resolve_snapshots(first_impression, last_impression)
    if hi < span.origin:
        reason = (
            f"data interval snapshots {lo}..{hi} are before the data's first snapshot {span.origin} "
            f"(first impression {first_impression.isoformat()}): nothing to build"
        )
        return SnapshotPlan((lo, hi), None, reason)
    if lo > span.end:
        raise StaleDataError(
            f"data interval snapshots {lo}..{hi} are after the data's last snapshot {span.end}: the newest "
            f"raw impression is {last_impression.isoformat()}. Land the new raw data in the landing folder "
            f"(or run for a date inside the data): features for {lo}..{hi} would repeat stale data."
        )
    clipped = SnapshotRange(start=max(lo, span.origin), end=min(hi, span.end), origin=span.origin, full=False)
    reason = (
        f"snapshots {clipped.start}..{clipped.end} "
        f"(interval asked {lo}..{hi}; data {span.origin}..{span.end})"
    )
    return SnapshotPlan((lo, hi), clipped, reason)


def impression_span(paths: FeedPaths) -> tuple[dt.datetime, dt.datetime]:
    """First and last raw impression (UTC), read from the Delta table's timestamps (no Spark)."""
    import pyarrow.compute as pc

    from pipelines import delta_io

    stamps = delta_io.read(paths.table("raw_impressions"), columns=["event_timestamp"]).column(0)
    if len(stamps) == 0:
        raise EmptyRawDataError(
            f"{paths.table('raw_impressions')} has no rows; nothing to build features from"
        )
    bounds = pc.min_max(stamps).as_py()
    return _utc(bounds["min"]), _utc(bounds["max"])


# --- features ----------------------------------------------------------------------------------------------


def backfill_start(start: dt.datetime, backfill_from: dt.date) -> dt.datetime:
    """The data-interval start whose first snapshot is ``backfill_from`` itself (a snapshot at midnight M
    belongs to the interval [M - 1 day, M)). Starting at midnight of ``backfill_from`` instead skipped that
    snapshot — for a backfill from the data's first snapshot, the one where every member created before the
    data gets their profile row, so most members had no profile online."""
    first_interval = dt.datetime.combine(backfill_from - dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return min(_utc(start), first_interval)


def build(
    settings: FeedSettings | None,
    start: dt.datetime,
    end: dt.datetime,
    *,
    backfill_from: dt.date | None = None,
) -> dict:
    """Spark features for the interval's snapshots through the GX gate (which publishes each table that
    passes and quarantines each that does not). Returns ``{"skipped": reason}`` for an interval before the
    data; raises :class:`FeatureGateError` when any table was refused.

    ``backfill_from`` (the DAG's ``backfill_from`` param): an initial load — build every snapshot from that
    day to the interval's end in one Spark job instead of one run per day (the run is still idempotent: the
    gate replaces exactly those snapshots)."""
    from pipelines.features.build import build_features

    settings = _settings(settings)
    paths = settings.paths()
    if backfill_from is not None:
        start = backfill_start(start, backfill_from)
    plan = plan_snapshots(start, end, *impression_span(paths))
    log.info("feed_features %s..%s: %s", start, end, plan.reason)
    if plan.snapshots is None:
        return {"skipped": plan.reason}
    snaps = plan.snapshots
    report = build_features(paths, settings.spark(), start=snaps.start, end=snaps.end)
    refused = [t for t in report.tables if not t.passed]
    if refused:
        lines = [f"quality gate refused {len(refused)} feature table(s) of run {report.run_id}:"]
        lines += [
            f"  - {t.table}: {t.gate.summary} (quarantined in {t.gate.quarantine_path})" for t in refused
        ]
        lines.append("The published versions of these tables are unchanged; Feast was not touched.")
        raise FeatureGateError("\n".join(lines))
    return {
        "run_id": report.run_id,
        "snapshots": {"start": snaps.start.isoformat(), "end": snaps.end.isoformat()},
        "requested": {"start": plan.requested[0].isoformat(), "end": plan.requested[1].isoformat()},
        "versions": {t.table: t.gate.version for t in report.tables},
        "rows": {t.table: t.rows for t in report.tables},
        "backfill": backfill_from is not None,
    }


def _days(snapshots: dict[str, str]) -> list[dt.date]:
    first, last = (dt.date.fromisoformat(snapshots[k]) for k in ("start", "end"))
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def drift_report_path(paths: FeedPaths, snapshots: dict[str, str]) -> Path:
    """``<data>/quality/drift/<snapshot>.json`` (``<start>_<end>.json`` for a multi-day interval)."""
    first, last = snapshots["start"], snapshots["end"]
    name = last if first == last else f"{first}_{last}"
    return paths.data / "quality" / "drift" / f"{name}.json"


def check_drift(
    settings: FeedSettings | None,
    built: dict,
    config: DriftConfig = DriftConfig(),  # noqa: B008 - frozen dataclass, never mutated
) -> dict:
    """Freshness of the raw data and PSI of the key features vs the previous snapshot; writes the JSON report
    and raises :class:`DriftError` (listing each failure) past ``config``'s limits."""
    from pipelines.quality import drift

    paths = _settings(settings).paths()
    days = _days(built["snapshots"])
    if built.get("backfill"):  # an initial load: its first week's 7-day windows are still filling up, so
        days = days[-1:]  # only the newest snapshot is compared with the day before
    requested_end = dt.date.fromisoformat(built["requested"]["end"])
    report = drift.check(paths, days, config, requested_end=requested_end)
    path = drift.write_report(report, drift_report_path(paths, built["snapshots"]))
    if not report.passed:
        raise DriftError(
            f"freshness/drift check failed for snapshots {days[0]}..{days[-1]} (report {path}):\n"
            + "\n".join(f"  - {line}" for line in report.failures)
        )
    scores = [f.psi for f in report.features if f.psi is not None]
    return {
        "report": str(path),
        "max_psi": max(scores, default=None),
        "gated": sum(f.gated for f in report.features),
    }


def publish(settings: FeedSettings | None, built: dict) -> dict:
    """Record the Delta versions the gate published for this run (they are what Feast and the training DAGs
    read). Checks that each table still exists at least at that version: a table rolled back since the build
    must not be announced as published."""
    from pipelines import delta_io

    paths = _settings(settings).paths()
    now = {t: delta_io.version(paths.table(t)) for t in built["versions"]}
    behind = {t: (v, now[t]) for t, v in built["versions"].items() if now[t] is None or now[t] < v}
    if behind:
        raise RuntimeError(f"published tables went back since the build (built, now): {behind}")
    return {"run_id": built["run_id"], "snapshots": built["snapshots"], "versions": built["versions"]}


def materialize(settings: FeedSettings | None, published: dict) -> dict:
    """``feast apply`` (idempotent) then ``materialize-incremental`` up to the last snapshot's midnight."""
    from pipelines import feature_store
    from pipelines.features.snapshots import midnight

    paths = _settings(settings).paths()
    end = midnight(dt.date.fromisoformat(published["snapshots"]["end"]))
    views = feature_store.apply(paths)
    starts = feature_store.materialize_incremental(paths, end)
    return {
        "end": end.isoformat(),
        "views": len(views),
        "materialized": {name: start.isoformat() for name, start in starts.items()},
        "online_store": str(paths.feast),
    }
