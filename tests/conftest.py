"""Shared fixtures. Unmarked tests need no network, GPU or long-running server."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from feed.config import FeedPaths, SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipelines.ranking_set import RankingSetConfig
    from training.data.retrieval_set import RetrievalSetConfig

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Importing feast would otherwise point prometheus-client at a fresh multiprocess temp dir (STACK.md).
os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "true")
# Without a GPU the Triton kernels run in Triton's CPU interpreter (STACK.md); triton reads this when a kernel
# module is first imported, which the kernels package does lazily, i.e. after this line.
if importlib.util.find_spec("torch") is not None:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, no persistence (``host:port``); killed at the end.
    Skipped where Debian's redis-server is missing, except in CI, where it is required."""
    from pipelines.redis_local import RedisNotInstalled, local_redis

    try:
        with local_redis(tmp_path) as server:
            yield server.address
    except RedisNotInstalled:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; the CI script must `apt-get install -y redis-server`")
        pytest.skip("redis-server not installed (apt-get install -y redis-server); required in CI")


@pytest.fixture
def feed_paths(tmp_path: Path) -> FeedPaths:
    """An empty project home (data/, artifacts/) under pytest's tmp dir."""
    return FeedPaths(home=tmp_path)


@pytest.fixture(scope="session")
def fabricate() -> ModuleType:
    """The feature-table fabricator (tests/feature_repo/fabricate.py) for the Feast and docs tests, loaded
    by path: tests/ is not a package (pytest --import-mode=importlib)."""
    name = "feed_tests_fabricate"
    if name not in sys.modules:
        path = Path(__file__).parent / "feature_repo" / "fabricate.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark session for the whole run (start-up costs ~10 s)."""
    from pipelines.spark import get_spark

    cfg = SparkConfig(master="local[2]")
    session = get_spark(cfg)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_raw_lake(tmp_path_factory: pytest.TempPathFactory) -> FeedPaths:
    """A project home whose lake holds the ``tiny`` synthetic data set (seed 0), ingested: raw_*,
    audit_attributes and truth_* tables (≈1k members, 2.5k posts, ≈100k impressions; ~2 s). Read-only:
    tests that write to the lake need their own home."""
    from datetime import timedelta

    from pipelines.ingest import ingest
    from pipelines.synth import synth_config, write_synth

    config = synth_config("tiny", seed=0)
    paths = FeedPaths(home=tmp_path_factory.mktemp("tiny_raw_lake"))
    src = paths.landing / "synth-tiny-0"
    write_synth(config, src)
    # "now" = the end of the synthetic period, so the future-timestamp rule holds whatever the clock says.
    ingest(paths, src, now=config.start + timedelta(days=config.days))
    return paths


@pytest.fixture(scope="session")
def tiny_feature_home(tiny_raw_lake: FeedPaths, tmp_path_factory: pytest.TempPathFactory) -> FeedPaths:
    """``tiny_raw_lake`` plus every feature table built by Spark through the gate and the Feast definitions
    applied (≈ 60 s, once per run). Read-only: a test that writes copies ``lake`` into its own home."""
    import shutil

    from pipelines import feature_store
    from pipelines.features.build import build_features

    paths = FeedPaths(home=tmp_path_factory.mktemp("tiny_feature_home"))
    shutil.copytree(tiny_raw_lake.lake, paths.lake)
    report = build_features(paths, SparkConfig(master="local[2]"))
    assert report.passed, [t.gate.summary for t in report.tables if not t.passed]
    feature_store.apply(paths)
    return paths


# --- training sets built on tiny (once per run each): the retrieval set and the GR ranking set --------------


@dataclass(frozen=True)
class BuiltSet:
    paths: FeedPaths
    path: Path
    cfg: RetrievalSetConfig


@pytest.fixture(scope="session")
def built_set(tiny_feature_home: FeedPaths, tmp_path_factory: pytest.TempPathFactory) -> BuiltSet:
    """The retrieval set on ``tiny`` (features from the shared ``tiny_feature_home``; ≈ 15 s of set building).
    The all-impressions cap is raised so the superset property can be checked on every anchor."""
    from pipelines import feature_store
    from training.data.retrieval_set import RetrievalSetConfig, build_retrieval_set

    paths = FeedPaths(home=tmp_path_factory.mktemp("retrieval_home"))
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    feature_store.apply(paths)
    cfg = RetrievalSetConfig(name="t", all_history_cap=4096)
    return BuiltSet(paths, build_retrieval_set(paths, cfg), cfg)


