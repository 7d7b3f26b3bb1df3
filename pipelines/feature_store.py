"""Feast operations for the CLI, training and serving: build the store for a home, apply, materialize, read.

The definitions live in ``feature_repo/feature_definitions.py`` and the infrastructure choices in
``feature_repo/feature_store.yaml`` (+ ``variants/``). Here the YAML is loaded and its per-home parts are
replaced (registry and SQLite files under ``FeedPaths.feast``), so one checkout serves any number of homes
(tests, benchmarks, the real data) without editing YAML. Feast is imported inside functions: it costs ~5 s.

Variants: ``local`` (SQLite online, DuckDB offline over Delta — the embedded default), ``redis`` (Redis
online) and ``spark`` (Spark offline store over Parquet exports of the feature tables, see
``variants/spark.yaml``).
Each variant has its own registry file, because ``apply`` sets up that variant's online store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import logging
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from feed.config import EMBEDDING_TABLES, FEATURE_REPO_DIR, FEATURE_TABLES, FeedPaths
from pipelines import delta_io, schemas

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureService, FeatureStore
    from feast.repo_config import RepoConfig

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("local", "redis", "spark")
DEFINITIONS_FILE = FEATURE_REPO_DIR / "feature_definitions.py"
SERVICES: tuple[str, ...] = ("retrieval_member_v1", "retrieval_post_v1", "ranking_v1")


class FeatureStoreError(RuntimeError):
    """A store operation cannot run as asked (unknown variant, missing tables, not applied/materialized)."""


@dataclass(frozen=True)
class StoreOptions:
    """What differs between deployments of one variant. ``redis_connection`` overrides the YAML's
    ``host:port[,password=...]`` (tests and the benchmark start their own server on a free port)."""

    variant: str = "local"
    redis_connection: str | None = None

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise FeatureStoreError(f"unknown Feast variant {self.variant!r}; expected one of {VARIANTS}")


def yaml_path(variant: str) -> Path:
    """The feature_store.yaml of ``variant`` inside feature_repo/."""
    StoreOptions(variant)  # validates the name
    if variant == "local":
        return FEATURE_REPO_DIR / "feature_store.yaml"
    return FEATURE_REPO_DIR / "variants" / f"{variant}.yaml"


def export_dir(paths: FeedPaths) -> Path:
    """Default folder of the Parquet exports the Spark variant reads (one sub-folder per table)."""
    return paths.feast / "parquet"


def definitions_env(paths: FeedPaths, variant: str = "local") -> dict[str, str]:
    """Environment the feature definitions read at import (``FEED_LAKE_DIR`` …) for ``paths``/``variant``;
    also what to export before running the ``feast`` CLI against another home."""
    env = {"FEED_LAKE_DIR": str(paths.lake), "FEED_SOURCE_FORMAT": "delta"}
    if variant == "spark":
        env |= {"FEED_SOURCE_FORMAT": "parquet", "FEED_EXPORT_DIR": str(export_dir(paths))}
    return env


def config_dict(paths: FeedPaths, options: StoreOptions) -> dict[str, Any]:
    """The variant's YAML with registry and SQLite paths moved under ``paths.feast`` (absolute)."""
    raw = yaml.safe_load(yaml_path(options.variant).read_text())
    registry = dict(raw["registry"]) if isinstance(raw["registry"], dict) else {"path": raw["registry"]}
    registry["path"] = str(paths.feast / Path(registry["path"]).name)
    raw["registry"] = registry
    online = dict(raw.get("online_store") or {"type": "sqlite", "path": "online_store.db"})
    if online.get("type", "sqlite") == "sqlite":
        online["path"] = str(paths.feast / Path(online["path"]).name)
    elif options.redis_connection is not None:
        online["connection_string"] = options.redis_connection
    raw["online_store"] = online
    return raw


def repo_config(paths: FeedPaths, options: StoreOptions) -> RepoConfig:
    from feast.repo_config import RepoConfig

    config = RepoConfig(**config_dict(paths, options))
    config.repo_path = FEATURE_REPO_DIR
    return config


