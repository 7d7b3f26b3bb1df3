"""Leakage guard: every feature row is recomputed in plain Python from the raw rows filtered to < S.

Random data (ties, same-day events, updates and follows at random instants); for each snapshot S the value a
point-in-time join would read (the latest row at or before S) must equal the value computed from raw events
strictly before S. Any as-of mistake (<= instead of <, an off-by-one day, a window one day too long) fails.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feed.config import FEATURE_TABLES
from pipelines.features.config import FeatureConfig
from pipelines.features.text import render_work_history, topic_of
from pipelines.schemas import ENGAGED_LABELS

pytestmark = pytest.mark.integration
CFG = FeatureConfig(sequence_max_len=16)  # small enough that the random members' sequences are cut
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def built(random_lake, spark) -> dict[str, list[dict[str, Any]]]:
    from pipelines.features.build import feature_jobs, impression_span, stage_table
    from pipelines.features.common import load_raw
    from pipelines.features.snapshots import resolve_snapshots

    paths, _ = random_lake
    snaps = resolve_snapshots(*impression_span(spark, paths))
    raw = load_raw(spark, paths, snaps.cutoff)
    jobs = feature_jobs(raw, snaps, CFG, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    out = {t: stage_table(jobs[t](), paths.staging / t / "ref", t).to_pylist() for t in FEATURE_TABLES}
    raw.impressions.unpersist()
    return out


@pytest.fixture(scope="module")
def snapshots(random_lake) -> list[dt.datetime]:
    _, b = random_lake
    times = [i["event_timestamp"] for i in b.impressions]
    first = dt.datetime.combine(min(times).date(), dt.time(), dt.UTC) + DAY
    last = dt.datetime.combine(max(times).date(), dt.time(), dt.UTC) + DAY
    return [first + k * DAY for k in range((last - first).days + 1)]


def pct_reference(values: list[int]) -> list[int]:
    s = pd.Series(values, dtype="float64")
    pr = (s.rank(method="min") - 1) / (len(s) - 1) if len(s) > 1 else s * 0
    return [1 + math.floor(99 * p) for p in pr]


def engaged(i: dict[str, Any]) -> bool:
    return any(i[label] for label in ENGAGED_LABELS)


def as_of(rows: list[dict[str, Any]], key: str, entity: Any, s: dt.datetime) -> dict[str, Any] | None:
    """What Feast's point-in-time join reads: the latest row with event_timestamp <= s."""
    candidates = [r for r in rows if r[key] == entity and r["event_timestamp"] <= s]
    return max(candidates, key=lambda r: r["event_timestamp"]) if candidates else None


def test_post_engagement_from_raw(built, random_lake, snapshots) -> None:
    _, b = random_lake
    rows = built["post_engagement"]
    for s in snapshots:
        cohort = sorted(p["post_id"] for p in b.posts if s - CFG.cohort_days * DAY <= p["created_at"] < s)
        got = {r["post_id"]: r for r in rows if r["event_timestamp"] == s}
        assert sorted(got) == cohort, s
        expected: dict[int, dict[str, int]] = {}
        for post in cohort:
            seen = [i for i in b.impressions if i["post_id"] == post and i["event_timestamp"] < s]
            e = {"views": len(seen)}
            for col, label in (("likes", "like"), ("comments", "comment"), ("shares", "share")):
                e[col] = sum(i[label] for i in seen)
            for days in CFG.engagement_windows_days:
                recent = [i for i in seen if i["event_timestamp"] >= s - days * DAY]
                e[f"views_{days}d"] = len(recent)
                e[f"likes_{days}d"] = sum(i["like"] for i in recent)
                e[f"shares_{days}d"] = sum(i["share"] for i in recent)
            expected[post] = e
        for col, pct in (
            ("views", "view_percentile"),
            ("likes", "like_percentile"),
            ("shares", "share_percentile"),
        ):
            for post, bucket in zip(cohort, pct_reference([expected[p][col] for p in cohort]), strict=True):
                expected[post][pct] = bucket
        for post in cohort:
            assert {k: got[post][k] for k in expected[post]} == expected[post], (s, post)


def test_author_stats_from_raw(built, random_lake, snapshots) -> None:
    _, b = random_lake
    rows = built["author_stats"]
    author_of = {p["post_id"]: p["author_id"] for p in b.posts}
    window = CFG.author_window_days * DAY
    for s in snapshots:
        authors = sorted({p["author_id"] for p in b.posts if p["created_at"] < s})
        got = {r["author_id"]: r for r in rows if r["event_timestamp"] == s}
        assert sorted(got) == authors, s
        followers = Counter(f["author_id"] for f in b.follows if f["created_at"] < s)
        posts = Counter(p["author_id"] for p in b.posts if s - window <= p["created_at"] < s)
        eng = Counter(
            author_of[i["post_id"]]
            for i in b.impressions
            if engaged(i) and s - window <= i["event_timestamp"] < s
        )
        f_pct = dict(zip(authors, pct_reference([followers[a] for a in authors]), strict=True))
        e_pct = dict(zip(authors, pct_reference([eng[a] for a in authors]), strict=True))
        for a in authors:
            expected = (followers[a], posts[a], eng[a], f_pct[a], e_pct[a])
            r = got[a]
            actual = (r["followers"], r["posts_28d"], r["engagements_28d"])
            assert (*actual, r["follower_percentile"], r["engagement_percentile"]) == expected, (s, a)


