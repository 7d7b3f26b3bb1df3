"""Fixtures for the retrieval-set tests: hand-made impressions (fast, exact) and a built set on ``tiny``."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from feed.config import FeedPaths, SparkConfig
from pipelines.schemas import ENGAGED_LABELS

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from training.data.retrieval_set import RetrievalSetConfig

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def at() -> Callable[..., dt.datetime]:
    """``at(day, hours=0)``: a UTC instant ``day`` days after T0."""
    return lambda day, hours=0.0: T0 + dt.timedelta(days=day, hours=hours)


@pytest.fixture
def impressions_frame() -> Callable[[list[tuple[Any, ...]]], pd.DataFrame]:
    """Rows ``(member, post, ts, session, engaged)`` → a raw_impressions-shaped frame (engaged → click)."""
    import pandas as pd

    def make(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
        frame = pd.DataFrame(
            [
                {
                    "event_id": i + 1,
                    "member_id": m,
                    "post_id": p,
                    "event_timestamp": ts,
                    "session_id": s,
                    **{label: int(e and label == "click") for label in ENGAGED_LABELS},
                }
                for i, (m, p, ts, s, e) in enumerate(rows)
            ]
        )
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
        return frame

    return make


@dataclass(frozen=True)
class BuiltSet:
    paths: FeedPaths
    path: Path
    cfg: RetrievalSetConfig


@pytest.fixture(scope="session")
def built_set(
    tiny_raw_lake: FeedPaths, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> BuiltSet:
    """tiny → Spark features → Feast apply → the retrieval set (≈ 60 s of Spark, ≈ 15 s of set building).
    The all-impressions cap is raised so the superset property can be checked on every anchor."""
    from pipelines import feature_store
    from pipelines.features.build import build_features
    from training.data.retrieval_set import RetrievalSetConfig, build_retrieval_set

    paths = FeedPaths(home=tmp_path_factory.mktemp("retrieval_home"))
    shutil.copytree(tiny_raw_lake.lake, paths.lake)
    report = build_features(paths, SparkConfig(master="local[2]"))
    assert report.passed
    feature_store.apply(paths)
    cfg = RetrievalSetConfig(name="t", all_history_cap=4096)
    return BuiltSet(paths, build_retrieval_set(paths, cfg), cfg)
