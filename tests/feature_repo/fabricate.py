"""Small, consistent feature tables for Feast tests and the analyst-guide test (not a test module itself).

Three members (1, 2, 3; each also an author), four posts (101..104). Member, engagement, author and embedding
tables have two snapshots, ``S1 = T - 1 day`` and ``S2 = T``, with values that differ between them, so a
point-in-time read can tell which snapshot it used. ``T`` defaults to the last full hour before now:
Feast's own incremental materialization (the `feast` CLI) is anchored on the wall clock, so data far in the
past would fall outside the views' ttl. Every value is exactly representable (embedding floats are
multiples of 1/8), so online and offline reads can be compared with ``==``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa

from feed.config import FeedPaths
from pipelines import delta_io, schemas

MEMBERS = (1, 2, 3)
POSTS = (101, 102, 103, 104)
POST_AUTHOR = {101: 1, 102: 2, 103: 3, 104: 1}


@dataclass(frozen=True)
class Fabricated:
    """What was written, for assertions: the times and the snapshot times used."""

    t: dt.datetime
    s1: dt.datetime
    s2: dt.datetime
    members: tuple[int, ...]
    posts: tuple[int, ...]
    post_author: dict[int, int]


def _stamps(n: int, at: dt.datetime) -> dict[str, list[dt.datetime]]:
    return {"event_timestamp": [at] * n, "created": [at + dt.timedelta(hours=1)] * n}


def _seconds(at: dt.datetime) -> int:
    return int(at.timestamp())


def _member_rows(snap: int, at: dt.datetime) -> dict[str, pa.Table]:
    m = list(MEMBERS)
    n = len(m)
    return {
        "member_profile": pa.table(
            {
                "member_id": m,
                "headline": [f"headline m{i} s{snap}" for i in m],
                "current_role": [f"role {i}" for i in m],
                "industry": ["software", "finance", "health"],
                "skills": [[f"skill{i}", f"s{snap}"] for i in m],
                "education": [[f"school {i}"] for i in m],
                "work_history": [[f"Engineer @ Co{i} (software), 2019-03 – present"] for i in m],
                **_stamps(n, at),
            }
        ),
        "member_history": pa.table(
            {
                "member_id": m,
                "engaged_post_ids": [[101, 102][: snap + (i % 2)] for i in m],
                "history_length": [10 * i + snap for i in m],
                **_stamps(n, at),
            }
        ),
        # every impression before the snapshot (oldest first), action codes 0..63, epoch seconds before `at`
        "member_sequence": pa.table(
            {
                "member_id": m,
                "post_ids": [[103, 101, 102][: snap + 1] for _ in m],
                "actions": [[1, 8 * i, 33][: snap + 1] for i in m],
                "timestamps": [[_seconds(at) - 3600 * (3 - k) for k in range(snap + 1)] for _ in m],
                "sequence_length": [20 * i + snap for i in m],
                **_stamps(n, at),
            }
        ),
        "member_affinity": pa.table(
            {
                "member_id": m,
                "top_author_ids": [[1, 2] if snap == 1 else [3] for _ in m],
                "top_author_scores": [[0.5, 0.25] if snap == 1 else [0.75] for _ in m],
                "top_topics": [["ai", "data"] if snap == 1 else ["health"] for _ in m],
                "top_topic_scores": [[0.625, 0.125] if snap == 1 else [1.0] for _ in m],
                **_stamps(n, at),
            }
        ),
        "member_embeddings": pa.table(
            {
                "member_id": m,
                "model_version": [f"v{snap}"] * n,
                "embedding": [[i / 8, snap / 8, 0.5, -1.0] for i in m],
                **_stamps(n, at),
            }
        ),
        "author_stats": pa.table(
            {
                "author_id": m,
                "followers": [100 * i + snap for i in m],
                "posts_28d": [i + snap for i in m],
                "engagements_28d": [5 * i + snap for i in m],
                "follower_percentile": [30 * i + snap for i in m],
                "engagement_percentile": [20 * i + snap for i in m],
                **_stamps(n, at),
            }
        ),
    }


def _post_rows(snap: int, at: dt.datetime) -> dict[str, pa.Table]:
    p = list(POSTS)
    n = len(p)
    counts = {c: [k * 10 + snap for k in range(n)] for c in schemas.POST_ENGAGEMENT_COUNTS}
    windows = {
        f"{c}_{w}": [k + snap for k in range(n)]
        for c in schemas.POST_ENGAGEMENT_COUNTS
        for w in schemas.POST_ENGAGEMENT_WINDOWS
    }
    pct = {
        name: [min(100, 25 * (k + 1) - 2 + snap) for k in range(n)]
        for name in schemas.POST_ENGAGEMENT_PERCENTILES
    }
    return {
        "post_engagement": pa.table({"post_id": p, **counts, **windows, **pct, **_stamps(n, at)}),
        "post_embeddings": pa.table(
            {
                "post_id": p,
                "model_version": [f"v{snap}"] * n,
                "embedding": [[(k + 1) / 8, snap / 8, -0.5, 0.0] for k in range(n)],
                **_stamps(n, at),
            }
        ),
    }


def default_time() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)


def write_feature_tables(paths: FeedPaths, t: dt.datetime | None = None) -> Fabricated:
    """Write every feature and embedding table of ``pipelines.schemas`` under ``paths.lake``, snapshots at
    ``t - 1 day`` and ``t``; posts created at ``t - 3 days``."""
    T = t or default_time()
    S1, S2, POST_CREATED = T - dt.timedelta(days=1), T, T - dt.timedelta(days=3)
    tables: dict[str, list[pa.Table]] = {}
    for snap, at in ((1, S1), (2, S2)):
        for name, table in (_member_rows(snap, at) | _post_rows(snap, at)).items():
            tables.setdefault(name, []).append(table)
    posts = list(POSTS)
    tables["post_content"] = [
        pa.table(
            {
                "post_id": posts,
                "author_id": [POST_AUTHOR[p] for p in posts],
                "format": ["text", "article", "video", "poll"],
                "text": [f"post {p} #ai" for p in posts],
                "article_title": [None, "A title", None, None],
                "article_domain": [None, "example.org", None, None],
                "topic": ["ai"] * len(posts),
                "created_at": [POST_CREATED] * len(posts),
                **_stamps(len(posts), POST_CREATED),
            }
        )
    ]
    for name, parts in tables.items():
        schema = schemas.FEATURE_SCHEMAS[name]
        delta_io.write(
            paths.table(name),
            pa.concat_tables([delta_io.conform(t, schema) for t in parts]),
            mode="overwrite",
            schema=schema,
        )
    return Fabricated(t=T, s1=S1, s2=S2, members=MEMBERS, posts=POSTS, post_author=dict(POST_AUTHOR))
