"""Small valid batches for every gated table, built from the canonical schemas.

Each builder returns rows that satisfy the table's suite, so a test can inject exactly one fault and know that
fault alone is what the gate reports.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from feed.config import FeedPaths
from pipelines.schemas import (
    DEVICE_TYPES,
    FEATURE_KEYS,
    FEATURE_SCHEMAS,
    LABELS,
    POST_ENGAGEMENT_COUNTS,
    POST_FORMATS,
    RAW_SCHEMAS,
)

SNAPSHOTS: tuple[datetime, ...] = tuple(datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2, 3))
NOW = datetime(2026, 1, 4, tzinfo=UTC)
N_KEYS = 40


def snapshot_predicate(snapshot: datetime) -> str:
    """The replace-where predicate a job uses to re-run one snapshot."""
    return f"event_timestamp = '{snapshot.isoformat()}'"


def _feature_value(table: str, name: str, key: int, snapshot: datetime) -> Any:
    """A valid value of column ``name`` for the row (key, snapshot)."""
    if name == FEATURE_KEYS[table]:
        return key
    if name in ("event_timestamp", "created_at"):
        return snapshot
    if name == "created":
        return snapshot + timedelta(hours=1)
    if table == "post_engagement":
        base = 100 + key
        if name in POST_ENGAGEMENT_COUNTS:
            return base
        if name.endswith("_percentile"):
            return 1 + key % 100
        window = name.rsplit("_", 1)[1]
        return base // {"28d": 2, "7d": 4, "1d": 8}[window]
    if table == "member_sequence":
        seconds = int(snapshot.timestamp())
        sequence = {
            "post_ids": [key, key + 1, key + 2],
            "actions": [0, 1 << (key % 6), 63],  # action codes 0..63
            "timestamps": [seconds - 300, seconds - 300, seconds - 1],  # oldest first, all before S
            "sequence_length": 3 + key,
        }
        if name in sequence:
            return sequence[name]
    simple = {
        "author_id": key + 1000,
        "followers": 10 * key,
        "posts_28d": key % 5,
        "engagements_28d": 3 * key,
        "follower_percentile": 1 + key % 100,
        "engagement_percentile": 100 - key % 100,
        "engaged_post_ids": [key, key + 1, key + 2],
        "history_length": 3 + key,
        "top_author_ids": [1, 2],
        "top_author_scores": [0.6, 0.4],
        "top_topics": ["ai", "data"],
        "top_topic_scores": [0.7, 0.3],
        "format": POST_FORMATS[key % len(POST_FORMATS)],
        "topic": "ai",
        "skills": ["python", "spark"],
        "education": ["BSc"],
        "work_history": ["Engineer @ Acme (Software), 2019-03 – present"],
        "model_version": "v1",
        "embedding": [0.1] * 8,
    }
    return simple.get(name, f"{name} {key}")


def feature_batch(
    table: str, *, keys: Sequence[int] = range(N_KEYS), snapshots: Sequence[datetime] = SNAPSHOTS[:1]
) -> pa.Table:
    """A valid batch of feature ``table``: one row per (key, snapshot)."""
    schema = FEATURE_SCHEMAS[table]
    rows = [(k, s) for s in snapshots for k in keys]
    return pa.table(
        {f.name: pa.array([_feature_value(table, f.name, k, s) for k, s in rows], f.type) for f in schema},
        schema=schema,
    )


def _raw_value(table: str, name: str, key: int) -> Any:
    if name in LABELS:
        return key % 2
    when = SNAPSHOTS[0] - timedelta(minutes=key)
    simple = {
        "event_id": key,
        "member_id": key,
        "post_id": key + 5000,
        "author_id": key + 1000,
        "session_id": key // 4,
        "device_type": DEVICE_TYPES[key % len(DEVICE_TYPES)],
        "position": key % 10,
        "request_id": None,
        "format": POST_FORMATS[key % len(POST_FORMATS)],
        "event_timestamp": when,
        "created_at": when,
        "skills": ["python"],
        "education": ["BSc"],
        "work_history": [],
    }
    return simple.get(name, f"{name} {key}")


def raw_batch(table: str, *, n: int = N_KEYS) -> pa.Table:
    """A valid batch of raw ``table`` with ``n`` distinct keys."""
    schema = RAW_SCHEMAS[table]
    return pa.table(
        {f.name: pa.array([_raw_value(table, f.name, k) for k in range(n)], f.type) for f in schema},
        schema=schema,
    )


def replace_column(
    batch: pa.Table, name: str, values: list[Any], type_: pa.DataType | None = None
) -> pa.Table:
    """``batch`` with column ``name`` replaced (schema relaxed to nullable so a test can inject nulls)."""
    index = batch.schema.get_field_index(name)
    column_type = type_ or batch.schema.field(name).type
    return batch.set_column(index, pa.field(name, column_type, nullable=True), pa.array(values, column_type))


def set_value(batch: pa.Table, name: str, row: int, value: Any) -> pa.Table:
    """``batch`` with one cell changed."""
    values = batch.column(name).to_pylist()
    values[row] = value
    return replace_column(batch, name, values)


@pytest.fixture(scope="module")
def published_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project home whose post_engagement table holds two clean snapshots (versions 0 and 1), published
    once per module through the gate; tests copy it rather than rebuilding it."""
    from pipelines.quality import gate_and_publish

    home = tmp_path_factory.mktemp("published")
    paths = FeedPaths(home=home)
    for number, snapshot in enumerate(SNAPSHOTS[:2]):
        result = gate_and_publish(
            "post_engagement",
            feature_batch("post_engagement", snapshots=[snapshot]),
            paths=paths,
            run_id=f"baseline-{number}",
            predicate=snapshot_predicate(snapshot),
            now=NOW,
        )
        assert result.passed, result.summary
    return home


@pytest.fixture
def published_paths(published_home: Path, tmp_path: Path) -> Iterator[FeedPaths]:
    """A private copy of :func:`published_home` (gate tests write to it)."""
    home = tmp_path / "home"
    shutil.copytree(published_home, home)
    yield FeedPaths(home=home)
    shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class QualityKit:
    """The builders above, handed to tests as a fixture (``--import-mode=importlib`` makes importing a
    conftest module by name unreliable)."""

    snapshots: tuple[datetime, ...] = SNAPSHOTS
    now: datetime = NOW
    n_keys: int = N_KEYS
    feature_batch: Callable[..., pa.Table] = feature_batch
    raw_batch: Callable[..., pa.Table] = raw_batch
    replace_column: Callable[..., pa.Table] = replace_column
    set_value: Callable[..., pa.Table] = set_value
    snapshot_predicate: Callable[[datetime], str] = snapshot_predicate


@pytest.fixture(scope="session")
def kit() -> QualityKit:
    return QualityKit()
