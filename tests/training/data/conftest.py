"""Fixtures for the retrieval-set tests: hand-made impressions (fast, exact) and a built set on ``tiny``."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from feed.config import FeedPaths
from pipelines.schemas import ENGAGED_LABELS

if TYPE_CHECKING:
    import pandas as pd

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

