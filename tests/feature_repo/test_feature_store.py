"""Feature repo definitions and store operations on the embedded default (SQLite online, DuckDB offline)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feed.config import FEATURE_REPO_DIR, FeedPaths
from pipelines import feature_store, schemas

SENSITIVE = {"group", "gender", "age", "attribute", "value"}  # audit_attributes columns and values


def _views(objects: list[Any]) -> dict[str, Any]:
    from feast import FeatureView

    return {o.name: o for o in objects if isinstance(o, FeatureView)}


def _plain(value: Any) -> Any:
    """Offline frames hold numpy arrays / pandas timestamps; online dicts hold lists / datetimes."""
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


# --- definitions (no registry) ------------------------------------------------------------------------------


def test_definitions_follow_the_contract(tmp_path: Path) -> None:
    objects = feature_store.load_definitions(FeedPaths(home=tmp_path))
    views = _views(objects)
    assert set(views) == {
        "member_profile",
        "member_history",
        "member_sequence",
        "member_affinity",
        "post_content",
        "post_engagement",
        "author_stats",
        "member_embedding",
        "post_embedding",
    }
    table_of = {"member_embedding": "member_embeddings", "post_embedding": "post_embeddings"}
    for name, view in views.items():
        assert view.online, name
        assert view.ttl is not None, name
        assert view.ttl > dt.timedelta(0), name
        assert view.tags.get("team"), name
        table = table_of.get(name, name)
        columns = set(schemas.FEATURE_SCHEMAS[table].names)
        features = {f.name for f in view.features}
        assert features <= columns, f"{name}: {features - columns} not in table {table}"
        assert not features & SENSITIVE, name
        # the batch source reads this home's lake, not the checkout's
        assert view.batch_source.path == str(tmp_path / "data" / "lake" / table), name
    pct = {f.name for f in views["post_engagement"].features}
    assert set(schemas.POST_ENGAGEMENT_PERCENTILES) <= pct
    assert {"views", "likes", "comments", "shares"} <= pct
    assert views["post_engagement"].stream_source.name == "post_engagement_push"
    assert views["member_embedding"].stream_source.name == "member_embedding_push"
    assert views["post_embedding"].stream_source.name == "post_embedding_push"
    services = {o.name for o in objects if type(o).__name__ == "FeatureService"}
    assert services == set(feature_store.SERVICES)


def test_member_sequence_view_is_the_ranker_history(tmp_path: Path) -> None:
    """member_sequence: the GR's history (post, action, time of every impression), served by ranking_v1."""
    from feast.types import Array, Int64

    objects = feature_store.load_definitions(FeedPaths(home=tmp_path))
    view = _views(objects)["member_sequence"]
    assert view.entities == ["member"]
    assert view.ttl == dt.timedelta(days=30)
    assert {f.name: f.dtype for f in view.features} == {
        "post_ids": Array(Int64),
        "actions": Array(Int64),
        "timestamps": Array(Int64),
        "sequence_length": Int64,
    }
    assert view.batch_source.path == str(tmp_path / "data" / "lake" / "member_sequence")
    ranking = next(o for o in objects if type(o).__name__ == "FeatureService" and o.name == "ranking_v1")
    projected = {p.name: {f.name for f in p.features} for p in ranking.feature_view_projections}
    assert projected["member_sequence"] == {"post_ids", "actions", "timestamps", "sequence_length"}
    assert "member_history" in projected  # the sequence is added beside the engaged history, not instead


def test_each_home_gets_its_own_source_paths(tmp_path: Path) -> None:
    """feast's own loader caches the module; ours must re-read FEED_LAKE_DIR for every home."""
    a = _views(feature_store.load_definitions(FeedPaths(home=tmp_path / "a")))
    b = _views(feature_store.load_definitions(FeedPaths(home=tmp_path / "b")))
    assert a["author_stats"].batch_source.path.startswith(str(tmp_path / "a"))
    assert b["author_stats"].batch_source.path.startswith(str(tmp_path / "b"))


