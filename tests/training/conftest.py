"""Fixtures shared by the training tests: the retrieval set and the ranking set built on ``tiny`` (once per
run each)."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from feed.config import FeedPaths, SparkConfig

if TYPE_CHECKING:
    from pipelines.ranking_set import RankingSetConfig
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


# --- the GR ranking set on ``tiny`` (pipelines/ranking_set.py), with planted rows that make point-in-time
# mistakes visible


@dataclass(frozen=True)
class PlantedRows:
    """Feature rows added to the copied lake before the ranking-set build (see :func:`ranking_set`)."""

    version: str  # promoted retrieval version (artifacts/retrieval/CURRENT)
    member_id: int  # member with planted member_embeddings rows
    member_emb_at: dt.datetime  # the promoted version's row is valid from here (for member_emb_ttl)
    member_emb: tuple[float, ...]
    member_emb_future: tuple[float, ...]  # a row stamped after the data ends: must never be used
    member_emb_ttl: dt.timedelta
    post_vectors: dict[int, tuple[float, ...]]  # post_id → promoted-version vector
    author_id: int  # author with a mid-day author_stats row
    author_stats_at: dt.datetime
    follower_percentile: int


@dataclass(frozen=True)
class BuiltRankingSet:
    paths: FeedPaths
    path: Path
    cfg: RankingSetConfig
    planted: PlantedRows


@pytest.fixture(scope="session")
def ranking_set(tiny_feature_home: FeedPaths, tmp_path_factory: pytest.TempPathFactory) -> BuiltRankingSet:
    """The GR ranking set on ``tiny`` (≈ 60 s of building on 2 cores), built once per run from a copy of
    ``tiny_feature_home`` whose lake gets planted rows first: member embeddings of the promoted version (one
    valid from mid-validation, one stamped after the data ends, one of another version), post embeddings for
    a few posts, and an author_stats row stamped in the middle of a day between two snapshots."""
    from pipelines import feature_store
    from pipelines.ranking_set import RankingSetConfig, build_ranking_set

    paths = FeedPaths(home=tmp_path_factory.mktemp("ranking_home"))
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    planted = _plant_rows(paths)
    feature_store.apply(paths)
    cfg = RankingSetConfig(name="t", max_targets=16, shards=2)  # small blocks: many cut sessions
    return BuiltRankingSet(paths, build_ranking_set(paths, cfg, SparkConfig(master="local[2]")), cfg, planted)


def _plant_rows(paths: FeedPaths) -> PlantedRows:
    import pandas as pd
    import pyarrow as pa

    from pipelines import delta_io, schemas

    version = "planted-v1"
    (paths.artifacts / "retrieval").mkdir(parents=True, exist_ok=True)
    (paths.artifacts / "retrieval" / "CURRENT").write_text(version + "\n")
    imp = delta_io.read(paths.table("raw_impressions"), columns=["member_id", "post_id", "event_timestamp"])
    imp = imp.to_pandas()
    end = imp["event_timestamp"].max().ceil("D")
    created = pd.Timestamp("2026-11-01", tz="UTC")

    # The heaviest member: examples in every split. Promoted row valid from 4 days before the data's end.
    member = int(imp["member_id"].value_counts().index[0])
    member_at = end - pd.Timedelta(days=4, hours=5)
    emb, future = (1.0, 2.0, 3.0, 4.0), (9.0, 9.0, 9.0, 9.0)
    rows = [
        (member, "old-v0", (5.0, 5.0, 5.0, 5.0), end - pd.Timedelta(days=20)),  # other version: dropped
        (member, version, emb, member_at),
        (member, version, future, end + pd.Timedelta(days=1)),  # an export after the data: never valid
    ]
    table = pa.table(
        {
            "member_id": [r[0] for r in rows],
            "model_version": [r[1] for r in rows],
            "embedding": [list(r[2]) for r in rows],
            "event_timestamp": [r[3] for r in rows],
            "created": [created] * len(rows),
        }
    )
    delta_io.write(paths.table("member_embeddings"), table, mode="append", schema=schemas.EMBEDDING_MEMBER)

    posts = sorted(int(p) for p in imp["post_id"].value_counts().index[:5])
    vectors = {p: (float(p), 0.5, -1.0) for p in posts}
    table = pa.table(
        {
            "post_id": [*posts, posts[0]],
            "model_version": [version] * len(posts) + ["old-v0"],
            "embedding": [list(v) for v in vectors.values()] + [[7.0, 7.0, 7.0]],
            "event_timestamp": [end] * (len(posts) + 1),
            "created": [created] * (len(posts) + 1),
        }
    )
    delta_io.write(paths.table("post_embeddings"), table, mode="append", schema=schemas.EMBEDDING_POST)

    # An author_stats row stamped mid-day (between the daily snapshots) for the author most impressed on a
    # validation-window day, at the median impression time of that author that day.
    catalog = delta_io.read(paths.table("post_content"), columns=["post_id", "author_id"]).to_pandas()
    day = end - pd.Timedelta(days=10)
    on_day = imp[(imp["event_timestamp"] >= day) & (imp["event_timestamp"] < day + pd.Timedelta(days=1))]
    on_day = on_day.merge(catalog, on="post_id")
    author = int(on_day["author_id"].value_counts().index[0])
    at = (
        on_day.loc[on_day["author_id"] == author, "event_timestamp"]
        .sort_values()
        .iloc[int((on_day["author_id"] == author).sum()) // 2]
        .floor("s")
    )
    stats = delta_io.read(paths.table("author_stats")).to_pandas()
    row = stats[(stats["author_id"] == author) & (stats["event_timestamp"] <= at)].iloc[[-1]].copy()
    row["follower_percentile"] = 77 if int(row["follower_percentile"].iloc[0]) != 77 else 78
    row["event_timestamp"] = at
    row["created"] = created
    delta_io.write(
        paths.table("author_stats"),
        pa.Table.from_pandas(row, preserve_index=False),
        mode="append",
        schema=schemas.AUTHOR_STATS,
    )
    return PlantedRows(
        version=version,
        member_id=member,
        member_emb_at=member_at.to_pydatetime(),
        member_emb=emb,
        member_emb_future=future,
        member_emb_ttl=dt.timedelta(days=30),
        post_vectors=vectors,
        author_id=author,
        author_stats_at=at.to_pydatetime(),
        follower_percentile=int(row["follower_percentile"].iloc[0]),
    )
