"""Freshness and drift of key features between a snapshot and the one before it.

Drift is the population stability index (PSI) of each key feature: the reference (previous snapshot) is cut
into quantile bins, and with ``r_i``/``c_i`` the shares of the reference/current rows in bin ``i``

    PSI = Σ_i (c_i − r_i) · ln(c_i / r_i)

The usual reading (Siddiqi, *Credit Risk Scorecards*, 2006): < 0.1 stable, 0.1–0.25 a moderate shift,
> 0.25 a major one — hence the default threshold. A share of 0 is floored at ``epsilon`` so that a bin
emptied or newly filled gives a large but finite term.

Freshness: the raw impressions a snapshot S is built from end at S; if the newest impression before S is
older than ``max_staleness``, the snapshot describes a feed that stopped arriving (a stuck export, a missing
landing batch), and its features would be served as if current.

The pure computations (:func:`psi`, :func:`quantile_edges`, :func:`bin_shares`) are apart from the Delta
reads, so they are tested on hand-made data with known values.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.features.snapshots import midnight
from pipelines.schemas import TS

TIMESTAMP = "event_timestamp"

# (table, column): counts whose distribution moves when the feed or the pipeline changes. Percentile
# buckets are left out on purpose: they are uniform within every snapshot by construction, so their PSI
# is ~0 whatever happens upstream.
KEY_FEATURES: tuple[tuple[str, str], ...] = (
    ("post_engagement", "views_7d"),
    ("post_engagement", "likes_7d"),
    ("author_stats", "followers"),
    ("author_stats", "engagements_28d"),
    ("member_history", "history_length"),
)


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the freshness and drift check (built once, passed down)."""

    psi_threshold: float = 0.25  # > 0.25 is a "major shift" by the usual PSI reading (module docstring)
    bins: int = 10  # reference deciles; fewer bins for features with many ties (see quantile_edges)
    epsilon: float = 1e-4  # floor on a bin's share: an empty bin gives a finite log ratio
    # With no drift at all, PSI's expectation is ≈ (bins − 1)(1/n + 1/m) for n and m rows (its chi-square
    # approximation): 0.06 at 300 rows a side and 10 bins, a quarter of the threshold; at 100 rows it is
    # 0.18 and noise alone would trip the gate. Smaller snapshots are reported, not gated.
    min_rows: int = 300
    # The newest raw impression before a snapshot must be at most this old (daily batches: one day).
    max_staleness: dt.timedelta = dt.timedelta(days=1)
    features: tuple[tuple[str, str], ...] = KEY_FEATURES

    def __post_init__(self) -> None:
        if not self.psi_threshold > 0:
            raise ValueError(f"psi_threshold must be > 0, got {self.psi_threshold}")
        if self.bins < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins}")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon}")


class DriftError(RuntimeError):
    """A snapshot is stale or a key feature drifted past the threshold (the message lists each)."""


# --- pure computations ---------------------------------------------------------------------------------


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges: the reference's ``1/bins … (bins−1)/bins`` quantiles, taken from the data
    (``inverted_cdf``), de-duplicated. Count features are full of ties (most posts have 0 likes in a week), so
    fewer than ``bins − 1`` edges remain and the bins follow the values that actually occur."""
    if len(reference) == 0:
        return np.empty(0)
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.unique(np.quantile(np.asarray(reference, dtype=float), qs, method="inverted_cdf"))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin ``(-inf, e_1], (e_1, e_2], …, (e_k, inf)`` (k + 1 bins)."""
    values = np.asarray(values, dtype=float)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi_from_shares(reference: np.ndarray, current: np.ndarray, epsilon: float = 1e-4) -> float:
    """PSI of two share vectors over the same bins; shares below ``epsilon`` are floored to it."""
    r = np.maximum(np.asarray(reference, dtype=float), epsilon)
    c = np.maximum(np.asarray(current, dtype=float), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10, epsilon: float = 1e-4) -> float:
    """PSI of ``current`` against ``reference`` over the reference's quantile bins."""
    edges = quantile_edges(reference, bins)
    return psi_from_shares(bin_shares(reference, edges), bin_shares(current, edges), epsilon)


# --- checks against the lake ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    table: str
    feature: str
    snapshot: str  # ISO date of the snapshot checked
    reference_snapshot: str
    rows: int
    reference_rows: int
    psi: float | None  # None when a snapshot has no rows
    gated: bool  # False when too few rows to gate on (min_rows)
    passed: bool


@dataclass(frozen=True)
class Freshness:
    snapshot: str
    newest_impression: str | None  # newest raw impression before the snapshot (ISO)
    staleness_hours: float | None
    max_staleness_hours: float
    passed: bool