def test_config_points_at_the_home(tmp_path: Path) -> None:
    paths = FeedPaths(home=tmp_path)
    local = feature_store.config_dict(paths, feature_store.StoreOptions("local"))
    assert local["registry"]["path"] == str(paths.feast / "registry.db")
    assert local["online_store"]["path"] == str(paths.feast / "online_store.db")
    assert local["offline_store"]["type"] == "duckdb"
    redis = feature_store.config_dict(paths, feature_store.StoreOptions("redis", "127.0.0.1:7000"))
    assert redis["online_store"] == {
        "type": "redis",
        "redis_type": "redis",
        "connection_string": "127.0.0.1:7000",
    }
    assert redis["registry"]["path"] != local["registry"]["path"]
    spark = feature_store.config_dict(paths, feature_store.StoreOptions("spark"))
    assert spark["offline_store"]["spark_conf"]["spark.sql.session.timeZone"] == "UTC"
    written = feature_store.write_config(paths, "local")
    assert written.parent == paths.feast
    assert "registry.db" in written.read_text()


def test_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(feature_store.FeatureStoreError, match="unknown Feast variant 'mongo'"):
        feature_store.store(FeedPaths(home=tmp_path), "mongo")


def test_checkout_yaml_is_relative_to_the_repo() -> None:
    """`cd feature_repo && feast apply` must find data/ of the checkout, not of the caller's cwd."""
    import yaml

    raw = yaml.safe_load((FEATURE_REPO_DIR / "feature_store.yaml").read_text())
    assert raw["registry"]["path"] == "../data/feast/registry.db"
    assert raw["online_store"]["path"] == "../data/feast/online_store.db"


def test_embedding_tables_are_created_empty_once(tmp_path: Path) -> None:
    from pipelines import delta_io

    paths = FeedPaths(home=tmp_path)
    assert feature_store.ensure_embedding_tables(paths) == ["member_embeddings", "post_embeddings"]
    assert delta_io.read(paths.table("post_embeddings")).schema.equals(schemas.EMBEDDING_POST)
    assert feature_store.ensure_embedding_tables(paths) == []


# --- registry + stores


@pytest.mark.integration
def test_materialize_refuses_missing_tables_and_missing_registry(tmp_path: Path, fabricate: Any) -> None:
    paths = FeedPaths(home=tmp_path)
    end = dt.datetime.now(dt.UTC)
    with pytest.raises(feature_store.FeatureStoreError, match=r"feature tables missing .*member_profile"):
        feature_store.materialize_incremental(paths, end)
    fabricate.write_feature_tables(paths)
    with pytest.raises(feature_store.FeatureStoreError, match="feed features apply"):
        feature_store.materialize_incremental(paths, end)
    with pytest.raises(feature_store.FeatureStoreError, match="time zone"):
        feature_store.materialize_incremental(paths, end.replace(tzinfo=None))


def _all_features(paths: FeedPaths) -> list[str]:
    views = _views(feature_store.load_definitions(paths))
    return [f"{name}:{f.name}" for name, view in views.items() for f in view.features]


def _entity_rows(home: Any) -> list[dict[str, int]]:
    fab = home.fab
    return [
        {"member_id": m, "post_id": p, "author_id": fab.post_author[p]}
        for m, p in zip(fab.members, fab.posts, strict=False)
    ]


@pytest.mark.integration
def test_online_equals_offline_for_every_feature(materialized_home: Any) -> None:
    """Parity: what serving reads (SQLite) is what training reads (DuckDB point-in-time) at the same time."""
    paths, rows = materialized_home.paths, _entity_rows(materialized_home)
    features = _all_features(paths)
    online = feature_store.online_features(paths, features, rows)
    entity_df = pd.DataFrame(rows).assign(event_timestamp=materialized_home.end)
    offline = feature_store.historical_features(paths, entity_df, features)
    offline = offline.set_index("member_id").loc[[r["member_id"] for r in rows]]
    for ref in features:
        column = ref.replace(":", "__")
        got_online = [_plain(v) for v in online[column]]
        got_offline = [_plain(v) for v in offline[column]]
        assert got_online == got_offline, column
        assert any(v is not None for v in got_online), f"{column} not materialized: {got_online}"
    # list columns came back as lists of the declared element type
    assert online["member_affinity__top_topics"][0] == ["health"]
    assert online["member_history__engaged_post_ids"][0] == [101, 102]
    assert online["member_sequence__post_ids"][0] == [103, 101, 102]
    assert online["member_sequence__actions"][0] == [1, 8, 33]
    assert online["member_sequence__sequence_length"][0] == 22
    assert online["member_embedding__embedding"][0] == [0.125, 0.25, 0.5, -1.0]
    assert online["member_profile__skills"][0] == ["skill1", "s2"]


