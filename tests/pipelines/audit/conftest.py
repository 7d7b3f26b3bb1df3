"""A hand-sized lake for the audit: every number in the tests can be worked out on paper.

Members 1..6: 1, 2, 3 in group A; 4, 5 in group B; 6 has no audit attribute (``unknown``).
Posts: author 1 → 101..104, author 2 → 105, 106, author 4 → 107..109, author 5 → 110 (A 6 posts, B 4).
Historical impressions (request_id null): post 101 engaged 5 times, 107 3 times, 105 once (by member 3, in
the last week), 110 shown once and not engaged. Served feeds (request_id set): r1 for member 3 = 101, 107,
105; r2 for member 6 = 107, 101. Eligible (post_embeddings of the promoted r1): 101, 105, 107 (108 is r0's).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pytest

from feed.config import FeedPaths

T0 = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 9, 28, tzinfo=dt.UTC)
LABELS = ("click", "skip", "long_dwell", "like", "comment", "share")
POST_AUTHOR = {101: 1, 102: 1, 103: 1, 104: 1, 105: 2, 106: 2, 107: 4, 108: 4, 109: 4, 110: 5}
GROUPS = {1: "A", 2: "A", 3: "A", 4: "B", 5: "B"}
FEEDS = [("r1", 3, [101, 107, 105]), ("r2", 6, [107, 101])]


@dataclass(frozen=True)
class Impression:
    member_id: int
    post_id: int
    at: dt.datetime
    click: int = 0
    request_id: str | None = None
    position: int = 0


def impressions() -> list[Impression]:
    rows = [Impression(1, 101, T0 + dt.timedelta(days=i), click=1) for i in range(5)]
    rows += [Impression(2, 107, T0 + dt.timedelta(days=i), click=1) for i in range(3)]
    rows += [Impression(3, 105, END - dt.timedelta(days=2), click=1), Impression(1, 110, T0)]
    for request_id, member, posts in FEEDS:
        rows += [Impression(member, p, END, request_id=request_id, position=i) for i, p in enumerate(posts)]
    return rows


def write_small_lake(paths: FeedPaths) -> FeedPaths:
    from pipelines import delta_io
    from training.versions import write_current

    ts = pa.timestamp("us", tz="UTC")
    delta_io.write(paths.table("raw_members"), pa.table({"member_id": pa.array(range(1, 7), pa.int64())}))
    delta_io.write(
        paths.table("raw_posts"),
        pa.table(
            {
                "post_id": pa.array(list(POST_AUTHOR), pa.int64()),
                "author_id": pa.array(list(POST_AUTHOR.values()), pa.int64()),
                "created_at": pa.array([T0] * len(POST_AUTHOR), ts),
            }
        ),
    )
    attrs = {
        "member_id": pa.array([*GROUPS, 2], pa.int64()),
        "attribute": pa.array(["group"] * len(GROUPS) + ["caste"]),  # a second, site-specific attribute
        "value": pa.array([*GROUPS.values(), "x"]),
    }
    delta_io.write(paths.table("audit_attributes"), pa.table(attrs))
    rows = impressions()
    columns = {
        "member_id": pa.array([r.member_id for r in rows], pa.int64()),
        "post_id": pa.array([r.post_id for r in rows], pa.int64()),
        "event_timestamp": pa.array([r.at for r in rows], ts),
        "position": pa.array([r.position for r in rows], pa.int32()),
        "request_id": pa.array([r.request_id for r in rows], pa.string()),
    }
    for label in LABELS:
        columns[label] = pa.array([r.click if label == "click" else 0 for r in rows], pa.int8())
    delta_io.write(paths.table("raw_impressions"), pa.table(columns))
    delta_io.write(
        paths.table("post_embeddings"),
        pa.table(
            {
                "post_id": pa.array([101, 105, 107, 108], pa.int64()),
                "model_version": pa.array(["r1", "r1", "r1", "r0"]),
            }
        ),
    )
    (paths.artifacts / "retrieval").mkdir(parents=True)
    write_current(paths.artifacts / "retrieval", "r1")
    return paths


@pytest.fixture
def small_lake(tmp_path) -> FeedPaths:  # type: ignore[no-untyped-def]
    return write_small_lake(FeedPaths(home=tmp_path / "home"))
