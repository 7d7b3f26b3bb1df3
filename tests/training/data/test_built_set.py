"""The built set on ``tiny`` checked against the lake itself (raw impressions and feature Delta tables)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from pipelines import delta_io
from pipelines.schemas import ENGAGED_LABELS
from training.data.retrieval_set import SPLITS, RetrievalSet

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def rset(built_set: Any) -> RetrievalSet:
    return RetrievalSet.load(built_set.path)


@pytest.fixture(scope="module")
def anchors(rset: RetrievalSet) -> pd.DataFrame:
    return pd.concat([rset.anchors(s).assign(split=s) for s in SPLITS], ignore_index=True)


@pytest.fixture(scope="module")
def impressions(built_set: Any) -> pd.DataFrame:
    imp = delta_io.read(built_set.paths.table("raw_impressions")).to_pandas()
    imp["engaged"] = imp[list(ENGAGED_LABELS)].max(axis=1)
    return imp


def _latest_before(table: pd.DataFrame, key: str, ids: pd.Series, times: pd.Series) -> pd.DataFrame:
    """For each (id, time): the table's newest row with event_timestamp <= time (an as-of join)."""
    left = pd.DataFrame({key: ids.to_numpy(), "_t": times.reset_index(drop=True)}).reset_index(names="_row")
    left["_t"] = left["_t"].astype(table["event_timestamp"].dtype)
    merged = pd.merge_asof(
        left.sort_values("_t"),
        table.sort_values("event_timestamp"),
        left_on="_t",
        right_on="event_timestamp",
        by=key,
        direction="backward",
    )
    return merged.sort_values("_row").reset_index(drop=True)


def test_hard_negatives_never_engaged_never_positive_same_session_or_day(
    anchors: pd.DataFrame, impressions: pd.DataFrame
) -> None:
    hard = anchors.explode("hard_negative_post_ids").dropna(subset=["hard_negative_post_ids"])
    hard = hard.rename(columns={"hard_negative_post_ids": "post_id"}).astype({"post_id": "int64"})
    assert len(hard) > 0.8 * 2 * len(anchors)  # most anchors get both hard negatives on tiny
    assert (hard["post_id"] != hard["positive_post_id"]).all()
    engaged = impressions[impressions["engaged"] == 1]
    joined = hard.merge(engaged[["member_id", "post_id", "event_timestamp"]], on=["member_id", "post_id"])
    assert not (joined["event_timestamp"] <= joined["anchor_time"]).any()
    seen = impressions[["member_id", "post_id", "session_id", "event_timestamp"]]
    session = hard[hard["hard_negative_source"] == "session"].merge(
        seen, on=["member_id", "post_id", "session_id"], how="left", indicator=True
    )
    assert (session["_merge"] == "both").groupby(session["anchor_id"]).any().all()
    day = hard[hard["hard_negative_source"] == "day"].merge(seen, on=["member_id", "post_id"])
    day_ok = day["event_timestamp"].dt.floor("D") == day["anchor_time"].dt.floor("D")
    assert day_ok.groupby([day["anchor_id"], day["post_id"]]).any().all()
    assert set(hard["hard_negative_source"]) <= {"session", "day"}


def test_easy_negatives_never_engaged_and_live(
    anchors: pd.DataFrame, impressions: pd.DataFrame, rset: RetrievalSet
) -> None:
    easy = anchors.explode("easy_negative_post_ids").rename(columns={"easy_negative_post_ids": "post_id"})
    easy = easy.astype({"post_id": "int64"})
    assert (anchors["easy_negative_post_ids"].str.len() == 4).all()
    engaged = impressions[impressions["engaged"] == 1]
    joined = easy.merge(engaged[["member_id", "post_id", "event_timestamp"]], on=["member_id", "post_id"])
    assert not (joined["event_timestamp"] <= joined["anchor_time"]).any()
    created = easy["post_id"].map(rset._catalog.set_index("post_id")["created_at"])
    assert (created < easy["anchor_time"]).all()
    assert (created >= easy["anchor_time"] - pd.Timedelta(days=28)).all()
    hard = anchors.apply(
        lambda r: set(r["easy_negative_post_ids"]) & set(r["hard_negative_post_ids"]), axis=1
    )
    assert not hard.any()


def test_member_features_are_as_of_the_anchor(anchors: pd.DataFrame, built_set: Any) -> None:
    profile = delta_io.read(built_set.paths.table("member_profile")).to_pandas()
    expected = _latest_before(profile, "member_id", anchors["member_id"], anchors["anchor_time"])
    assert (expected["event_timestamp"] <= anchors["anchor_time"]).all()
    assert (expected["headline"].to_numpy() == anchors["member_profile__headline"].to_numpy()).all()
    assert [list(x) for x in expected["skills"]] == [list(x) for x in anchors["member_profile__skills"]]
    # the profile changes during the data for some members: the test can tell snapshots apart
    assert profile.groupby("member_id")["headline"].nunique().max() > 1
    history = delta_io.read(built_set.paths.table("member_history")).to_pandas()
    expected = _latest_before(history, "member_id", anchors["member_id"], anchors["anchor_time"])
    found = expected["event_timestamp"].notna()
    assert (expected["event_timestamp"][found] <= anchors["as_of"][found]).all()
    want = [list(ids) if hasattr(ids, "__len__") else [] for ids in expected["engaged_post_ids"]]
    assert want == [list(x) for x in anchors["engaged_history_post_ids"]]


