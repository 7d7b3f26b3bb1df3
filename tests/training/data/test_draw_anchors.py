"""Anchor and negative rules on hand-made impressions (no Spark, no Feast): exact expectations."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from training.data.retrieval_set import (
    RetrievalSetConfig,
    RetrievalSetError,
    draw_anchors,
    post_catalog,
    prepare_impressions,
    split_windows,
)

M = 7  # the member of the scenario


def _catalog(at: Callable[..., dt.datetime]) -> pd.DataFrame:
    rows = [{"post_id": p, "author_id": 1, "created_at": at(-1)} for p in range(1, 61)]
    rows[8] = {"post_id": 9, "author_id": 1, "created_at": at(1, 12)}  # created after anchor A
    rows += [{"post_id": p, "author_id": 2, "created_at": at(-40)} for p in range(61, 71)]  # no longer live
    frame = pd.DataFrame(rows)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return post_catalog(frame)


def _scenario(at: Callable[..., dt.datetime]) -> list[tuple[Any, ...]]:
    return [
        (M, 3, at(0, 5), 50, 1),  # engaged on day 0 (before the first snapshot: not an anchor)
        (M, 1, at(1, 1), 100, 1),  # anchor A
        (M, 2, at(1, 1.01), 100, 0),  # A's only hard negative
        (M, 3, at(1, 1.02), 100, 0),  # engaged before A: never a negative
        (M, 4, at(1, 1.03), 100, 1),  # engaged later in A's session (anchor B)
        (M, 999, at(1, 2), 100, 0),  # unknown post: dropped and counted
        (M, 9, at(1, 13), 100, 0),  # created after A
        (M, 5, at(1, 20), 200, 1),  # anchor C: alone in its session → same-day negatives
        (8, 6, at(2, 1), 300, 1),  # another member's anchor, session of one, alone that day
    ]


def _draw(at: Callable[..., dt.datetime], make: Callable, **cfg: Any) -> tuple[pd.DataFrame, Counter[str]]:
    skipped: Counter[str] = Counter()
    catalog = _catalog(at)
    imp = prepare_impressions(make(_scenario(at)), catalog, skipped)
    anchors, _ = draw_anchors(imp, catalog, RetrievalSetConfig(**cfg), skipped)
    return anchors.set_index("positive_post_id"), skipped


def test_hard_negatives_follow_the_rule(at: Callable[..., dt.datetime], impressions_frame: Callable) -> None:
    anchors, skipped = _draw(at, impressions_frame, k_hard=5)
    assert sorted(anchors.index) == [1, 4, 5, 6]  # the day-0 engagement is too early to be an anchor
    assert skipped["impression_unknown_post"] == 1
    assert skipped["before_first_snapshot"] == 1
    assert anchors.loc[1, "hard_negative_post_ids"] == [2]
    assert anchors.loc[1, "hard_negative_source"] == "session"
    assert anchors.loc[4, "hard_negative_post_ids"] == [2]  # 1 and 3 engaged before B, 9 not yet created
    assert sorted(anchors.loc[5, "hard_negative_post_ids"]) == [2, 9]  # same day: 9 exists by 20:00
    assert anchors.loc[5, "hard_negative_source"] == "day"
    assert anchors.loc[6, "hard_negative_post_ids"] == []
    assert anchors.loc[6, "hard_negative_source"] == "none"


def test_later_engaged_post_is_a_negative_only_when_asked(
    at: Callable[..., dt.datetime], impressions_frame: Callable
) -> None:
    anchors, _ = _draw(at, impressions_frame, k_hard=5, exclude_window_engaged=False)
    assert sorted(anchors.loc[1, "hard_negative_post_ids"]) == [2, 4]


def test_hard_negatives_capped_at_k(at: Callable[..., dt.datetime], impressions_frame: Callable) -> None:
    anchors, _ = _draw(at, impressions_frame, k_hard=1)
    assert anchors["hard_negative_post_ids"].str.len().max() == 1
    assert anchors.loc[5, "hard_negative_post_ids"][0] in (2, 9)


def test_easy_negatives_live_never_engaged_and_seeded(
    at: Callable[..., dt.datetime], impressions_frame: Callable
) -> None:
    anchors, _ = _draw(at, impressions_frame, n_easy=8, seed=3)
    first_engaged = {3: at(0, 5), 1: at(1, 1), 4: at(1, 1.03), 5: at(1, 20)}  # member M
    for positive, row in anchors.iterrows():
        easy = row["easy_negative_post_ids"]
        assert len(easy) == 8
        assert len(set(easy)) == 8
        assert positive not in easy
        assert not set(easy) & set(row["hard_negative_post_ids"])
        assert all(p <= 60 for p in easy)  # posts created 40 days ago are not live
        if row["member_id"] == M:
            engaged = {p for p, t in first_engaged.items() if t <= row["anchor_time"]}
            assert not set(easy) & engaged
        assert 9 not in easy or row["anchor_time"] > at(1, 12)  # post 9 is live only from day 1, 12:00
    again, _ = _draw(at, impressions_frame, n_easy=8, seed=3)
    other, _ = _draw(at, impressions_frame, n_easy=8, seed=4)
    pd.testing.assert_frame_equal(anchors, again)
    assert anchors["easy_negative_post_ids"].tolist() != other["easy_negative_post_ids"].tolist()


def test_member_day_cap_is_seeded(at: Callable[..., dt.datetime], impressions_frame: Callable) -> None:
    rows = [(M, p, at(2, p / 10), 10 + p, 1) for p in range(10, 16)]  # six engagements on one day
    catalog = _catalog(at)
    picks = []
    for seed in (0, 0, 1, 2, 3):
        skipped: Counter[str] = Counter()
        imp = prepare_impressions(impressions_frame([(M, 1, at(0), 1, 0), *rows]), catalog, skipped)
        anchors, _ = draw_anchors(imp, catalog, RetrievalSetConfig(seed=seed), skipped)
        assert len(anchors) == 4
        assert skipped["over_member_day_cap"] == 2
        picks.append(tuple(sorted(anchors["positive_post_id"])))
    assert picks[0] == picks[1]
    assert len(set(picks)) > 1


def test_split_windows_end_at_the_last_impression_day(at: Callable[..., dt.datetime]) -> None:
    windows = split_windows(at(0, 0.5), at(27, 23), RetrievalSetConfig())
    assert windows.first_snapshot == at(1)
    assert windows.end == at(28)
    assert windows.test_start == at(21)
    assert windows.validation_start == at(14)
    days = pd.Series(pd.to_datetime([at(13), at(14), at(20), at(21), at(27)], utc=True))
    assert windows.split_of(days).tolist() == ["train", "validation", "validation", "test", "test"]


def test_bad_input_is_refused_clearly(impressions_frame: Callable, at: Callable[..., dt.datetime]) -> None:
    with pytest.raises(RetrievalSetError, match="k_hard"):
        RetrievalSetConfig(k_hard=-1)
    with pytest.raises(RetrievalSetError, match="plain folder name"):
        RetrievalSetConfig(name="../x")
    frame = impressions_frame([(M, 1, at(1), 1, 1)]).drop(columns="session_id")
    with pytest.raises(RetrievalSetError, match="session_id"):
        prepare_impressions(frame, _catalog(at), Counter())
    skipped: Counter[str] = Counter()
    only_unknown = prepare_impressions(impressions_frame([(M, 999, at(1), 1, 1)]), _catalog(at), skipped)
    with pytest.raises(RetrievalSetError, match="no impressions of known posts"):
        draw_anchors(only_unknown, _catalog(at), RetrievalSetConfig(), skipped)
