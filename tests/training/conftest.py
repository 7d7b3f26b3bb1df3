"""Fixtures shared by the training tests: the retrieval set built on ``tiny`` (once per run)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from feed.config import FeedPaths

if TYPE_CHECKING:
    from training.data.retrieval_set import RetrievalSetConfig


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