def test_post_features_are_as_of_the_anchor_snapshot(
    anchors: pd.DataFrame, rset: RetrievalSet, built_set: Any
) -> None:
    posts = pd.read_parquet(built_set.path / "posts.parquet")
    used = pd.concat(
        [
            anchors[["anchor_id", "anchor_time", "as_of", "positive_post_id"]].rename(
                columns={"positive_post_id": "post_id"}
            ),
            *[
                anchors[["anchor_id", "anchor_time", "as_of", c]]
                .explode(c)
                .dropna()
                .rename(columns={c: "post_id"})
                for c in ("hard_negative_post_ids", "easy_negative_post_ids", "engaged_history_post_ids")
            ],
        ]
    ).astype({"post_id": "int64"})
    rows = used.merge(posts, on=["post_id", "as_of"], how="left", validate="many_to_one")
    assert rows["text"].notna().all()  # every post an anchor names has features
    assert (rows["created_at"] <= rows["anchor_time"]).all()  # content exists before the anchor
    assert (rows["as_of"] <= rows["anchor_time"]).all()
    engagement = delta_io.read(built_set.paths.table("post_engagement")).to_pandas()
    expected = _latest_before(engagement, "post_id", posts["post_id"], posts["as_of"])
    fresh = expected["event_timestamp"] >= posts["as_of"] - pd.Timedelta(days=2)  # within the view's ttl
    got = posts["view_percentile"].where(fresh).fillna(-1).astype(int)
    assert (got == expected["view_percentile"].where(fresh).fillna(-1).astype(int)).all()
    assert (expected["event_timestamp"][fresh] <= posts["as_of"][fresh]).all()
    assert posts["view_percentile"].notna().mean() > 0.5


def test_splits_are_disjoint_in_time_and_test_is_the_last_week(
    rset: RetrievalSet, impressions: pd.DataFrame
) -> None:
    last_day = impressions["event_timestamp"].max().floor("D")
    test_start = last_day - pd.Timedelta(days=6)
    train, val, test = (rset.anchors(s) for s in SPLITS)
    assert train["anchor_time"].max() < val["anchor_time"].min()
    assert val["anchor_time"].max() < test["anchor_time"].min()
    assert test["as_of"].min() == test_start
    assert test["as_of"].max() == last_day
    assert val["as_of"].min() == test_start - pd.Timedelta(days=7)
    assert min(len(train), len(val), len(test)) > 0
    report = json.loads((rset.path / "build_report.json").read_text())
    assert report["windows"]["test_start"] == test_start.isoformat()
    assert report["anchors_per_split"] == {"train": len(train), "validation": len(val), "test": len(test)}


def test_cold_start_flag_and_history_variants(anchors: pd.DataFrame, built_set: Any) -> None:
    engaged_len = anchors["engaged_history_post_ids"].str.len()
    assert (anchors["is_cold_start"] == (engaged_len == 0)).all()
    assert anchors["is_cold_start"].any()
    assert not anchors["is_cold_start"].all()
    capped = anchors["all_history_post_ids"].str.len() >= built_set.cfg.all_history_cap
    assert capped.mean() < 0.05
    for _, row in anchors[~capped].iterrows():
        assert Counter(row["all_history_post_ids"]) >= Counter(row["engaged_history_post_ids"])
    assert (anchors["all_history_post_ids"].str.len() >= engaged_len).all()


def test_all_history_is_impressions_before_the_snapshot_newest_last(
    anchors: pd.DataFrame, impressions: pd.DataFrame
) -> None:
    sample = anchors.sample(50, random_state=0)
    for _, row in sample.iterrows():
        mine = impressions[
            (impressions["member_id"] == row["member_id"]) & (impressions["event_timestamp"] < row["as_of"])
        ].sort_values(["event_timestamp", "event_id"])
        assert list(row["all_history_post_ids"]) == mine["post_id"].tolist()[-4096:]


def test_accessors_give_prompt_dataclasses(rset: RetrievalSet) -> None:
    from training.prompts import MemberFeatures, PostFeatures

    test = rset.anchors("test")
    row = test[~test["is_cold_start"]].iloc[0].to_dict()
    member = rset.member(row)
    assert isinstance(member, MemberFeatures)
    assert member.member_id == row["member_id"]
    assert member.headline == row["member_profile__headline"]
    history = rset.history(row)
    assert [p.post_id for p in history] == list(row["engaged_history_post_ids"])
    assert all(isinstance(p, PostFeatures) for p in history)
    assert len(rset.history(row, "all")) >= len(history)
    positive = rset.post(row["positive_post_id"], row["as_of"])
    assert positive.text
    live = rset.live_posts(row["anchor_time"])
    assert row["positive_post_id"] in live
    assert not set(row["easy_negative_post_ids"]) - set(live)
    for post_id in live[:200]:  # every eval candidate has features as of the test day
        rset.post(post_id, row["as_of"])
    with pytest.raises(ValueError, match="not in"):
        rset.post(10**9, row["as_of"])


def test_same_seed_same_set(built_set: Any, rset: RetrievalSet) -> None:
    """A rebuild with the same seed gives the same anchors (Feast joins and all)."""
    from dataclasses import replace

    from training.data.retrieval_set import build_retrieval_set

    again = RetrievalSet.load(build_retrieval_set(built_set.paths, replace(built_set.cfg, name="again")))
    for split in SPLITS:
        pd.testing.assert_frame_equal(rset.anchors(split), again.anchors(split))
