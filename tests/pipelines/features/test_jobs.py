"""Hand-made scenarios with exact expectations: as-of cut-offs, cohorts, windows, history, sequence, profile,
affinity.

Times are days after T0 (2025-03-01 00:00 UTC); ``at(d)`` is midnight of day d, the snapshot S = d, which sees
events strictly before it. The first snapshot is the day after the first impression.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest

from pipelines.features.config import FeatureConfig

pytestmark = pytest.mark.integration


def test_snapshot_ignores_events_at_and_after_it(raw, feed_paths, compute, by_snapshot) -> None:
    at = raw.at
    raw.member(1, at(-5))
    raw.post(1, 100, at(-1, 9))
    raw.impression(1, 1, at(0, 10), "like")
    raw.impression(1, 1, at(1), "like", "comment")  # exactly at S = day 1: belongs to S = day 2
    raw.impression(1, 1, at(1) + dt.timedelta(days=1, microseconds=-1), "share")  # last instant of day 1
    raw.impression(2, 1, at(3, 1), "skip")
    raw.write(feed_paths)

    out = compute(feed_paths, ("post_engagement", "member_history", "author_stats"))
    eng = by_snapshot(out["post_engagement"], "post_id")
    assert sorted(s for _, s in eng) == [at(1), at(2), at(3), at(4)]
    day1, day2 = eng[1, at(1)], eng[1, at(2)]
    assert (day1["views"], day1["likes"], day1["comments"], day1["shares"]) == (1, 1, 0, 0)
    assert (day2["views"], day2["likes"], day2["comments"], day2["shares"]) == (3, 2, 1, 1)
    assert (day2["views_1d"], day2["likes_1d"], day2["shares_1d"]) == (2, 1, 1)
    assert eng[1, at(4)]["views"] == 4

    hist = by_snapshot(out["member_history"], "member_id")
    assert set(hist) == {(1, at(1)), (1, at(2))}  # rows only where the history changed; skip is not engaged
    assert hist[1, at(1)]["engaged_post_ids"] == [1]
    assert hist[1, at(2)]["history_length"] == 3

    authors = by_snapshot(out["author_stats"], "author_id")
    assert authors[100, at(1)]["engagements_28d"] == 1
    assert authors[100, at(2)]["engagements_28d"] == 3

    # A build that ends at S = day 1 never reads the events at or after it.
    cut = compute(feed_paths, ("post_engagement", "member_history"), end=at(1).date())
    assert [(r["event_timestamp"], r["views"]) for r in cut["post_engagement"]] == [(at(1), 1)]
    assert [r["history_length"] for r in cut["member_history"]] == [1]


def test_post_engagement_cohort_and_windows(raw, feed_paths, compute, by_snapshot) -> None:
    at = raw.at
    raw.post(1, 100, at(-27))  # created exactly S − 28 d for S = day 1: in that cohort, not in day 2's
    raw.post(2, 100, at(0))  # created exactly at S = day 0: first in the cohort of S = day 1
    raw.post(3, 100, at(-10, 5))  # cohort for S in days −9 .. 18
    for day in range(-9, 20):
        raw.impression(1, 3, at(day, 12), "like" if day % 2 else "click")
    raw.write(feed_paths)

    rows = compute(feed_paths, ("post_engagement",), start=at(1).date())["post_engagement"]
    eng = by_snapshot(rows, "post_id")
    days_of = {p: sorted((s - at(0)).days for q, s in eng if q == p) for p in (1, 2, 3)}
    assert days_of[1] == [1]
    assert days_of[2] == list(range(1, 21))  # 20 = day after the last impression; still within 28 days
    assert days_of[3] == list(range(1, 19))
    r = eng[3, at(17)]  # impressions on days −9 .. 16 are visible: 26
    assert (r["views"], r["views_1d"], r["views_7d"], r["views_28d"]) == (26, 1, 7, 26)
    likes_7d = sum(1 for d in range(10, 17) if d % 2)
    assert (r["likes_7d"], r["likes"]) == (likes_7d, sum(1 for d in range(-9, 17) if d % 2))
    # Cohort at S = day 1: post 1 (0 views), 2 (0), 3 (10 views) → ranks 1, 1, 3 of 3.
    assert [eng[p, at(1)]["view_percentile"] for p in (1, 2, 3)] == [1, 1, 100]
    # From day 2 on the cohort is posts 2 and 3.
    assert [eng[p, at(2)]["view_percentile"] for p in (2, 3)] == [1, 100]


def test_author_stats(raw, feed_paths, compute, by_snapshot) -> None:
    at = raw.at
    raw.post(1, 100, at(-40))  # older than the 28-day window
    raw.post(2, 100, at(-3))
    raw.post(3, 200, at(1, 12))  # author 200 appears from S = day 2
    raw.follow(1, 100, at(-50))
    raw.follow(2, 100, at(0, 12))
    raw.follow(3, 100, at(2))  # exactly at S = day 2: counted from day 3
    raw.follow(4, 200, at(-1))  # followers count even before the author's first post
    raw.impression(1, 1, at(-30), "click")  # leaves the window: S = day 1 looks at days −27 .. 0
    raw.impression(1, 1, at(-1), "share")
    raw.impression(2, 2, at(0), "skip")  # not engaged
    raw.impression(2, 3, at(2, 1), "like")
    raw.write(feed_paths)

    rows = compute(feed_paths, ("author_stats",), start=at(1).date())["author_stats"]
    stats = by_snapshot(rows, "author_id")
    a = stats[100, at(1)]
    assert (a["followers"], a["posts_28d"], a["engagements_28d"]) == (2, 1, 1)
    assert stats[100, at(2)]["followers"] == 2
    assert stats[100, at(3)]["followers"] == 3
    assert (200, at(1)) not in stats
    b = stats[200, at(3)]
    assert (b["followers"], b["posts_28d"], b["engagements_28d"]) == (1, 1, 1)
    # Two authors at S = day 2: 100 has 2 followers, 200 has 1 → buckets 100 and 1.
    assert (stats[100, at(2)]["follower_percentile"], stats[200, at(2)]["follower_percentile"]) == (100, 1)
    assert stats[100, at(1)]["follower_percentile"] == 1  # alone in its cohort


def test_member_history_is_engaged_only_ordered_and_capped(raw, feed_paths, compute, by_snapshot) -> None:
    at = raw.at
    raw.impression(1, 10, at(0, 1), "skip")
    raw.impression(1, 11, at(0, 2), "click")
    raw.impression(1, 12, at(0, 3), "long_dwell")
    raw.impression(1, 13, at(1, 5), "like")
    raw.impression(1, 14, at(1, 5), "comment")  # same instant: event_id breaks the tie
    raw.impression(1, 15, at(2, 6), "share", "skip")
    raw.impression(1, 16, at(2, 7))  # no label at all
    raw.write(feed_paths)

    rows = compute(feed_paths, ("member_history",), config=FeatureConfig(history_cap=3))["member_history"]
    hist = by_snapshot(rows, "member_id")
    assert sorted(hist) == [(1, at(1)), (1, at(2)), (1, at(3))]
    assert (hist[1, at(1)]["engaged_post_ids"], hist[1, at(1)]["history_length"]) == ([11, 12], 2)
    assert (hist[1, at(2)]["engaged_post_ids"], hist[1, at(2)]["history_length"]) == ([12, 13, 14], 4)
    assert (hist[1, at(3)]["engaged_post_ids"], hist[1, at(3)]["history_length"]) == ([13, 14, 15], 5)


def test_member_profile_overlays_updates_as_of_each_snapshot(raw, feed_paths, compute, by_snapshot) -> None:
    at = raw.at
    job = {"title": "Eng", "company": "Acme", "industry": "Tech", "start": dt.date(2020, 1, 1), "end": None}
    new_job = {
        "title": "Lead",
        "company": "Beta",
        "industry": None,
        "start": dt.date(2024, 6, 1),
        "end": None,
    }
    raw.member(
        1, at(-2, 10), headline="H0", industry="I0", skills=["a"], education=["BSc"], work_history=[job]
    )
    raw.member(2, at(3, 6), headline="M2")
    raw.member(3, at(9), headline="created after the last snapshot")
    raw.update(1, at(-1), headline="H1")  # before the first snapshot: folded into the first row
    raw.update(1, at(2, 10), industry="I2")
    raw.update(1, at(2, 15), skills=["b"], work_history=[job | {"end": dt.date(2024, 5, 1)}, new_job])
    raw.update(1, at(4), headline="H4")  # exactly at S = day 4: visible from day 5
    raw.update(2, at(3, 5), headline="before creation is still folded in")
    raw.impression(9, 1, at(0, 3))
    raw.impression(9, 1, at(4, 3))
    raw.write(feed_paths)

    rows = compute(feed_paths, ("member_profile",))["member_profile"]
    prof = by_snapshot(rows, "member_id")
    assert sorted(prof) == [(1, at(1)), (1, at(3)), (1, at(5)), (2, at(4))]
    fields = ("headline", "industry", "skills", "education")
    assert [prof[1, at(1)][f] for f in fields] == ["H1", "I0", ["a"], ["BSc"]]
    assert [prof[1, at(3)][f] for f in fields] == ["H1", "I2", ["b"], ["BSc"]]
    assert [prof[1, at(5)][f] for f in fields] == ["H4", "I2", ["b"], ["BSc"]]
    assert prof[1, at(1)]["work_history"] == ["Eng @ Acme (Tech), 2020-01 – present"]
    assert prof[1, at(3)]["work_history"] == [
        "Lead @ Beta, 2024-06 – present",
        "Eng @ Acme (Tech), 2020-01 – 2024-05",
    ]
    assert prof[2, at(4)]["headline"] == "before creation is still folded in"

    # A one-day build at S = day 3 writes exactly the rows of that snapshot, identical to the full build's.
    day3 = compute(feed_paths, ("member_profile",), start=at(3).date(), end=at(3).date())["member_profile"]
    assert day3 == [prof[1, at(3)]]


def test_member_affinity_shares_ties_and_window_exit(raw, feed_paths, compute, by_snapshot) -> None:
    at = raw.at
    raw.post(1, 10, at(-5), text="#AI rocks")
    raw.post(2, 20, at(-5), text="plain")
    raw.post(3, 30, at(-5), text="#zzz")
    raw.impression(1, 1, at(0, 1), "like")
    raw.impression(1, 1, at(0, 2), "click")
    raw.impression(1, 2, at(1, 1), "click")
    raw.impression(1, 2, at(1, 2), "long_dwell")
    raw.impression(1, 3, at(1, 3), "skip")  # not engaged: author 30 never appears
    raw.impression(2, 3, at(5, 1), "click")
    raw.write(feed_paths)

    cfg = FeatureConfig(affinity_window_days=3, top_k_topics=1)
    rows = compute(feed_paths, ("member_affinity",), config=cfg)["member_affinity"]
    aff = by_snapshot([r for r in rows if r["member_id"] == 1], "member_id")
    # Changes: the day after each engaged day (1, 2) and the day each leaves the 3-day window (4, 5).
    assert sorted(s for _, s in aff) == [at(1), at(2), at(4), at(5)]
    first, tie, later, empty = (aff[1, at(d)] for d in (1, 2, 4, 5))
    assert (first["top_author_ids"], first["top_author_scores"]) == ([10], [1.0])
    assert (first["top_topics"], first["top_topic_scores"]) == (["ai"], [1.0])
    assert (tie["top_author_ids"], tie["top_author_scores"]) == ([10, 20], [0.5, 0.5])  # tie → id ascending
    assert (tie["top_topics"], tie["top_topic_scores"]) == (["ai"], [0.5])  # top-1 of a tie: "ai" < "general"
    assert (later["top_author_ids"], later["top_topics"]) == ([20], ["general"])
    assert empty["top_author_ids"] == empty["top_topics"] == empty["top_author_scores"] == []


def _codes(raw: Any, event_ids: list[int]) -> list[int]:
    """The ranker's action codes of these impressions (training.ranking.features.encode_actions)."""
    from training.ranking.features import TASKS, encode_actions

    by_id = {i["event_id"]: i for i in raw.impressions}
    labels = np.array([[by_id[e][t] for t in TASKS] for e in event_ids], dtype=np.int64)
    return [int(c) for c in encode_actions(labels)]


