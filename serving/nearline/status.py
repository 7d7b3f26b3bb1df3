"""``feed nearline status``: per stage, the committed offset, input versions still pending, and lag.

Lag per stage (over the newest ``window`` output rows): ``stage`` = the stage's own time (its done time minus
the previous stage's done time; for prompts, minus the event's publish time) and ``end to end`` = its done
time minus the event's publish time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feed.config import FeedPaths
from serving.nearline import log as nlog
from serving.nearline.schemas import (
    EMBEDDINGS_TABLE,
    EVENTS_TABLE,
    INDEXED_TABLE,
    PROMPTS_TABLE,
    SCHEMAS,
)

# stage -> (input table, output table, app id, done column, previous done column)
STAGE_TABLES: dict[str, tuple[str, str, str, str, str]] = {
    "prompts": (EVENTS_TABLE, PROMPTS_TABLE, "feed.nearline.prompts", "prompted_at", "published_at"),
    "embed": (PROMPTS_TABLE, EMBEDDINGS_TABLE, "feed.nearline.embed", "embedded_at", "prompted_at"),
    "index": (EMBEDDINGS_TABLE, INDEXED_TABLE, "feed.nearline.index", "indexed_at", "embedded_at"),
}


@dataclass(frozen=True)
class StageStatus:
    stage: str
    input_head: int | None  # newest input version (None: no input table yet)
    offset: int  # last input version committed (-1: none)
    pending_versions: int
    rows: int  # output rows in the lag window
    stage_p50_s: float | None
    stage_p95_s: float | None
    e2e_p50_s: float | None  # done time - published_at
    e2e_p95_s: float | None
    rejected: int = 0


def _seconds(later: pa.ChunkedArray, earlier: pa.ChunkedArray) -> np.ndarray:
    diff = pc.subtract(later.cast(pa.timestamp("us", tz="UTC")), earlier.cast(pa.timestamp("us", tz="UTC")))
    return diff.cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def stage_status(paths: FeedPaths, stage: str, *, window: int = 1000) -> StageStatus:
    src, out, app_id, done, previous = STAGE_TABLES[stage]
    head = nlog.head_version(paths.table(src))
    offset = nlog.committed_offset(paths.table(out), app_id)
    cols = sorted({done, previous, "published_at", *(["outcome"] if stage == "index" else [])})
    rows = nlog.read_all(paths.table(out), SCHEMAS[out], columns=cols)
    rows = rows.slice(max(0, rows.num_rows - window))
    stage_s = _seconds(rows[done], rows[previous]) if rows.num_rows else np.array([])
    e2e_s = _seconds(rows[done], rows["published_at"]) if rows.num_rows else np.array([])
    rejected = (
        int(pc.sum(pc.equal(rows["outcome"], "rejected")).as_py() or 0)
        if stage == "index" and rows.num_rows
        else 0
    )
    return StageStatus(
        stage=stage,
        input_head=head,
        offset=offset,
        pending_versions=0 if head is None else max(0, head - offset),
        rows=rows.num_rows,
        stage_p50_s=_pct(stage_s, 50),
        stage_p95_s=_pct(stage_s, 95),
        e2e_p50_s=_pct(e2e_s, 50),
        e2e_p95_s=_pct(e2e_s, 95),
        rejected=rejected,
    )


def status(paths: FeedPaths, *, window: int = 1000) -> list[StageStatus]:
    return [stage_status(paths, s, window=window) for s in STAGE_TABLES]


def format_status(rows: list[StageStatus], now: dt.datetime | None = None) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    lines = [
        f"{'stage':<8} {'offset':>7} {'head':>6} {'pending':>8} {'rows':>6} "
        f"{'stage p50/p95 s':>16} {'publish→done p50/p95 s':>23} {'rejected':>9}"
    ]
    for s in rows:
        head = "-" if s.input_head is None else str(s.input_head)
        lines.append(
            f"{s.stage:<8} {s.offset:>7} {head:>6} {s.pending_versions:>8} {s.rows:>6} "
            f"{f(s.stage_p50_s) + ' / ' + f(s.stage_p95_s):>16} "
            f"{f(s.e2e_p50_s) + ' / ' + f(s.e2e_p95_s):>23} "
            f"{s.rejected:>9}"
        )
    return "\n".join(lines)
