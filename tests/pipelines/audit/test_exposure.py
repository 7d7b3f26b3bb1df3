"""Exposure metrics on vectors and feeds small enough to check by hand (see conftest.py for the lake)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from feed.config import FeedPaths
from pipelines.audit import exposure, feeds, lake

from .conftest import FEEDS, GROUPS, POST_AUTHOR

W1, W2 = 1 / math.log2(3), 1 / math.log2(4)  # exposure at 0-based positions 1 and 2 (position 0: 1)


def _items() -> pd.DataFrame:
    rows = [(r, m, i, p, POST_AUTHOR[p]) for r, m, posts in FEEDS for i, p in enumerate(posts)]
    return pd.DataFrame(rows, columns=list(exposure.FEED_COLUMNS))


def _posts() -> pd.DataFrame:
    return pd.DataFrame({"post_id": list(POST_AUTHOR), "author_id": list(POST_AUTHOR.values())})


# --- gini, lorenz, weights


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 1, 1, 1], 0.0),  # equal exposure
        ([0, 0, 0, 1], 0.75),  # one creator gets everything: (n − 1) / n
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 5], 0.9),
        ([1, 2, 3, 4], 0.25),  # mean absolute difference / (2 × mean) = 1.25 / 5
        ([3, 1, 2, 4], 0.25),  # order does not matter
        ([2, 2, 4, 4], 1 / 6),
        ([7], 0.0),
    ],
)
def test_gini_of_known_vectors(values: list[float], expected: float) -> None:
    assert exposure.gini(values) == pytest.approx(expected)


def test_gini_matches_the_mean_absolute_difference_definition() -> None:
    x = np.random.default_rng(0).exponential(size=57)
    mad = np.abs(x[:, None] - x[None, :]).mean()
    assert exposure.gini(x) == pytest.approx(mad / (2 * x.mean()))


def test_gini_undefined_for_no_exposure_and_refuses_negatives() -> None:
    assert exposure.gini([]) is None
    assert exposure.gini([0, 0, 0]) is None
    with pytest.raises(ValueError, match="non-negative"):
        exposure.gini([1, -1])


def test_lorenz_curve_runs_from_zero_to_one_below_the_diagonal() -> None:
    people, cum = exposure.lorenz(np.array([0.0, 3.0, 1.0]))
    np.testing.assert_allclose(people, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(cum, [0, 0, 0.25, 1])
    people, cum = exposure.lorenz(np.zeros(4))  # nothing shown: the diagonal, not NaN
    np.testing.assert_allclose(cum, people)


def test_position_weight_is_the_dcg_discount_of_the_1_based_rank() -> None:
    np.testing.assert_allclose(
        exposure.position_weight(np.array([0, 1, 2, 9])), [1, W1, W2, 1 / math.log2(11)]
    )
    with pytest.raises(ValueError, match="0-based"):
        exposure.position_weight(np.array([-1]))


# --- popularity bias


def test_top_authors_take_ceil_one_percent_and_break_ties_by_id() -> None:
    creators = np.arange(1, 201)
    eng = pd.Series({7: 50, 3: 50, 9: 50, 100: 10})
    assert exposure.top_authors(eng, creators, 0.01).tolist() == [3, 7]  # 1% of 200 = 2; tie 3/7/9 → ids
    assert exposure.top_authors(eng, creators[:150], 0.01).tolist() == [3, 7]  # ceil(1.5) = 2
    assert exposure.top_authors(eng, creators[:10], 0.01).tolist() == [3]  # at least one creator
    assert exposure.top_authors(eng, np.arange(1, 101), 0.01).tolist() == [3]  # exactly 1, not 2


def test_popularity_bias_shares() -> None:
    creators = np.array([1, 2, 3, 4])
    out = exposure.popularity_bias(
        pd.Series({1: 1.0, 2: 3.0}), pd.Series({1: 8, 2: 1, 3: 1}), creators, fraction=0.25
    )
    assert out["top_author_ids"] == [1]
    assert out["engagement_share"] == pytest.approx(0.8)
    assert out["exposure_share"] == pytest.approx(0.25)
    assert out["n_creators"] == 4


# --- the whole exposure audit on the hand-sized lake


def test_exposure_audit_by_hand() -> None:
    groups = pd.Series(GROUPS)
    engagements = pd.Series({1: 5, 4: 3, 2: 1})
    out = exposure.exposure_audit(
        _items(), _posts(), groups, eligible_post_ids=np.array([101, 105, 107]), engagements=engagements
    )
    a, b = 1 + W2 + W1, W1 + 1  # r1: 101 (A) at 0, 107 (B) at 1, 105 (A) at 2; r2: 107 (B) at 0, 101 (A) at 1
    assert out["exposure_share_by_group"] == pytest.approx({"A": a / (a + b), "B": b / (a + b)})
    assert out["exposure_share_by_group_raw"] == pytest.approx({"A": 0.6, "B": 0.4})
    assert out["post_share_by_group"] == pytest.approx({"A": 0.6, "B": 0.4})
    assert out["exposure_ratio_by_group"]["A"] == pytest.approx(a / (a + b) / 0.6)
    assert out["eligible_post_share_by_group"] == pytest.approx({"A": 2 / 3, "B": 1 / 3})
    assert out["exposure_ratio_by_group_eligible"]["B"] == pytest.approx(b / (a + b) * 3)
    # creators 1, 2, 4, 5 (5 never shown counts as 0)
    assert out["n_creators"] == 4
    assert out["n_creators_exposed"] == 3
    assert out["gini_exposure"] == pytest.approx(exposure.gini([1 + W1, W2, W1 + 1, 0]))
    assert out["gini_exposure_raw"] == pytest.approx(exposure.gini([2, 1, 2, 0]))
    assert out["engagement_share_by_group"] == pytest.approx({"A": 6 / 9, "B": 3 / 9})
    pop = out["popularity"]
    assert pop["top_author_ids"] == [1]  # ceil(1% of 4) = 1: the most engaged author
    assert pop["engagement_share"] == pytest.approx(5 / 9)
    assert pop["exposure_share"] == pytest.approx((1 + W1) / (a + b))
    assert out["feeds"] == 2
    assert out["items"] == 5
    assert out["lorenz"]["exposure"][-1] == pytest.approx(1.0)


def test_authors_without_the_attribute_are_their_own_group() -> None:
    items = _items()
    items.loc[0, "author_id"] = 6  # member 6 has no audit attribute
    out = exposure.exposure_audit(items, _posts(), pd.Series(GROUPS))
    assert set(out["exposure_share_by_group"]) == {"A", "B", "unknown"}
    assert out["exposure_ratio_by_group"]["unknown"] is None  # no posts of theirs: no ratio


def test_exposure_audit_needs_the_feed_columns() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        exposure.exposure_audit(_items().drop(columns="position"), _posts(), pd.Series(GROUPS))


# --- reading the lake


def test_lake_reads(small_lake: FeedPaths) -> None:
    groups = lake.member_groups(small_lake)
    assert groups.to_dict() == GROUPS
    with pytest.raises(lake.AuditDataError, match=r"no attribute 'gender'.*\['caste', 'group'\]"):
        lake.member_groups(small_lake, "gender")
    posts = lake.posts(small_lake)
    assert lake.author_engagements(small_lake, posts).to_dict() == {1: 5, 2: 1, 4: 3}
    ids, note = lake.eligible_post_ids(small_lake)
    assert ids is not None
    assert ids.tolist() == [101, 105, 107]
    assert "r1" in note
    assert lake.member_ids(small_lake).tolist() == [1, 2, 3, 4, 5, 6]


def test_logged_feeds_are_the_impressions_with_a_request_id(small_lake: FeedPaths) -> None:
    logged = feeds.logged_feeds(small_lake)
    assert logged.requests == 2
    got = logged.items.sort_values(["request_id", "position"])[list(exposure.FEED_COLUMNS)]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), _items(), check_dtype=False)
    with pytest.raises(feeds.NoLoggedFeedsError, match="no served impressions"):
        feeds.logged_feeds(small_lake, until=pd.Timestamp("2026-09-02", tz="UTC"))


def test_member_sample_is_deterministic_and_distinct() -> None:
    ids = np.arange(1, 1001)
    a = feeds.sample_members(ids, 50, seed=3)
    assert a == feeds.sample_members(ids[::-1], 50, seed=3)  # input order does not matter
    assert len(set(a)) == 50
    assert a == sorted(a)
    assert a != feeds.sample_members(ids, 50, seed=4)
    assert feeds.sample_members([3, 1, 2], 10, seed=0) == [1, 2, 3]  # fewer members than asked: all