@pytest.mark.integration
def test_services_resolve_online(materialized_home: Any) -> None:
    paths = materialized_home.paths
    member = feature_store.online_features(paths, "retrieval_member_v1", [{"member_id": 2}])
    assert member["member_profile__headline"] == ["headline m2 s2"]
    assert member["member_embedding__model_version"] == ["v2"]
    posts = feature_store.online_features(
        paths, "retrieval_post_v1", [{"post_id": 102, "author_id": 2}, {"post_id": 999, "author_id": 9}]
    )
    assert posts["post_content__format"] == ["article", None]
    assert posts["author_stats__follower_percentile"] == [62, None]
    # the service sub-selects counts and buckets (not the windowed counts)
    assert "post_engagement__views" in posts
    assert "post_engagement__views_7d" not in posts
    with pytest.raises(feature_store.FeatureStoreError, match="no feature service 'nope'"):
        feature_store.online_features(paths, "nope", [{"member_id": 1}])


@pytest.mark.integration
def test_point_in_time_never_reads_the_future(materialized_home: Any) -> None:
    paths, fab = materialized_home.paths, materialized_home.fab
    second = dt.timedelta(seconds=1)
    times = [fab.s1 - second, fab.s1, fab.s2 - second, fab.s2]
    entity_df = pd.DataFrame({"member_id": [1] * 4, "event_timestamp": times})
    features = [
        "member_profile:headline",
        "member_history:history_length",
        "member_sequence:sequence_length",
        "member_sequence:timestamps",
        "member_embedding:model_version",
    ]
    frame = feature_store.historical_features(paths, entity_df, features).sort_values("event_timestamp")
    assert [_plain(v) for v in frame["member_profile__headline"]] == [
        None,  # before the first snapshot
        "headline m1 s1",  # a snapshot is valid from its own timestamp
        "headline m1 s1",  # the S2 row exists but lies in the future
        "headline m1 s2",
    ]
    assert [_plain(v) for v in frame["member_history__history_length"]] == [None, 11, 11, 12]
    assert [_plain(v) for v in frame["member_sequence__sequence_length"]] == [None, 21, 21, 22]
    s1 = int(fab.s1.timestamp())
    timestamps = [_plain(v) for v in frame["member_sequence__timestamps"]]
    assert timestamps[:2] == [None, [s1 - 3 * 3600, s1 - 2 * 3600]]  # the S1 row: all before S1
    assert [_plain(v) for v in frame["member_embedding__model_version"]] == [None, "v1", "v1", "v2"]


@pytest.mark.integration
def test_ttl_expires_stale_rows(materialized_home: Any) -> None:
    """post_engagement (ttl 2 days) goes null 2 days after its last snapshot; author_stats (7 days) not."""
    paths, fab = materialized_home.paths, materialized_home.fab
    late = [fab.s2 + dt.timedelta(days=2) - dt.timedelta(minutes=1), fab.s2 + dt.timedelta(days=2, hours=1)]
    entity_df = pd.DataFrame({"post_id": [102, 102], "author_id": [2, 2], "event_timestamp": late})
    frame = feature_store.historical_features(
        paths, entity_df, ["post_engagement:like_percentile", "author_stats:followers"]
    ).sort_values("event_timestamp")
    assert [_plain(v) for v in frame["post_engagement__like_percentile"]] == [50, None]
    assert [_plain(v) for v in frame["author_stats__followers"]] == [202, 202]


@pytest.mark.integration
def test_materialize_is_incremental_and_apply_idempotent(materialized_home: Any) -> None:
    paths, end = materialized_home.paths, materialized_home.end
    assert feature_store.materialize_incremental(paths, end) == {}  # nothing new up to the same end
    later = end + dt.timedelta(hours=1)
    starts = feature_store.materialize_incremental(paths, later)
    assert set(starts.values()) == {end}
    assert len(feature_store.apply(paths)) == 9


@pytest.mark.integration
def test_missing_entity_columns_are_named(materialized_home: Any) -> None:
    paths = materialized_home.paths
    frame = pd.DataFrame({"member_id": [1], "event_timestamp": [materialized_home.end]})
    with pytest.raises(
        feature_store.FeatureStoreError,
        match=r"ranking_v1 needs entity column\(s\) \['author_id', 'post_id'\]",
    ):
        feature_store.historical_features(paths, frame, "ranking_v1")
    with pytest.raises(feature_store.FeatureStoreError, match=r"entity row 1"):
        feature_store.online_features(paths, ["author_stats:followers"], [{"author_id": 1}, {"member_id": 1}])
