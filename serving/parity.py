"""Online/offline parity (training–serving skew): the values serving reads from the online store against the
values a point-in-time training join (``get_historical_features``) returns, for the same entities at the
same time T.

T defaults to the end of the newest materialization interval in the Feast registry: the time the online store
was filled up to, so that both sides describe "the features as of T". ``at`` compares at any other time
(e.g. the wall clock, where TTL expiry shows up: the online store returns a row whatever its age, the offline
join drops rows older than the view's TTL).

Entities: a seeded sample of members (from the member views' source tables), the posts their histories
reference (capped) plus random posts, and those posts' authors. Every feature of every view keyed by
``member_id``, ``post_id`` or ``author_id`` is compared: a superset of what the feature services and the
service read (``read_by`` names the consumers of each feature). The online read is the service's own call
(``get_online_features(refs, rows, full_feature_names=True).to_dict(include_event_timestamps=True)``).

Each (entity, feature) pair is one of: ``equal`` (floats within ``rtol``/``atol``, arrays elementwise,
timestamps in UTC at ``timestamp_resolution_s``), ``mismatch``, ``online_only`` (offline null: TTL expired,
or the online row is newer than T), ``offline_only`` (not in the online store: never materialized or pushed)
and ``both_null``. Non-equal pairs get a reason from the online row's event timestamp.

Feast, pandas and the registry are imported inside functions: the service must not pay for them at import.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from feed.config import REPORTS_DIR, FeedPaths

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore, FeatureView

ENTITY_KEYS: tuple[str, ...] = ("member_id", "post_id", "author_id")
# Features holding post ids a member engaged with: their posts join the post sample.
HISTORY_FEATURES: tuple[str, ...] = ("member_history__engaged_post_ids", "member_sequence__post_ids")
AUTHOR_FEATURE = "post_content__author_id"

EQUAL, MISMATCH, ONLINE_ONLY, OFFLINE_ONLY, BOTH_NULL = (
    "equal",
    "mismatch",
    "online_only",
    "offline_only",
    "both_null",
)
OUTCOMES: tuple[str, ...] = (EQUAL, MISMATCH, ONLINE_ONLY, OFFLINE_ONLY, BOTH_NULL)
SHOW_ITEMS = 8  # list values in examples: the first items, the length and the first differing index


class ParityError(RuntimeError):
    """Parity cannot run as asked (no materialization to anchor T on, nothing to compare)."""


@dataclass(frozen=True)
class ParityConfig:
    members: int = 100
    posts: int = 100  # random posts, beside the ones the sampled members' histories reference
    history_posts: int = 200  # at most this many of the referenced posts (a seeded sample)
    seed: int = 0
    at: dt.datetime | None = None  # None: the end of the newest materialization interval
    rtol: float = 1e-6
    atol: float = 1e-6
    # Feast stores UnixTimestamp features as whole epoch seconds online (offline tables keep microseconds):
    # at 1.0 both sides are compared at whole seconds, at 0 exactly.
    timestamp_resolution_s: float = 1.0
    max_examples: int = 20
    variant: str = "local"
    redis_connection: str | None = None

    def __post_init__(self) -> None:
        for name in ("members", "posts", "history_posts", "max_examples"):
            if getattr(self, name) < 0:
                raise ParityError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.at is not None and self.at.tzinfo is None:
            raise ParityError(f"at {self.at.isoformat()} needs a time zone (UTC)")


@dataclass
class Counts:
    """Outcome counts of one view or feature; ``reasons`` keys are ``<outcome>:<reason>``."""

    equal: int = 0
    mismatch: int = 0
    online_only: int = 0
    offline_only: int = 0
    both_null: int = 0
    timestamps_within_resolution: int = 0  # equal only at the configured resolution
    online_newer_than_at: int = 0  # pairs (any outcome) whose online row is stamped after T (pushed later)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str, reason: str | None, *, below_resolution: bool, newer: bool) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if reason:
            self.reasons[f"{outcome}:{reason}"] += 1
        self.timestamps_within_resolution += below_resolution
        self.online_newer_than_at += newer

    @property
    def compared(self) -> int:
        """Pairs where at least one side has a value (both-null pairs compare nothing)."""
        return self.equal + self.mismatch + self.online_only + self.offline_only

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "equal": self.equal,
            "mismatches": self.mismatch,
            "online_only": self.online_only,
            "offline_only": self.offline_only,
            "both_null": self.both_null,
            "timestamps_within_resolution": self.timestamps_within_resolution,
            "online_newer_than_at": self.online_newer_than_at,
            "reasons": dict(sorted(self.reasons.items())),
        }


@dataclass
class ParityResult:
    at: dt.datetime
    at_source: str  # "materialization" | "given"
    materialized_until: dict[str, str | None]
    entities: dict[str, list[int]]  # key → sampled ids
    history_posts: int
    random_posts: int
    per_view: dict[str, Counts]
    per_feature: dict[str, Counts]
    view_entity: dict[str, str]
    read_by: dict[str, list[str]]
    skipped_views: list[str]
    examples: list[dict[str, Any]]
    other_examples: list[dict[str, Any]]

    @property
    def total(self) -> Counts:
        out = Counts()
        for c in self.per_view.values():
            for name in (*OUTCOMES, "timestamps_within_resolution", "online_newer_than_at"):
                setattr(out, name, getattr(out, name) + getattr(c, name))
            out.reasons.update(c.reasons)
        return out

    @property
    def mismatches(self) -> int:
        return self.total.mismatch

    def summary(self) -> dict[str, Any]:
        t = self.total
        compared = t.compared
        return {
            "members": len(self.entities.get("member_id", [])),
            "posts": len(self.entities.get("post_id", [])),
            "authors": len(self.entities.get("author_id", [])),
            "at": self.at.isoformat(),
            "at_source": self.at_source,
            "features_compared": compared,
            "equal": t.equal,
            "mismatches": t.mismatch,
            "mismatch_rate": round(t.mismatch / compared, 6) if compared else 0.0,
            "online_only": t.online_only,
            "offline_only": t.offline_only,
            "both_null": t.both_null,
            "skew_rate": round((t.mismatch + t.online_only + t.offline_only) / compared, 6)
            if compared
            else 0.0,
            "timestamps_within_resolution": t.timestamps_within_resolution,
            "online_newer_than_at": t.online_newer_than_at,
            "per_view": {
                name: {"entity": self.view_entity[name], **c.as_dict()} for name, c in self.per_view.items()
            },
        }


# --- value comparison (pure; unit-tested without Feast)


def normalize(value: Any) -> Any:
    """One representation for both sides: None for null/NaN/NaT, lists for arrays, aware UTC datetimes for
    timestamps, Python scalars for numpy scalars."""
    if value is None:
        return None
    if isinstance(value, np.ndarray | list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, dt.datetime):  # pandas Timestamp is a datetime subclass
        if hasattr(value, "to_pydatetime"):
            if value != value:  # NaT
                return None
            value = value.to_pydatetime()
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _seconds(value: dt.datetime | int | float) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


def times_equal(a: dt.datetime | float, b: dt.datetime | float, resolution_s: float) -> bool:
    """Same instant at ``resolution_s`` (floored: Feast truncates online timestamps to whole seconds)."""
    sa, sb = _seconds(a), _seconds(b)
    if resolution_s <= 0:
        return sa == sb
    return math.floor(sa / resolution_s) == math.floor(sb / resolution_s)


def values_equal(
    a: Any, b: Any, *, rtol: float = 1e-6, atol: float = 1e-6, resolution_s: float = 1.0
) -> bool:
    """Equality of two :func:`normalize`-d values: floats within tolerance, ints exactly, lists elementwise
    (NaN is None there, so NaN equals NaN), timestamps at ``resolution_s`` (a number beside a timestamp is
    epoch seconds)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(
                values_equal(x, y, rtol=rtol, atol=atol, resolution_s=resolution_s)
                for x, y in zip(a, b, strict=True)
            )
        )
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dt.datetime) or isinstance(b, dt.datetime):
        if isinstance(a, str) or isinstance(b, str):
            return False
        return times_equal(a, b, resolution_s)
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) or isinstance(
            b, int
        ):  # an int feature (offline: float when the column has nulls)
            return float(a) == float(b)  # exactly: rtol on an epoch-seconds value would allow minutes
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    return bool(a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def classify(
    online: Any, offline: Any, *, rtol: float = 1e-6, atol: float = 1e-6, resolution_s: float = 1.0
) -> str:
    """The outcome of one (entity, feature) pair of normalized values."""
    if online is None and offline is None:
        return BOTH_NULL
    if offline is None:
        return ONLINE_ONLY
    if online is None:
        return OFFLINE_ONLY
    same = values_equal(online, offline, rtol=rtol, atol=atol, resolution_s=resolution_s)
    return EQUAL if same else MISMATCH


def reason(outcome: str, online_ts: int, at: dt.datetime, ttl: dt.timedelta | None) -> str | None:
    """Why a pair is not equal, from the online row's event timestamp (epoch seconds, 0: no online row)."""
    if outcome in (EQUAL, BOTH_NULL):
        return None
    at_s = at.timestamp()
    if outcome == OFFLINE_ONLY:
        return "not_in_online_store" if online_ts == 0 else "online_value_null"
    if online_ts > at_s:
        return "online_newer_than_at"  # pushed (or materialized) after T: offline reads an older row
    if outcome == ONLINE_ONLY and ttl and online_ts <= at_s - ttl.total_seconds():
        return "ttl_expired"  # the online store serves rows whatever their age; the offline join drops them
    return "offline_missing" if outcome == ONLINE_ONLY else "value_differs"


def sample_ids(population: Iterable[int], n: int, rng: np.random.Generator) -> list[int]:
    """``n`` distinct ids (all when fewer), sorted; deterministic for a given population and generator."""
    pool = np.array(sorted({int(p) for p in population}), dtype=np.int64)
    if n >= len(pool):
        return pool.tolist()
    return sorted(rng.choice(pool, size=n, replace=False).tolist())


def first_difference(a: list[Any], b: list[Any]) -> int | None:
    """Index of the first differing item (the shorter length when one is a prefix of the other)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if not values_equal(x, y):
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def show(value: Any, other: Any = None) -> Any:
    """A JSON-friendly, bounded rendering of a normalized value for the examples: long lists as their
    length, first items and (beside ``other``) the first differing index."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if not isinstance(value, list):
        return value
    head = [show(v) for v in value[:SHOW_ITEMS]]
    if len(value) <= SHOW_ITEMS:
        return head
    out: dict[str, Any] = {"length": len(value), "head": head}
    diff = first_difference(value, other) if isinstance(other, list) else None
    if diff is not None:
        out["first_difference"] = {"index": diff, "value": show(value[diff]) if diff < len(value) else None}
    return out


# --- the run


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def materialized_until(views: Sequence[FeatureView]) -> dict[str, dt.datetime | None]:
    """Each view's end of its last materialization interval (None: never materialized)."""
    return {
        v.name: _utc(v.most_recent_end_time) if v.most_recent_end_time is not None else None for v in views
    }


def consumers(fs: FeatureStore) -> dict[str, list[str]]:
    """``view__feature`` → the feature services (and ``serving``, the service's own reads) that read it."""
    from serving import features as serving_features

    out: dict[str, list[str]] = defaultdict(list)
    for service in sorted(fs.list_feature_services(), key=lambda s: s.name):
        for projection in service.feature_view_projections:
            for f in projection.features:
                out[f"{projection.name}__{f.name}"].append(service.name)
    for table in (
        serving_features.MEMBER_FEATURES,
        serving_features.POST_FEATURES,
        serving_features.AUTHOR_FEATURES,
    ):
        for view, names in table.items():
            for name in names:
                out[f"{view}__{name}"].append("serving")
    return dict(out)


def source_keys(view: FeatureView, key: str) -> set[int]:
    """Distinct ``key`` values in the view's batch source (a Delta table, or a Parquet folder for the Spark
    variant); empty when the source cannot be read here."""
    import pyarrow.dataset as pads

    from pipelines import delta_io

    path = getattr(view.batch_source, "path", None)
    if not path:
        return set()
    if delta_io.exists(path):
        column = delta_io.read(path, columns=[key])[key]
    elif Path(path).is_dir():
        column = pads.dataset(path, format="parquet").to_table(columns=[key])[key]
    else:
        return set()
    return {int(v) for v in column.unique().to_pylist() if v is not None}


@dataclass
class _Run:
    """State of one parity run: the store, the time, the accumulators."""

    paths: FeedPaths
    cfg: ParityConfig
    fs: FeatureStore
    at: dt.datetime
    per_view: dict[str, Counts] = field(default_factory=dict)
    per_feature: dict[str, Counts] = field(default_factory=dict)
    mismatches: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    others: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def read_online(self, refs: list[str], key: str, ids: Sequence[int]) -> dict[str, list[Any]]:
        """The service's read (serving/features.py): one call for the rows, values and event timestamps."""
        rows = [{key: int(i)} for i in ids]
        response = self.fs.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
        return response.to_dict(include_event_timestamps=True)

    def read_offline(self, refs: list[str], key: str, ids: Sequence[int]) -> pd.DataFrame:
        """The point-in-time join at T for every row, re-ordered as ``ids``."""
        import pandas as pd

        from pipelines import feature_store

        entity_df = pd.DataFrame({key: np.asarray(ids, dtype=np.int64), "event_timestamp": self.at})
        frame = feature_store.historical_features(self.paths, entity_df, refs, self.cfg.variant)
        return frame.drop_duplicates(subset=[key]).set_index(key).reindex(list(ids))

    def compare(self, key: str, ids: Sequence[int], views: Sequence[FeatureView]) -> dict[str, list[Any]]:
        """Compare every feature of ``views`` for ``ids``; returns the normalized values of both sides per
        ``view__feature`` column (online first, then offline), for the next sample."""
        if not ids or not views:
            return {}
        refs = [f"{v.name}:{f.name}" for v in views for f in v.features]
        online = self.read_online(refs, key, ids)
        offline = self.read_offline(refs, key, ids)
        values: dict[str, list[Any]] = {}
        for view in views:
            counts = self.per_view.setdefault(view.name, Counts())
            for feat in view.features:
                column = f"{view.name}__{feat.name}"
                on = [normalize(v) for v in online[column]]
                off = [normalize(v) for v in offline[column].tolist()]
                ts = [int(t or 0) for t in online.get(f"{column}__ts", [0] * len(ids))]
                self._pairs(key, ids, view, feat.name, on, off, ts, counts)
                values[column] = on + off
        return values

    def _pairs(
        self,
        key: str,
        ids: Sequence[int],
        view: FeatureView,
        feature: str,
        on: list[Any],
        off: list[Any],
        ts: list[int],
        counts: Counts,
    ) -> None:
        cfg = self.cfg
        column = f"{view.name}__{feature}"
        per_feature = self.per_feature.setdefault(column, Counts())
        at_s = self.at.timestamp()
        for entity, a, b, t in zip(ids, on, off, ts, strict=True):
            outcome = classify(a, b, rtol=cfg.rtol, atol=cfg.atol, resolution_s=cfg.timestamp_resolution_s)
            why = reason(outcome, t, self.at, view.ttl)
            below = outcome == EQUAL and _differs_below_resolution(a, b)
            for c in (counts, per_feature):
                c.add(outcome, why, below_resolution=below, newer=t > at_s)
            if outcome in (EQUAL, BOTH_NULL):
                continue
            bucket = self.mismatches if outcome == MISMATCH else self.others
            if len(bucket[column]) < cfg.max_examples:
                bucket[column].append(
                    {
                        "view": view.name,
                        "feature": feature,
                        "outcome": outcome,
                        "reason": why,
                        "entity": {key: int(entity)},
                        "online": show(a, b),
                        "offline": show(b, a),
                        "online_event_timestamp": dt.datetime.fromtimestamp(t, dt.UTC).isoformat()
                        if t
                        else None,
                    }
                )


def _differs_below_resolution(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return any(_differs_below_resolution(x, y) for x, y in zip(a, b, strict=False))
    return isinstance(a, dt.datetime) and isinstance(b, dt.datetime) and a != b


def spread(per_column: Mapping[str, list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` examples taken round-robin over the columns, so one broken feature cannot hide the
    others."""
    out: list[dict[str, Any]] = []
    queues = [list(v) for _, v in sorted(per_column.items())]
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][: limit - len(out)]
        depth += 1
    return out


def _referenced(values: Mapping[str, list[Any]], columns: Iterable[str]) -> set[int]:
    found: set[int] = set()
    for column in columns:
        for value in values.get(column, []):
            items = value if isinstance(value, list) else [value]
            found.update(int(v) for v in items if v is not None)
    return found


def _group_views(views: Sequence[FeatureView]) -> tuple[dict[str, list[FeatureView]], list[str]]:
    groups: dict[str, list[FeatureView]] = {key: [] for key in ENTITY_KEYS}
    skipped: list[str] = []
    for view in sorted(views, key=lambda v: v.name):
        keys = [c.name for c in view.entity_columns]
        if len(keys) == 1 and keys[0] in groups:
            groups[keys[0]].append(view)
        else:
            skipped.append(view.name)
    return groups, skipped


def resolve_at(cfg: ParityConfig, until: Mapping[str, dt.datetime | None]) -> tuple[dt.datetime, str]:
    """T: the given time, else the end of the newest materialization interval."""
    if cfg.at is not None:
        return _utc(cfg.at), "given"
    ends = [t for t in until.values() if t is not None]
    if not ends:
        raise ParityError(
            "no view has a materialization interval in the registry (nothing to anchor T on); run "
            "`feed features materialize` or pass --at"
        )
    return max(ends), "materialization"


def run_parity(paths: FeedPaths, cfg: ParityConfig) -> ParityResult:
    """Sample entities, read online and offline at T, and count outcomes per view and feature."""
    from pipelines import feature_store

    fs = feature_store.applied_store(paths, cfg.variant, redis_connection=cfg.redis_connection)
    views = fs.list_feature_views()
    until = materialized_until(views)
    at, at_source = resolve_at(cfg, until)
    groups, skipped = _group_views(views)
    run = _Run(paths=paths, cfg=cfg, fs=fs, at=at)
    rngs = [np.random.default_rng([cfg.seed, i]) for i in range(3)]

    member_pool = set().union(*(source_keys(v, "member_id") for v in groups["member_id"]))
    members = sample_ids(member_pool, cfg.members, rngs[0])
    member_values = run.compare("member_id", members, groups["member_id"])

    referenced = _referenced(member_values, HISTORY_FEATURES)
    from_history = sample_ids(referenced, cfg.history_posts, rngs[1])
    post_pool = set().union(*(source_keys(v, "post_id") for v in groups["post_id"])) - set(from_history)
    random_posts = sample_ids(post_pool, cfg.posts, rngs[2])
    posts = sorted({*from_history, *random_posts})
    post_values = run.compare("post_id", posts, groups["post_id"])

    authors = sorted(_referenced(post_values, [AUTHOR_FEATURE]))
    run.compare("author_id", authors, groups["author_id"])
    if not run.per_view:
        raise ParityError(f"nothing compared: no entities sampled for the views of {paths.home}")

    return ParityResult(
        at=at,
        at_source=at_source,
        materialized_until={k: v.isoformat() if v else None for k, v in sorted(until.items())},
        entities={"member_id": members, "post_id": posts, "author_id": authors},
        history_posts=len(from_history),
        random_posts=len(random_posts),
        per_view=dict(sorted(run.per_view.items())),
        per_feature=dict(sorted(run.per_feature.items())),
        view_entity={v.name: key for key, vs in groups.items() for v in vs},
        read_by=consumers(fs),
        skipped_views=skipped,
        examples=spread(run.mismatches, cfg.max_examples),
        other_examples=spread(run.others, cfg.max_examples),
    )


# --- report


def config_dict(cfg: ParityConfig) -> dict[str, Any]:
    out = asdict(cfg)
    out["at"] = cfg.at.isoformat() if cfg.at else None
    out.pop("redis_connection")  # may carry a password
    return out


def explain(result: ParityResult) -> list[str]:
    """One line per view with non-equal pairs: the counts by reason, in words."""
    words = {
        "offline_only:not_in_online_store": "not in the online store (never materialized or pushed)",
        "offline_only:online_value_null": "online row present but the value is null",
        "online_only:ttl_expired": "TTL expired at T: the online store still serves it, training would not",
        "online_only:online_newer_than_at": "online row newer than T (pushed/materialized after T)",
        "online_only:offline_missing": "no offline row valid at T (none, or older than the TTL while the "
        "online copy carries a later stamp, e.g. a push stamped with the push time)",
        "mismatch:online_newer_than_at": "online row newer than T, different value (pushed after T)",
        "mismatch:value_differs": "online row at or before T with a different value",
    }
    lines = []
    for view, counts in result.per_view.items():
        readers = sorted({r for f, rs in result.read_by.items() if f.startswith(f"{view}__") for r in rs})
        read_by = f"; read by {', '.join(readers)}" if readers else "; read by no service"
        for key, n in sorted(counts.reasons.items()):
            lines.append(f"{view}: {n} × {words.get(key, key)} [{key}]{read_by}")
        if counts.online_newer_than_at:
            lines.append(
                f"{view}: {counts.online_newer_than_at} online values stamped after T (pushed or "
                f"materialized later), {counts.equal} equal in all"
            )
    return lines


def write_reports(
    result: ParityResult, cfg: ParityConfig, *, reports_dir: Path = REPORTS_DIR
) -> tuple[Path, Path]:
    """``reports/parity.json`` (summary/config/device/git_commit/created_at/examples/details) and
    ``reports/parity.md``."""
    from feed.reports import device_name, git_commit

    config = config_dict(cfg) | {
        "materialized_until": result.materialized_until,
        "history_posts_sampled": result.history_posts,
        "random_posts_sampled": result.random_posts,
    }
    doc = {
        "summary": result.summary(),
        "config": config,
        "device": device_name(),
        "git_commit": git_commit(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "notes": explain(result),
        "examples": result.examples,
        "details": {
            "per_feature": {
                name: {**c.as_dict(), "read_by": result.read_by.get(name, [])}
                for name, c in result.per_feature.items()
            },
            "other_examples": result.other_examples,
            "skipped_views": result.skipped_views,
            "entities": result.entities,
        },
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / "parity.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md_path = path.with_suffix(".md")
    md_path.write_text(markdown(result, cfg) + "\n")
    return path, md_path


def markdown(result: ParityResult, cfg: ParityConfig) -> str:
    s = result.summary()
    source = "end of the last materialization interval" if result.at_source == "materialization" else "given"
    md = [
        "# Online/offline parity (training–serving skew)",
        "",
        f"T = {s['at']} ({source}); {s['members']} members, {s['posts']} posts ({result.history_posts} "
        f"from their histories + {result.random_posts} random), {s['authors']} authors; seed {cfg.seed}. "
        "Online: the service's SQLite read; offline: `get_historical_features` (DuckDB) at T.",
        "",
        "| view | entity | compared | equal | mismatch | online-only | offline-only | both null |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for view, c in result.per_view.items():
        md.append(
            f"| {view} | {result.view_entity[view]} | {c.compared} | {c.equal} | {c.mismatch} | "
            f"{c.online_only} | {c.offline_only} | {c.both_null} |"
        )
    md.append(
        f"| **all** | | {s['features_compared']} | {s['equal']} | {s['mismatches']} | {s['online_only']} | "
        f"{s['offline_only']} | {s['both_null']} |"
    )
    md += [
        "",
        f"Mismatch rate {s['mismatch_rate']:.4%}; skew rate (mismatch + one-sided) {s['skew_rate']:.4%}. "
        f"Floats within rtol {cfg.rtol:g} / atol {cfg.atol:g}; "
        f"timestamps at {cfg.timestamp_resolution_s:g} s "
        f"({s['timestamps_within_resolution']} equal only at that resolution: Feast keeps whole seconds "
        "online).",
    ]
    notes = explain(result)
    if notes:
        md += ["", "## Why", "", *[f"- {line}" for line in notes]]
    if result.examples:
        md += ["", "## Mismatch examples", "", "| view | feature | entity | online | offline | reason |"]
        md.append("|---|---|---|---|---|---|")
        for e in result.examples[:10]:
            entity = ", ".join(f"{k}={v}" for k, v in e["entity"].items())
            md.append(
                f"| {e['view']} | {e['feature']} | {entity} | {_cell(e['online'])} | {_cell(e['offline'])} "
                f"| {e['reason']} |"
            )
    return "\n".join(md)


def _cell(value: Any) -> str:
    text = json.dumps(value, default=str)
    return (text[:60] + "…") if len(text) > 60 else text
