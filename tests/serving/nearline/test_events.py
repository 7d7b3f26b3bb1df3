"""The publish API: bad events are refused with a message naming each problem, and nothing is appended."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines import delta_io
from serving.nearline import log as nlog
from serving.nearline.events import Engagement, EventError, EventPublisher, NewPost, ProfileChange
from serving.nearline.schemas import EVENTS_TABLE, NEARLINE_EVENTS

from .conftest import NearlineHome

NOW = dt.datetime.now(dt.UTC)


def _post(post_id: int = 900, **kw: object) -> NewPost:
    values: dict = {"post_id": post_id, "author_id": 1, "format": "text", "text": "Hot take on #ai"} | kw
    return NewPost(**values)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_post(author_id=77), "unknown member 77"),
        (_post(post_id=101), "post 101 already exists"),
        (_post(format="hologram"), "format 'hologram' is not one of"),
        (_post(text="   "), "text is empty"),
        (_post(text="bad \udc80 surrogate"), "not valid Unicode"),
        (_post(text="x" * 20_001), "at most 20,000"),
        (_post(event_time=NOW + dt.timedelta(hours=1)), "in the future"),
        (_post(event_time=dt.datetime(2026, 1, 1)), "timezone-aware"),
        (_post(post_id=True), "positive integer"),
        (Engagement(member_id=1, post_id=5555, action="like"), "unknown post 5555"),
        (Engagement(member_id=1, post_id=101, action="bookmark"), "action 'bookmark'"),
        (ProfileChange(member_id=2), "changes nothing"),
        (ProfileChange(member_id=2, skills="python"), "skills must be a list"),
    ],
)
def test_bad_event_is_refused_and_nothing_appended(
    nearline_home: NearlineHome, event: object, message: str
) -> None:
    publisher = EventPublisher(nearline_home.paths)
    good = Engagement(member_id=1, post_id=101, action="like")
    with pytest.raises(EventError, match=message) as info:
        publisher.publish([good, event])  # type: ignore[list-item]
    assert info.value.problems[0][0] == 1  # the position of the bad event
    assert not delta_io.exists(nearline_home.paths.table(EVENTS_TABLE))


def test_duplicates_within_a_call_and_against_the_log(nearline_home: NearlineHome) -> None:
    publisher = EventPublisher(nearline_home.paths)
    with pytest.raises(EventError, match="post 900 already exists"):
        publisher.publish([_post(900), _post(900)])
    first = publisher.publish([_post(900, event_id="e-1"), Engagement(2, 900, "comment", event_id="e-2")])
    assert first.version == 0
    again = EventPublisher(nearline_home.paths)  # a second producer sees the log
    with pytest.raises(EventError, match="already published"):
        again.publish([Engagement(2, 900, "like", event_id="e-2")])
    with pytest.raises(EventError, match="post 900 already exists"):
        again.publish([_post(900)])
    rows = nlog.read_commit(nearline_home.paths.table(EVENTS_TABLE), 0, NEARLINE_EVENTS).rows
    assert rows.column("event_id").to_pylist() == ["e-1", "e-2"]
    assert rows.column("kind").to_pylist() == ["post", "engagement"]
    assert nlog.head_version(nearline_home.paths.table(EVENTS_TABLE)) == 0


def test_synthetic_producer_writes_in_the_generator_vocabulary(nearline_home: NearlineHome) -> None:
    from pipelines.synth import vocab
    from serving.nearline.producer import SyntheticProducer

    producer = SyntheticProducer(nearline_home.paths)
    producer.publish_posts(5)
    producer.publish_engagements(10)
    rows = delta_io.read(nearline_home.paths.table(EVENTS_TABLE)).to_pylist()
    posts = [r for r in rows if r["kind"] == "post"]
    hashtags = {f"#{t.hashtag}" for t in vocab.TOPIC_SPECS}
    assert all(any(tag in p["text"] for tag in hashtags) for p in posts)
    assert {r["post_id"] for r in rows if r["kind"] == "engagement"} <= {p["post_id"] for p in posts}
    assert min(p["post_id"] for p in posts) > 104  # above every existing post id