def write_config(paths: FeedPaths, variant: str = "local", *, redis_connection: str | None = None) -> Path:
    """Write the resolved YAML to ``paths.feast/feature_store.<variant>.yaml`` for the ``feast`` CLI:
    ``FEED_LAKE_DIR=... feast -c feature_repo -f <that file> apply`` then works on this home."""
    options = StoreOptions(variant, redis_connection)
    paths.feast.mkdir(parents=True, exist_ok=True)
    out = paths.feast / f"feature_store.{variant}.yaml"
    out.write_text(yaml.safe_dump(config_dict(paths, options), sort_keys=False))
    return out


def store(paths: FeedPaths, variant: str = "local", *, redis_connection: str | None = None) -> FeatureStore:
    """A FeatureStore for ``paths`` (a cheap object; registry and online connections open lazily)."""
    _quiet_feast_imports()
    from feast import FeatureStore

    paths.feast.mkdir(parents=True, exist_ok=True)  # SQLite creates its file, not the parent folder
    return FeatureStore(config=repo_config(paths, StoreOptions(variant, redis_connection)))


def applied_store(
    paths: FeedPaths, variant: str = "local", *, redis_connection: str | None = None
) -> FeatureStore:
    """:func:`store`, refusing with a clear message when ``apply`` never ran for this home and variant."""
    fs = store(paths, variant, redis_connection=redis_connection)
    registry = Path(fs.config.registry.path)
    if not registry.exists() or not fs.list_feature_views():
        raise FeatureStoreError(
            f"no feature views registered in {registry}; run `feed features apply --variant {variant}` first"
        )
    return fs


