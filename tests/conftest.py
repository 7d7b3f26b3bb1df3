"""Shared fixtures. Unmarked tests need no network, GPU or long-running server."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from feed.config import FeedPaths, SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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
