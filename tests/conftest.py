"""Shared fixtures. Unmarked tests need no network, GPU or long-running server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from feed.config import FeedPaths, SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Importing feast would otherwise point prometheus-client at a fresh multiprocess temp dir (STACK.md).
os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "true")


@pytest.fixture
def feed_paths(tmp_path: Path) -> FeedPaths:
    """An empty project home (data/, artifacts/) under pytest's tmp dir."""
    return FeedPaths(home=tmp_path)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark session for the whole run (start-up costs ~10 s)."""
    from pipelines.spark import get_spark

    cfg = SparkConfig(master="local[2]")
    session = get_spark(cfg)
    yield session
    session.stop()