def test_member_history_from_raw(built, random_lake, snapshots) -> None:
    _, b = random_lake
    rows = built["member_history"]
    members = sorted({i["member_id"] for i in b.impressions})
    engaged_imps = sorted(
        (i for i in b.impressions if engaged(i)), key=lambda i: (i["event_timestamp"], i["event_id"])
    )
    change_days = {
        (i["member_id"], dt.datetime.combine(i["event_timestamp"].date(), dt.time(), dt.UTC) + DAY)
        for i in engaged_imps
    }
    assert {
        (r["member_id"], r["event_timestamp"]) for r in rows
    } == change_days  # a row only where it changed
    for s in snapshots:
        for m in members:
            before = [i["post_id"] for i in engaged_imps if i["member_id"] == m and i["event_timestamp"] < s]
            row = as_of(rows, "member_id", m, s)
            if not before:
                assert row is None, (s, m)
                continue
            assert row is not None, (s, m)
            assert (row["engaged_post_ids"], row["history_length"]) == (
                before[-CFG.history_cap :],
                len(before),
            )


def test_member_sequence_from_raw(built, random_lake, snapshots) -> None:
    from training.ranking.features import TASKS, encode_actions

    _, b = random_lake
    rows = built["member_sequence"]

    def second(i: dict[str, Any]) -> int:
        return math.floor(i["event_timestamp"].timestamp())

    ordered = sorted(b.impressions, key=lambda i: (second(i), i["position"], i["event_id"]))
    code = dict(
        zip(
            [i["event_id"] for i in ordered],
            encode_actions(np.array([[i[t] for t in TASKS] for i in ordered])).tolist(),
            strict=True,
        )
    )
    change_days = {
        (i["member_id"], dt.datetime.combine(i["event_timestamp"].date(), dt.time(), dt.UTC) + DAY)
        for i in b.impressions
    }
    assert {(r["member_id"], r["event_timestamp"]) for r in rows} == change_days
    members = sorted({i["member_id"] for i in b.impressions})
    capped = 0
    for s in snapshots:
        for m in members:
            before = [i for i in ordered if i["member_id"] == m and i["event_timestamp"] < s]
            row = as_of(rows, "member_id", m, s)
            if not before:
                assert row is None, (s, m)
                continue
            assert row is not None, (s, m)
            newest = before[-CFG.sequence_max_len :]
            capped += len(before) > len(newest)
            assert row["post_ids"] == [i["post_id"] for i in newest], (s, m)
            assert row["actions"] == [code[i["event_id"]] for i in newest], (s, m)
            assert row["timestamps"] == [second(i) for i in newest], (s, m)
            assert row["sequence_length"] == len(before), (s, m)
    assert capped > 0  # the cap was exercised


def test_member_affinity_from_raw(built, random_lake, snapshots) -> None:
    _, b = random_lake
    rows = built["member_affinity"]
    post = {p["post_id"]: p for p in b.posts}
    members = sorted({i["member_id"] for i in b.impressions})
    window = CFG.affinity_window_days * DAY
    for s in snapshots:
        for m in members:
            recent = [
                i
                for i in b.impressions
                if i["member_id"] == m and engaged(i) and s - window <= i["event_timestamp"] < s
            ]
            row = as_of(rows, "member_id", m, s)
            if row is None:
                assert not recent, (s, m)
                continue
            authors = Counter(post[i["post_id"]]["author_id"] for i in recent)
            topics = Counter(topic_of(post[i["post_id"]]["text"]) for i in recent)
            top_a = sorted(authors.items(), key=lambda kv: (-kv[1], kv[0]))[: CFG.top_k_authors]
            top_t = sorted(topics.items(), key=lambda kv: (-kv[1], kv[0]))[: CFG.top_k_topics]
            assert row["top_author_ids"] == [a for a, _ in top_a], (s, m)
            assert row["top_topics"] == [t for t, _ in top_t], (s, m)
            assert row["top_author_scores"] == pytest.approx([n / len(recent) for _, n in top_a])
            assert row["top_topic_scores"] == pytest.approx([n / len(recent) for _, n in top_t])


def test_member_profile_from_raw(built, random_lake, snapshots) -> None:
    _, b = random_lake
    rows = built["member_profile"]
    for s in snapshots:
        for member in b.members:
            m = member["member_id"]
            row = as_of(rows, "member_id", m, s)
            if member["created_at"] >= s:
                assert row is None, (s, m)
                continue
            state = dict(member)
            for u in sorted(b.updates, key=lambda u: u["event_timestamp"]):
                if u["member_id"] == m and u["event_timestamp"] < s:
                    state |= {k: v for k, v in u.items() if v is not None and k != "event_timestamp"}
            assert row is not None, (s, m)
            for field in ("headline", "current_role", "industry", "skills", "education"):
                assert row[field] == state.get(field), (s, m, field)
            assert row["work_history"] == render_work_history(state.get("work_history"))


def test_post_content_from_raw(built, random_lake) -> None:
    _, b = random_lake
    rows = {r["post_id"]: r for r in built["post_content"]}
    assert sorted(rows) == sorted(p["post_id"] for p in b.posts)
    for p in b.posts:
        r = rows[p["post_id"]]
        assert (r["topic"], r["event_timestamp"], r["author_id"]) == (
            topic_of(p["text"]),
            p["created_at"],
            p["author_id"],
        )