# --- the GR ranking set on ``tiny`` (pipelines/ranking_set.py), with planted rows that make point-in-time
# mistakes visible


@dataclass(frozen=True)
class PlantedRows:
    """Feature rows added to the copied lake before the ranking-set build (see :func:`ranking_set`)."""

    version: str  # promoted retrieval version (artifacts/retrieval/CURRENT)
    member_id: int  # member with planted member_embeddings rows
    member_emb_at: dt.datetime  # the promoted version's row is valid from here (for member_emb_ttl)
    member_emb: tuple[float, ...]
    member_emb_future: tuple[float, ...]  # a row stamped after the data ends: must never be used
    member_emb_ttl: dt.timedelta
    post_vectors: dict[int, tuple[float, ...]]  # post_id → promoted-version vector
    author_id: int  # author with a mid-day author_stats row
    author_stats_at: dt.datetime
    follower_percentile: int


@dataclass(frozen=True)
class BuiltRankingSet:
    paths: FeedPaths
    path: Path
    cfg: RankingSetConfig
    planted: PlantedRows


@pytest.fixture(scope="session")
def ranking_set(tiny_feature_home: FeedPaths, tmp_path_factory: pytest.TempPathFactory) -> BuiltRankingSet:
    """The GR ranking set on ``tiny`` (≈ 60 s of building on 2 cores), built once per run from a copy of
    ``tiny_feature_home`` whose lake gets planted rows first: member embeddings of the promoted version (one
    valid from mid-validation, one stamped after the data ends, one of another version), post embeddings for
    a few posts, and an author_stats row stamped in the middle of a day between two snapshots."""
    from pipelines import feature_store
    from pipelines.ranking_set import RankingSetConfig, build_ranking_set

    paths = FeedPaths(home=tmp_path_factory.mktemp("ranking_home"))
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    planted = _plant_rows(paths)
    feature_store.apply(paths)
    cfg = RankingSetConfig(name="t", max_targets=16, shards=2)  # small blocks: many cut sessions
    return BuiltRankingSet(paths, build_ranking_set(paths, cfg, SparkConfig(master="local[2]")), cfg, planted)


