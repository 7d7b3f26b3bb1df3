"""Fixtures for the nearline tests: a small home (fabricated feature tables, an untrained 1-layer encoder
promoted as the current model, Feast applied) and a Milvus Lite server process with an empty collection for
that model version. Nothing is trained and no Spark runs: the fixtures cost a few seconds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from feed.config import FeedPaths

MODEL_VERSION = "nl-test"


@dataclass(frozen=True)
class NearlineHome:
    paths: FeedPaths
    model_version: str
    dim: int


def save_untrained_version(paths: FeedPaths, name: str) -> int:
    """An untrained 1-layer MiniLM saved and promoted as a complete model version; returns its dimension."""
    from training.retrieval.model import DualEncoder, EncoderConfig
    from training.retrieval.train import METRICS_FILE, promote

    root = paths.artifacts / "retrieval"
    out = root / name
    model = DualEncoder(EncoderConfig(num_layers=1, max_len_member=128, max_len_post=64))
    model.save(out, {"version": name})
    (out / METRICS_FILE).write_text(json.dumps({"version": name, "completed": True}))
    promote(root, name)
    return model.dim


@pytest.fixture(scope="session")
def nearline_template(tmp_path_factory: pytest.TempPathFactory, fabricate: ModuleType) -> NearlineHome:
    """Built once per run; tests copy it (:func:`copy_home`) because the workers write to the lake."""
    paths = FeedPaths(home=tmp_path_factory.mktemp("nearline_template"))
    fabricate.write_feature_tables(paths)
    dim = save_untrained_version(paths, MODEL_VERSION)
    return NearlineHome(paths, MODEL_VERSION, dim)


def copy_home(template: NearlineHome, dest: Path, *, feast: bool = True) -> NearlineHome:
    """A writable copy (lake, model) at ``dest``; ``feast`` → the Feast definitions applied for it (what
    the index worker's pushes need; ≈ 1–5 s)."""
    from pipelines import feature_store

    paths = FeedPaths(home=dest)
    shutil.copytree(template.paths.data, paths.data)
    shutil.copytree(template.paths.artifacts, paths.artifacts)
    if feast:
        feature_store.apply(paths)
    return NearlineHome(paths, template.model_version, template.dim)


@pytest.fixture
def nearline_home(nearline_template: NearlineHome, tmp_path: Path) -> NearlineHome:
    """A writable home without Feast (publish, prompt and embed tests)."""
    return copy_home(nearline_template, tmp_path / "home", feast=False)


def start_milvus(home: NearlineHome) -> None:
    """This home's Milvus Lite server (a child process) with an empty HNSW collection posts_<version>."""
    from serving.index import lite
    from serving.index.milvus import (
        IndexConfig,
        collection_name,
        connect,
        create_posts_collection,
        create_vector_index,
    )

    server = lite.start_server(lite.data_dir(home.paths), run=lite.run_dir(home.paths))
    client = connect(server.uri)
    name = collection_name(home.model_version)
    config = IndexConfig(uri=server.uri, index_type="HNSW")
    create_posts_collection(client, name, home.model_version, home.dim, config)
    create_vector_index(client, name, config)
    client.load_collection(name)
    client.close()


@pytest.fixture
def milvus_home(nearline_home: NearlineHome) -> Iterator[NearlineHome]:
    from serving.index import lite

    start_milvus(nearline_home)
    yield nearline_home
    lite.stop_server(nearline_home.paths)
