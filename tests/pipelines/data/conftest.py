"""Fixtures for the data tests: the tiny synthetic data set in memory, and small hand-made landing tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.ingest import write_landing
from pipelines.schemas import LABELS, RAW_SCHEMAS
from pipelines.synth import generate, synth_config


@pytest.fixture(scope="session")
def tiny_tables() -> dict[str, pa.Table]:
    """The ``tiny`` synthetic data set (seed 0), generated once (~1 s)."""
    return generate(synth_config("tiny", seed=0))


def _ts(*hours: int) -> list[datetime]:
    return [datetime(2026, 9, 1, h, tzinfo=UTC) for h in hours]


def small_landing_tables() -> dict[str, pa.Table]:
    """A valid hand-made landing set: 3 members, 2 posts, 2 follows, 4 impressions, 1 profile update."""
    imp: dict[str, list] = {
        "event_id": [1, 2, 3, 4],
        "member_id": [1, 1, 2, 3],
        "post_id": [10, 11, 10, 11],
        "event_timestamp": _ts(5, 5, 6, 7),
        "session_id": [100, 100, 101, 102],
        "device_type": ["mobile_app", "mobile_app", "desktop_web", "tablet"],
        "position": [0, 1, 0, 0],
        "request_id": [None] * 4,
    }
    imp |= {label: [0, 0, 0, 0] for label in LABELS}
    imp["click"] = [1, 0, 0, 1]
    imp["skip"] = [0, 1, 0, 0]
    tables = {
        "raw_members": {
            "member_id": [1, 2, 3],
            "headline": ["Data Engineer at Norfield Labs", "Nurse", None],
            "current_role": ["Data Engineer", "Registered Nurse", None],
            "industry": ["Software Development", "Hospitals and Health Care", None],
            "skills": [["SQL", "Spark"], ["triage"], None],
            "education": [["BSc Computer Science"], None, None],
            "work_history": [None, None, None],
            "created_at": _ts(0, 0, 0),
        },
        "raw_posts": {
            "post_id": [10, 11],
            "author_id": [2, 3],
            "format": ["text", "article"],
            "text": ["Telemedicine visits are here #healthcare", "Lakehouse tips #dataengineering"],
            "article_title": [None, "Lakehouse architecture, explained"],
            "article_domain": [None, "pipelinepost.com"],
            "created_at": _ts(1, 2),
        },
        "raw_follows": {"member_id": [1, 2], "author_id": [2, 3], "created_at": _ts(1, 1)},
        "raw_impressions": imp,
        "raw_profile_updates": {
            "member_id": [2],
            "event_timestamp": _ts(8),
            "headline": ["Senior Nurse"],
            "current_role": ["Senior Registered Nurse"],
            "industry": [None],
            "skills": [None],
            "work_history": [None],
        },
    }
    return {name: pa.table(cols, schema=RAW_SCHEMAS[name]) for name, cols in tables.items()}


@pytest.fixture
def landing_tables() -> dict[str, pa.Table]:
    return small_landing_tables()


@pytest.fixture
def make_landing(tmp_path: Path) -> Callable[..., Path]:
    """Write the hand-made landing set, with tables replaced by ``overrides`` (raw pyarrow tables, written
    as-is so that they can break the contract), into a fresh folder."""
    counter = iter(range(1000))

    def make(**overrides: pa.Table) -> Path:
        import pyarrow.parquet as pq

        out = tmp_path / f"landing-{next(counter)}"
        valid = {k: v for k, v in small_landing_tables().items() if k not in overrides}
        write_landing(out, valid)
        for name, table in overrides.items():
            if table is not None:
                pq.write_table(table, out / f"{name}.parquet")
        return out

    return make