def _plant_rows(paths: FeedPaths) -> PlantedRows:
    import pandas as pd
    import pyarrow as pa

    from pipelines import delta_io, schemas

    version = "planted-v1"
    (paths.artifacts / "retrieval").mkdir(parents=True, exist_ok=True)
    (paths.artifacts / "retrieval" / "CURRENT").write_text(version + "\n")
    imp = delta_io.read(paths.table("raw_impressions"), columns=["member_id", "post_id", "event_timestamp"])
    imp = imp.to_pandas()
    end = imp["event_timestamp"].max().ceil("D")
    created = pd.Timestamp("2026-11-01", tz="UTC")

    # The heaviest member: examples in every split. Promoted row valid from 4 days before the data's end.
    member = int(imp["member_id"].value_counts().index[0])
    member_at = end - pd.Timedelta(days=4, hours=5)
    emb, future = (1.0, 2.0, 3.0, 4.0), (9.0, 9.0, 9.0, 9.0)
    rows = [
        (member, "old-v0", (5.0, 5.0, 5.0, 5.0), end - pd.Timedelta(days=20)),  # other version: dropped
        (member, version, emb, member_at),
        (member, version, future, end + pd.Timedelta(days=1)),  # an export after the data: never valid
    ]
    table = pa.table(
        {
            "member_id": [r[0] for r in rows],
            "model_version": [r[1] for r in rows],
            "embedding": [list(r[2]) for r in rows],
            "event_timestamp": [r[3] for r in rows],
            "created": [created] * len(rows),
        }
    )
    delta_io.write(paths.table("member_embeddings"), table, mode="append", schema=schemas.EMBEDDING_MEMBER)

    posts = sorted(int(p) for p in imp["post_id"].value_counts().index[:5])
    vectors = {p: (float(p), 0.5, -1.0) for p in posts}
    table = pa.table(
        {
            "post_id": [*posts, posts[0]],
            "model_version": [version] * len(posts) + ["old-v0"],
            "embedding": [list(v) for v in vectors.values()] + [[7.0, 7.0, 7.0]],
            "event_timestamp": [end] * (len(posts) + 1),
            "created": [created] * (len(posts) + 1),
        }
    )
    delta_io.write(paths.table("post_embeddings"), table, mode="append", schema=schemas.EMBEDDING_POST)

    # An author_stats row stamped mid-day (between the daily snapshots) for the author most impressed on a
    # validation-window day, at the median impression time of that author that day.
    catalog = delta_io.read(paths.table("post_content"), columns=["post_id", "author_id"]).to_pandas()
    day = end - pd.Timedelta(days=10)
    on_day = imp[(imp["event_timestamp"] >= day) & (imp["event_timestamp"] < day + pd.Timedelta(days=1))]
    on_day = on_day.merge(catalog, on="post_id")
    author = int(on_day["author_id"].value_counts().index[0])
    at = (
        on_day.loc[on_day["author_id"] == author, "event_timestamp"]
        .sort_values()
        .iloc[int((on_day["author_id"] == author).sum()) // 2]
        .floor("s")
    )
    stats = delta_io.read(paths.table("author_stats")).to_pandas()
    row = stats[(stats["author_id"] == author) & (stats["event_timestamp"] <= at)].iloc[[-1]].copy()
    row["follower_percentile"] = 77 if int(row["follower_percentile"].iloc[0]) != 77 else 78
    row["event_timestamp"] = at
    row["created"] = created
    delta_io.write(
        paths.table("author_stats"),
        pa.Table.from_pandas(row, preserve_index=False),
        mode="append",
        schema=schemas.AUTHOR_STATS,
    )
    return PlantedRows(
        version=version,
        member_id=member,
        member_emb_at=member_at.to_pydatetime(),
        member_emb=emb,
        member_emb_future=future,
        member_emb_ttl=dt.timedelta(days=30),
        post_vectors=vectors,
        author_id=author,
        author_stats_at=at.to_pydatetime(),
        follower_percentile=int(row["follower_percentile"].iloc[0]),
    )


# --- a served home: trained, promoted, indexed and materialized (the online service's tests) ------------

SERVED_RETRIEVAL_CONF = {"profile": "tiny", "steps": 2, "max_train_anchors": 64, "max_eval_anchors": 64}
SERVED_RANKING_CONF = {"steps": 30, "token_budget": 8192, "d_model": 32, "n_layers": 1, "max_history": 256}


@pytest.fixture(scope="session")
def served_home(
    tiny_feature_home: FeedPaths, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FeedPaths]:
    """What ``make demo`` leaves behind, on ``tiny`` and small: the Feast online store materialized up to the
    data's end, a retrieval model (2 steps) promoted with its post/member embeddings exported, the Milvus
    collection + alias built (its Lite server runs for the session), member embeddings pushed, and a GR
    (30 steps) promoted (≈ 2–3 min, once per run). Read-only: a test that writes (erasure, impressions)
    copies the home and starts its own Milvus Lite server (``serving.index.lite.ensure_server``)."""
    from feed.config import FeedSettings
    from feed.flows import ranking, retrieval
    from feed.flows.features import impression_span
    from feed.flows.retrieval import RetrievalTrainingConfig
    from pipelines import feature_store
    from serving.index import lite

    reuse = os.environ.get("FEED_TEST_SERVED_HOME")  # a home an earlier run built (local iteration only)
    if reuse:
        paths = FeedPaths(home=Path(reuse))
        lite.ensure_server(paths)
        try:
            yield paths
        finally:
            lite.stop_server(paths)
        return
    paths = FeedPaths(home=tmp_path_factory.mktemp("served_home"))
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    feature_store.apply(paths)
    last = impression_span(paths)[1]
    end = dt.datetime.combine(last.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    feature_store.materialize_incremental(paths, end)
    version = "r" + end.strftime("%Y%m%d")
    cfg = RetrievalTrainingConfig.from_conf(SERVED_RETRIEVAL_CONF)
    built = retrieval.build_training_set(paths, version, cfg)
    retrieval.train_candidate(paths, Path(built["set"]), version, cfg)
    retrieval.promote(paths, version)
    retrieval.export_embeddings(paths, version, retrieval.export_time(paths, end))
    retrieval.backfill_index(paths, version)  # starts this home's Milvus Lite server
    retrieval.push_embeddings(paths, version)
    settings = FeedSettings(home=paths.home, spark_master="local[2]")
    out = ranking.build_set(end - dt.timedelta(days=7), end, SERVED_RANKING_CONF, settings=settings)
    candidate = ranking.train_candidate(
        out["set_path"], out["version"], SERVED_RANKING_CONF, settings=settings
    )
    ranking.promote_candidate(candidate["candidate"], out["version"], settings=settings)
    try:
        yield paths
    finally:
        lite.stop_server(paths)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the served home (≈ 3 min to build once) is slow and integration, whatever its own
    marks say: `make test` (not slow) never builds it; `make test-slow` (CI) runs them all."""
    for item in items:
        if "served_home" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.integration)