# --- definitions


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block and restore the previous values after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def load_definitions(paths: FeedPaths, variant: str = "local") -> list[Any]:
    """Import feature_definitions.py afresh for this home and return its Feast objects.

    ``feast apply`` uses ``importlib.import_module``, which caches the module: a second home in the same
    process would silently get the first home's source paths. Executing the file under a fresh module name
    re-reads ``FEED_LAKE_DIR`` every time."""
    _quiet_feast_imports()
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource, PushSource

    with _env(definitions_env(paths, variant)):
        spec = importlib.util.spec_from_file_location(
            f"feed_feature_repo_{uuid.uuid4().hex}", DEFINITIONS_FILE
        )
        if spec is None or spec.loader is None:
            raise FeatureStoreError(f"cannot load Feast definitions from {DEFINITIONS_FILE}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    objects: list[Any] = []
    for value in vars(module).values():
        if isinstance(value, Entity | DataSource | FeatureView | FeatureService) and not any(
            value is seen for seen in objects
        ):
            objects.append(value)
            if isinstance(value, PushSource) and not any(value.batch_source is seen for seen in objects):
                objects.append(value.batch_source)
    return objects


def ensure_embedding_tables(paths: FeedPaths) -> list[str]:
    """Create empty ``member_embeddings`` / ``post_embeddings`` Delta tables when absent, so the embedding
    views' sources exist before any model has produced vectors. Returns the tables it created."""
    created = []
    for name in EMBEDDING_TABLES:
        path = paths.table(name)
        if not delta_io.exists(path):
            schema = schemas.FEATURE_SCHEMAS[name]
            delta_io.write(path, schema.empty_table(), mode="overwrite", schema=schema)
            created.append(name)
    return created


def missing_tables(paths: FeedPaths) -> list[str]:
    """Feature tables (embedding tables excluded: see :func:`ensure_embedding_tables`) not in the lake."""
    return [name for name in FEATURE_TABLES if not delta_io.exists(paths.table(name))]


def apply(paths: FeedPaths, variant: str = "local", *, redis_connection: str | None = None) -> list[str]:
    """Register the definitions for this home (idempotent) and remove views/services no longer defined.
    Returns the names of the feature views registered."""
    _quiet_feast_imports()
    from feast import FeatureView

    ensure_embedding_tables(paths)
    if variant == "spark":
        export_parquet_for_spark(paths)
    objects = load_definitions(paths, variant)
    fs = store(paths, variant, redis_connection=redis_connection)
    defined = {(type(o).__name__, o.name) for o in objects}
    stale: list[Any] = [
        o
        for o in [*fs.list_feature_views(), *fs.list_feature_services()]
        if (type(o).__name__, o.name) not in defined
    ]
    fs.apply(objects, objects_to_delete=stale, partial=not stale)
    views = sorted(o.name for o in objects if isinstance(o, FeatureView))
    log.info("applied %d objects (%d views) to %s; removed %s", len(objects), len(views), variant, stale)
    return views


def materialize_incremental(
    paths: FeedPaths,
    end: dt.datetime,
    variant: str = "local",
    *,
    redis_connection: str | None = None,
) -> dict[str, dt.datetime]:
    """Load every view's newest rows up to ``end`` (UTC) into the online store, starting where the view's last
    run stopped. Returns each view's start time.

    A view never materialized starts at ``end - ttl``. Feast's own ``materialize_incremental`` starts at
    ``now - ttl`` instead, which loads nothing when the data's clock is not the wall clock (a synthetic data
    set ending last month, a replay): anchoring on ``end`` makes the online store equal to "the features as
    of ``end``" either way."""
    missing = missing_tables(paths)
    if missing:
        raise FeatureStoreError(
            f"feature tables missing under {paths.lake}: {missing}; run `feed features build` first"
        )
    if end.tzinfo is None:
        raise FeatureStoreError(f"materialize end {end.isoformat()} needs a time zone (UTC)")
    if variant == "spark":
        export_parquet_for_spark(paths)
    fs = applied_store(paths, variant, redis_connection=redis_connection)
    views = fs.list_feature_views()
    starts: dict[str, dt.datetime] = {}
    for view in views:
        start = view.most_recent_end_time or end - view.ttl
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
        if start >= end:
            log.info("%s is already materialized up to %s; skipped", view.name, start.isoformat())
            continue
        fs.materialize(start_date=start, end_date=end, feature_views=[view.name])
        starts[view.name] = start
    return starts


def _features(
    fs: FeatureStore, service_or_features: str | FeatureService | Sequence[str]
) -> FeatureService | list[str]:
    """A feature service (by name or as resolved before), or a list of ``view:feature`` references."""
    from feast import FeatureService
    from feast.errors import FeatureServiceNotFoundException

    if isinstance(service_or_features, FeatureService):
        return service_or_features
    if isinstance(service_or_features, str):
        try:
            return fs.get_feature_service(service_or_features)
        except FeatureServiceNotFoundException as exc:
            known = [s.name for s in fs.list_feature_services()]
            raise FeatureStoreError(
                f"no feature service {service_or_features!r} in the registry; known: {known}"
            ) from exc
    return list(service_or_features)


def feature_service(fs: FeatureStore, name: str) -> FeatureService:
    """Resolve a service once (serving and benchmarks pass the object to :func:`online_features`)."""
    resolved = _features(fs, name)
    if isinstance(resolved, list):
        raise TypeError(f"expected a feature service name, got {name!r}")
    return resolved


def required_entity_columns(fs: FeatureStore, features: FeatureService | Sequence[str]) -> list[str]:
    """Join keys entity rows must carry for ``features`` (``ranking_v1``: member, post and author)."""
    if isinstance(features, str):
        raise TypeError("resolve a service name with _features() first")
    if hasattr(features, "feature_view_projections"):
        views = {p.name for p in features.feature_view_projections}
    else:
        views = {ref.split(":", 1)[0] for ref in features}
    keys = {c.name for name in views for c in fs.get_feature_view(name).entity_columns}
    return sorted(keys)


def _check_entity_columns(features: Any, required: Sequence[str], given: Any, what: str) -> None:
    """``given``: anything supporting ``in`` over column names (a row mapping, a set of columns)."""
    missing = [key for key in required if key not in given]
    if missing:
        name = getattr(features, "name", "these features")
        raise FeatureStoreError(f"{name} needs entity column(s) {missing}; {what} has {sorted(given)}")


@dataclass(frozen=True)
class OnlineReader:
    """A store, a resolved service (or feature list) and its join keys, prepared once for many reads.

    Resolving a service and its views' join keys rebuilds Feast objects from the registry proto (~2 ms of
    typeguard-checked constructors); a read itself is ~0.3 ms on SQLite. Serving keeps one reader per service.
    """

    fs: FeatureStore
    features: FeatureService | list[str]
    required: tuple[str, ...]

    def read(self, entity_rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """Online values, column-wise (``{"member_id": [...], "member_profile__headline": [...]}``)."""
        for i, row in enumerate(entity_rows):
            _check_entity_columns(self.features, self.required, row, f"entity row {i}")
        response = self.fs.get_online_features(
            features=self.features, entity_rows=[dict(row) for row in entity_rows], full_feature_names=True
        )
        return response.to_dict()


def online_reader(
    paths: FeedPaths,
    service_or_features: str | FeatureService | Sequence[str],
    variant: str = "local",
    *,
    redis_connection: str | None = None,
    fs: FeatureStore | None = None,
) -> OnlineReader:
    """Prepare reads of ``service_or_features``; pass ``fs`` to share one store between readers."""
    fs = fs if fs is not None else applied_store(paths, variant, redis_connection=redis_connection)
    features = _features(fs, service_or_features)
    return OnlineReader(fs=fs, features=features, required=tuple(required_entity_columns(fs, features)))


def online_features(
    paths: FeedPaths,
    service_or_features: str | FeatureService | Sequence[str],
    entity_rows: Sequence[Mapping[str, Any]],
    variant: str = "local",
    *,
    redis_connection: str | None = None,
) -> dict[str, list[Any]]:
    """Online values, column-wise (``{"member_id": [...], "member_profile__headline": [...]}``).

    Names are always ``view__feature``: services span views that share feature names (``embedding``,
    ``model_version``), which Feast rejects (and ``feast serve`` answers 500 for) without full names.
    For repeated reads use :func:`online_reader` once and ``reader.read(rows)``."""
    reader = online_reader(paths, service_or_features, variant, redis_connection=redis_connection)
    return reader.read(entity_rows)


def historical_features(
    paths: FeedPaths,
    entity_df: pd.DataFrame,
    service_or_features: str | Sequence[str],
    variant: str = "local",
) -> pd.DataFrame:
    """Point-in-time join: for each entity row at ``event_timestamp`` t, every view's latest row with
    event_timestamp <= t and newer than t - ttl (ties broken by ``created``). Names are ``view__feature``."""
    if "event_timestamp" not in entity_df.columns:
        raise FeatureStoreError(
            f"entity_df needs an 'event_timestamp' column; it has {list(entity_df.columns)}"
        )
    if variant == "spark" and not export_dir(paths).exists():
        export_parquet_for_spark(paths)
    fs = applied_store(paths, variant)
    features = _features(fs, service_or_features)
    required = required_entity_columns(fs, features)
    _check_entity_columns(features, required, set(entity_df.columns), "entity_df")
    job = fs.get_historical_features(entity_df=entity_df, features=features, full_feature_names=True)
    return _utc_aware(job.to_df())


def _utc_aware(frame: pd.DataFrame) -> pd.DataFrame:
    """The Spark store returns naive (UTC) timestamps, DuckDB aware ones: make every variant answer alike."""
    import pandas as pd

    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_datetime64_any_dtype(series) and series.dt.tz is None:
            frame[column] = series.dt.tz_localize("UTC")
    return frame


def export_parquet_for_spark(paths: FeedPaths, out_dir: Path | None = None) -> Path:
    """Copy each feature table's current snapshot to ``out_dir/<table>/part-0.parquet`` (replacing what was
    there) for the Spark offline-store variant, which cannot read Delta without the delta-spark jars."""
    import pyarrow.parquet as pq

    out = out_dir or export_dir(paths)
    ensure_embedding_tables(paths)
    for name in (*FEATURE_TABLES, *EMBEDDING_TABLES):
        src = paths.table(name)
        if not delta_io.exists(src):
            continue
        dest = out / name
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("*.parquet"):
            old.unlink()
        pq.write_table(delta_io.read(src), dest / "part-0.parquet")
    return out


def _quiet_feast_imports() -> None:
    """``import feast`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh temp dir, and a prometheus-client
    imported after that runs in multiprocess mode for the whole process (STACK.md). Importing it first keeps
    metrics in-process; the variable then only matters to child processes (``feast serve``'s workers)."""
    import prometheus_client  # noqa: F401
