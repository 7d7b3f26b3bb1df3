"""The scale-out variants: Redis online store, Spark offline store (over Parquet exports)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from feed.config import FeedPaths
from pipelines import feature_store

RANKING_ROWS = [
    {"member_id": 1, "post_id": 101, "author_id": 1},
    {"member_id": 3, "post_id": 103, "author_id": 3},
]


@pytest.mark.integration
def test_redis_online_store_matches_sqlite(tmp_path: Path, fabricate: Any, redis_server: str) -> None:
    paths = FeedPaths(home=tmp_path)
    fab = fabricate.write_feature_tables(paths)
    end = fab.t + dt.timedelta(minutes=30)
    for variant, conn in (("local", None), ("redis", redis_server)):
        feature_store.apply(paths, variant, redis_connection=conn)
        feature_store.materialize_incremental(paths, end, variant, redis_connection=conn)
    sqlite = feature_store.online_features(paths, "ranking_v1", RANKING_ROWS)
    redis = feature_store.online_features(
        paths, "ranking_v1", RANKING_ROWS, "redis", redis_connection=redis_server
    )
    assert redis == sqlite
    assert redis["member_affinity__top_topic_scores"] == [[1.0], [1.0]]
    assert redis["post_embedding__embedding"][1] == [0.375, 0.25, -0.5, 0.0]


@pytest.mark.integration
@pytest.mark.slow
def test_spark_offline_store_matches_duckdb(tmp_path: Path, fabricate: Any) -> None:
    """Point-in-time join on Spark (SparkSource over the Parquet export) == the DuckDB join over Delta."""
    paths = FeedPaths(home=tmp_path)
    fab = fabricate.write_feature_tables(paths)
    out = feature_store.export_parquet_for_spark(paths)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "member_profile",
            "member_history",
            "member_sequence",
            "member_affinity",
            "post_content",
            "post_engagement",
            "author_stats",
            "member_embeddings",
            "post_embeddings",
        ]
    )
    feature_store.apply(paths, "local")
    feature_store.apply(paths, "spark")
    times = [fab.s1 + dt.timedelta(minutes=5), fab.s2 + dt.timedelta(minutes=5)]
    entity_df = pd.DataFrame(RANKING_ROWS).assign(event_timestamp=times)
    features = [
        "member_profile:headline",
        "member_affinity:top_topics",
        "post_engagement:view_percentile",
        "author_stats:follower_percentile",
        "member_embedding:embedding",
    ]
    keys = ["member_id", "event_timestamp"]
    duck = (
        feature_store.historical_features(paths, entity_df, features).sort_values(keys).reset_index(drop=True)
    )
    spark = feature_store.historical_features(paths, entity_df, features, "spark")
    spark = spark.sort_values(keys).reset_index(drop=True)
    assert list(spark["member_profile__headline"]) == ["headline m1 s1", "headline m3 s2"]
    for column in duck.columns:
        left = [list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for v in duck[column]]
        right = [list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for v in spark[column]]
        assert left == right, column
