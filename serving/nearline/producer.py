"""A synthetic event producer for the demo, the tests and the freshness benchmark.

New posts are written by existing members in the generator's words (``pipelines.synth.vocab``): the topic
is drawn from the author's role's interest prior (a role the vocabulary does not know draws uniformly), the
text from the format's templates with three of the topic's phrases and its hashtags — the same recipe as
``pipelines.synth.world._posts``. Engagements pick a member and, preferring posts this producer published, a
post; profile changes give a member another role of the vocabulary.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.schemas import POST_FORMATS
from pipelines.synth import vocab
from serving.nearline.events import Engagement, EventPublisher, NewPost, ProfileChange, PublishResult
from serving.nearline.schemas import ACTIONS

FORMAT_WEIGHTS = (0.30, 0.20, 0.20, 0.10, 0.05, 0.15)  # order of POST_FORMATS, as the generator draws them
ACTION_WEIGHTS = (0.45, 0.25, 0.10, 0.12, 0.05, 0.03)  # order of ACTIONS
_ROLE_BY_TITLE = {r.title: r for r in vocab.ROLES}
_TOPIC_BY_NAME = {t.name: t for t in vocab.TOPIC_SPECS}
_PREFIXES = tuple(p for _, p in vocab.SENIORITY if p)


@dataclass(frozen=True)
class ProducerConfig:
    seed: int = 0
    recent_posts: int = 200  # engagements prefer the newest posts this producer published (0: any known post)


def _role(title: str | None) -> vocab.Role | None:
    if not title:
        return None
    for prefix in _PREFIXES:
        title = title.removeprefix(prefix)
    return _ROLE_BY_TITLE.get(title)


class SyntheticProducer:
    """Draws events and publishes them through an :class:`EventPublisher` (so they are validated)."""

    def __init__(self, paths: FeedPaths, cfg: ProducerConfig = ProducerConfig()) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.publisher = EventPublisher(paths)
        self.members = sorted(self.publisher.known.members)
        self.roles = self._roles(paths)
        self.next_post_id = max(self.publisher.known.posts, default=0) + 1
        self.published_posts: list[int] = []

    def _roles(self, paths: FeedPaths) -> dict[int, str]:
        table = paths.table("member_profile")
        if not delta_io.exists(table):
            return {}
        rows = delta_io.read(table, columns=["member_id", "current_role", "event_timestamp"])
        rows = rows.sort_by([("member_id", "ascending"), ("event_timestamp", "ascending")])
        return dict(
            zip(rows.column("member_id").to_pylist(), rows.column("current_role").to_pylist(), strict=True)
        )

    # --- drawing ------------------------------------------------------------------------------------------

    def _topic(self, author_id: int) -> vocab.Topic:
        role = _role(self.roles.get(author_id))
        if role is None:
            return self.rng.choice(vocab.TOPIC_SPECS)
        names, weights = zip(*role.topics, strict=True)
        return _TOPIC_BY_NAME[self.rng.choices(names, weights=weights)[0]]

    def new_post(self, at: dt.datetime | None = None) -> NewPost:
        author = self.rng.choice(self.members)
        topic = self._topic(author)
        fmt = self.rng.choices(POST_FORMATS, weights=FORMAT_WEIGHTS)[0]
        a, b, c = self.rng.sample(topic.phrases, 3)
        body = self.rng.choice(vocab.POST_TEMPLATES[fmt]).format(a=a, b=b, c=c)
        extra = self.rng.sample(topic.extra_tags, self.rng.choice((0, 1, 1, 2)))
        tags = " ".join(f"#{t}" for t in dict.fromkeys([topic.hashtag, *extra]))
        title = domain = None
        if fmt == "article":
            title = self.rng.choice(vocab.ARTICLE_TITLES).format(a=a, A=a[:1].upper() + a[1:], b=b)
            domain = self.rng.choice(topic.domains)
        post_id = self.next_post_id
        self.next_post_id += 1
        return NewPost(post_id, author, fmt, f"{body} {tags}", title, domain, event_time=at)

    def engagement(self, at: dt.datetime | None = None) -> Engagement:
        pool = self.published_posts[-self.cfg.recent_posts :] if self.cfg.recent_posts else []
        post_id = self.rng.choice(pool) if pool else self.rng.choice(sorted(self.publisher.known.posts))
        action = self.rng.choices(ACTIONS, weights=ACTION_WEIGHTS)[0]
        return Engagement(self.rng.choice(self.members), post_id, action, event_time=at)

    def profile_change(self, at: dt.datetime | None = None) -> ProfileChange:
        role = self.rng.choice(vocab.ROLES)
        member = self.rng.choice(self.members)
        return ProfileChange(
            member,
            headline=f"{role.title} | {role.industry}",
            current_role=role.title,
            industry=role.industry,
            skills=list(self.rng.sample(role.skills, min(4, len(role.skills)))),
            event_time=at,
        )

    # --- publishing ---------------------------------------------------------------------------------------

    def publish_posts(self, n: int) -> PublishResult:
        posts = [self.new_post() for _ in range(n)]
        result = self.publisher.publish(posts)
        self.published_posts.extend(p.post_id for p in posts)
        return result

    def publish_engagements(self, n: int) -> PublishResult:
        return self.publisher.publish([self.engagement() for _ in range(n)])

    def publish_profile_changes(self, n: int) -> PublishResult:
        return self.publisher.publish([self.profile_change() for _ in range(n)])
