"""Fixtures for the Feast tests: a home with fabricated feature tables, applied and materialized once."""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass
from types import ModuleType

import pytest

from feed.config import FeedPaths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def loopback_port() -> int:
    """A port free on 127.0.0.1 right now (servers started by tests bind loopback only)."""
    return free_port()


@dataclass(frozen=True)
class Home:
    paths: FeedPaths
    fab: object  # fabricate.Fabricated
    end: dt.datetime  # materialized up to here


@pytest.fixture(scope="module")
def materialized_home(tmp_path_factory: pytest.TempPathFactory, fabricate: ModuleType) -> Home:
    """Fabricated tables, `apply` and `materialize_incremental` on the embedded default (SQLite + DuckDB)."""
    from pipelines import feature_store

    paths = FeedPaths(home=tmp_path_factory.mktemp("feast_home"))
    fab = fabricate.write_feature_tables(paths)
    end = fab.t + dt.timedelta(minutes=30)
    feature_store.apply(paths)
    feature_store.materialize_incremental(paths, end)
    return Home(paths=paths, fab=fab, end=end)