def _seconds(raw: Any, event_ids: list[int]) -> list[int]:
    by_id = {i["event_id"]: i for i in raw.impressions}
    return [math.floor(by_id[e]["event_timestamp"].timestamp()) for e in event_ids]


def test_member_sequence_every_impression_point_in_time_ordered_and_capped(
    raw, feed_paths, compute, by_snapshot
) -> None:
    at = raw.at
    sec = dt.timedelta(seconds=1)
    e1 = raw.impression(1, 10, at(0, 1), "skip")
    e2 = raw.impression(1, 11, at(0, 2) + 0.7 * sec, "click", position=2)
    # same second as e2 (times are floored to it, as in the ranking set): position 1 goes first
    e3 = raw.impression(1, 12, at(0, 2) + 0.2 * sec, "like", position=1)
    e4 = raw.impression(1, 13, at(0, 3), position=4)  # no label: still in the sequence (action 0)
    e5 = raw.impression(1, 14, at(0, 3), "long_dwell", "like", position=4)  # full tie: event_id
    e6 = raw.impression(1, 15, at(2) - dt.timedelta(microseconds=1), "comment", "share")  # day 1, last µs
    e7 = raw.impression(1, 16, at(2), "long_dwell")  # exactly at S = day 2: belongs to S = day 3
    e8 = raw.impression(1, 17, at(5, 9), "click", "skip")  # quiet days 3 and 4: no rows at S = 4, 5
    e9 = raw.impression(2, 10, at(3, 12), "share")
    raw.write(feed_paths)

    def expect(event_ids: list[int], length: int) -> dict[str, Any]:
        posts = {i["event_id"]: i["post_id"] for i in raw.impressions}
        return {
            "post_ids": [posts[e] for e in event_ids],
            "actions": _codes(raw, event_ids),
            "timestamps": _seconds(raw, event_ids),
            "sequence_length": length,
        }

    def seq(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("post_ids", "actions", "timestamps", "sequence_length")}

    full = by_snapshot(compute(feed_paths, ("member_sequence",))["member_sequence"], "member_id")
    # Change-only: the first snapshot with an impression, then the day after each day with impressions.
    assert sorted(full) == [(1, at(1)), (1, at(2)), (1, at(3)), (1, at(6)), (2, at(4))]
    assert seq(full[1, at(1)]) == expect([e1, e3, e2, e4, e5], 5)
    assert full[1, at(1)]["actions"] == [2, 8, 1, 0, 12]  # sum(label_i << i) in TASKS order
    assert seq(full[1, at(2)]) == expect([e1, e3, e2, e4, e5, e6], 6)
    assert seq(full[1, at(3)]) == expect([e1, e3, e2, e4, e5, e6, e7], 7)
    assert seq(full[1, at(6)]) == expect([e1, e3, e2, e4, e5, e6, e7, e8], 8)
    assert seq(full[2, at(4)]) == expect([e9], 1)
    for (_, s), row in full.items():  # point in time: nothing at or after S
        assert max(row["timestamps"]) < s.timestamp(), s

    capped = compute(feed_paths, ("member_sequence",), config=FeatureConfig(sequence_max_len=3))
    rows = by_snapshot(capped["member_sequence"], "member_id")
    assert sorted(rows) == sorted(full)
    assert seq(rows[1, at(1)]) == expect([e2, e4, e5], 5)  # the newest 3; the length stays uncapped
    assert seq(rows[1, at(3)]) == expect([e5, e6, e7], 7)
    assert seq(rows[1, at(6)]) == expect([e6, e7, e8], 8)
    assert seq(rows[2, at(4)]) == expect([e9], 1)

    # A build ending at S = day 2 never reads e7 (at S) or later; a one-day build gives the full build's row.
    cut = compute(feed_paths, ("member_sequence",), end=at(2).date())["member_sequence"]
    assert [seq(r) for r in cut] == [seq(full[1, at(1)]), seq(full[1, at(2)])]
    day3 = compute(feed_paths, ("member_sequence",), start=at(3).date(), end=at(3).date())["member_sequence"]
    assert day3 == [full[1, at(3)]]


def test_member_sequence_action_codes_equal_the_rankers(raw, feed_paths, compute) -> None:
    """All 64 label combinations: the Spark action code is training.ranking.features.encode_actions."""
    from training.ranking.features import TASKS

    at = raw.at
    events = []
    for code in range(64):
        labels = [t for i, t in enumerate(TASKS) if code >> i & 1]
        events.append(raw.impression(7, 100 + code, at(0, 1) + dt.timedelta(seconds=code), *labels))
    raw.write(feed_paths)

    (row,) = compute(feed_paths, ("member_sequence",))["member_sequence"]
    assert row["post_ids"] == [100 + code for code in range(64)]
    assert row["actions"] == _codes(raw, events) == list(range(64))