@dataclass(frozen=True)
class DriftReport:
    snapshots: list[str]
    config: dict[str, Any]
    freshness: list[Freshness]
    features: list[FeatureDrift]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = self.passed
        return doc


def _ts(day: dt.date) -> pa.Scalar:
    return pa.scalar(midnight(day), type=TS)


def _feature_values(paths: FeedPaths, table: str, feature: str, day: dt.date) -> np.ndarray:
    if not delta_io.exists(paths.table(table)):
        return np.empty(0)
    data = delta_io.read(paths.table(table), columns=[feature], filter=pc.field(TIMESTAMP) == _ts(day))
    return data.column(feature).drop_null().to_numpy().astype(float)


def feature_drift(
    paths: FeedPaths, table: str, feature: str, snapshot: dt.date, config: DriftConfig
) -> FeatureDrift:
    """PSI of ``table.feature`` at ``snapshot`` against the snapshot one day earlier."""
    previous = snapshot - dt.timedelta(days=1)
    current = _feature_values(paths, table, feature, snapshot)
    reference = _feature_values(paths, table, feature, previous)
    value = None
    if len(current) and len(reference):
        value = psi(reference, current, bins=config.bins, epsilon=config.epsilon)
    gated = value is not None and min(len(current), len(reference)) >= config.min_rows
    return FeatureDrift(
        table=table,
        feature=feature,
        snapshot=snapshot.isoformat(),
        reference_snapshot=previous.isoformat(),
        rows=len(current),
        reference_rows=len(reference),
        psi=None if value is None else round(value, 6),
        gated=gated,
        passed=not gated or value <= config.psi_threshold,
    )


def freshness(paths: FeedPaths, snapshot: dt.date, config: DriftConfig) -> Freshness:
    """How old the newest raw impression a snapshot sees (event_timestamp < S) is at S."""
    at = midnight(snapshot)
    stamps = delta_io.read(
        paths.table("raw_impressions"), columns=[TIMESTAMP], filter=pc.field(TIMESTAMP) < _ts(snapshot)
    ).column(TIMESTAMP)
    newest = pc.max(stamps).as_py() if len(stamps) else None
    staleness = None if newest is None else (at - newest).total_seconds() / 3600
    limit = config.max_staleness.total_seconds() / 3600
    return Freshness(
        snapshot=snapshot.isoformat(),
        newest_impression=None if newest is None else newest.isoformat(),
        staleness_hours=None if staleness is None else round(staleness, 3),
        max_staleness_hours=limit,
        passed=staleness is not None and staleness <= limit,
    )


def check(
    paths: FeedPaths,
    snapshots: list[dt.date],
    config: DriftConfig,
    *,
    requested_end: dt.date | None = None,
) -> DriftReport:
    """Freshness of every snapshot and drift of every key feature against the day before.

    ``requested_end``: the last snapshot the caller wanted, when the data's span cut the build short of it;
    its freshness is checked too, so a run asking for days the raw data does not reach fails as stale."""
    fresh_days = sorted({*snapshots, *([requested_end] if requested_end else [])})
    fresh = [freshness(paths, day, config) for day in fresh_days]
    drifts = [feature_drift(paths, t, f, day, config) for day in snapshots for t, f in config.features]
    failures = [
        f"snapshot {f.snapshot}: newest raw impression {f.newest_impression or 'none'} is "
        f"{'∞' if f.staleness_hours is None else f'{f.staleness_hours:.1f}'} h old "
        f"(max {f.max_staleness_hours:.0f} h): raw data is stale"
        for f in fresh
        if not f.passed
    ]
    failures += [
        f"snapshot {d.snapshot}: {d.table}.{d.feature} PSI {d.psi:.3f} > {config.psi_threshold} "
        f"vs {d.reference_snapshot} ({d.reference_rows} → {d.rows} rows)"
        for d in drifts
        if not d.passed
    ]
    return DriftReport(
        snapshots=[d.isoformat() for d in snapshots],
        config=_config_doc(config),
        freshness=fresh,
        features=drifts,
        failures=failures,
    )


def _config_doc(config: DriftConfig) -> dict[str, Any]:
    doc = asdict(config)
    doc["max_staleness"] = config.max_staleness.total_seconds()
    doc["features"] = [f"{t}.{c}" for t, c in config.features]
    return doc


def write_report(report: DriftReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = report.to_dict()
    # JSON has no NaN/inf; a PSI is finite by construction (epsilon floor), but keep the file loadable.
    for item in doc["features"]:
        if item["psi"] is not None and not math.isfinite(item["psi"]):
            item["psi"] = None
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
