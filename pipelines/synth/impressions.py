"""The logged feed: sessions, the logging policy that filled them, and the engagement labels.

Vectorised over all impressions of a chunk of members (no per-impression Python); the only Python loop runs
over the ~26 topics. Formulas and constants: :class:`~pipelines.synth.config.EngagementModel`,
:class:`~pipelines.synth.config.LoggingPolicy` and docs/data.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines.schemas import DEVICE_TYPES, LABELS, RAW_IMPRESSIONS
from pipelines.synth.world import (
    K_TOPICS,
    STREAM_IMPRESSIONS,
    US_PER_DAY,
    US_PER_SECOND,
    World,
    rng_for,
    sample_rows,
    ts_array,
)

# Time of day of session starts (UTC hours): morning commute, lunch, evening; (mean, sd, weight).
DIURNAL = np.array([[8.5, 1.5, 0.35], [12.5, 1.0, 0.25], [20.5, 2.0, 0.40]])
SOURCE_FOLLOWED, SOURCE_POPULAR, SOURCE_TOPIC, SOURCE_RANDOM = range(4)


@dataclass(frozen=True)
class _Index:
    """Look-up structures over the posts (sorted by created_at) and follows, built once per world."""

    popular_cum: np.ndarray  # (P+1,) cumulative policy weight of posts in time order, starting at 0
    topic_posts: list[np.ndarray]  # per topic: post indices in time order
    topic_cum: list[np.ndarray]  # per topic: cumulative weights, starting at 0
    author_key: np.ndarray  # sorted (author << 31) | seconds since base, for posts
    author_order: np.ndarray  # post index of each author_key entry
    base_us: int
    follow_key: np.ndarray  # sorted member * N + author
    follow_created: np.ndarray
    follow_offsets: np.ndarray  # (N+1,) CSR over follow_key by member
    pop_z: np.ndarray  # (N,) standardised log popularity (0 for non-authors)


def _build_index(world: World) -> _Index:
    posts, n = world.posts, len(world.members.activity)
    pop = world.popularity
    weight = pop[posts.author] * np.exp(0.3 * posts.quality)
    popular_cum = np.concatenate([[0.0], np.cumsum(weight)])
    topic_posts, topic_cum = [], []
    for k in range(K_TOPICS):
        idx = np.flatnonzero(posts.topic == k)
        topic_posts.append(idx)
        topic_cum.append(np.concatenate([[0.0], np.cumsum(weight[idx])]))
    base_us = int(posts.created_us.min()) - US_PER_DAY * 365
    seconds = (posts.created_us - base_us) // US_PER_SECOND
    key = (posts.author.astype(np.int64) << 31) | seconds
    order = np.argsort(key, kind="stable")
    fkey = world.follow_member * n + world.follow_author
    forder = np.argsort(fkey, kind="stable")
    offsets = np.searchsorted(world.follow_member[forder], np.arange(n + 1), side="left")
    log_pop = np.log(pop, where=pop > 0, out=np.zeros_like(pop))
    authors = pop > 0
    z = np.zeros_like(pop)
    z[authors] = (log_pop[authors] - log_pop[authors].mean()) / max(log_pop[authors].std(), 1e-9)
    return _Index(
        popular_cum,
        topic_posts,
        topic_cum,
        key[order],
        order,
        base_us,
        fkey[forder],
        world.follow_created_us[forder],
        offsets,
        z,
    )


def _weighted_in_range(
    rng: np.random.Generator, cum: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """For each row, an index in [lo, hi) drawn ∝ weight, where ``cum`` is the cumulative weight from 0."""
    u = cum[lo] + rng.random(len(lo)) * (cum[hi] - cum[lo])
    return np.clip(np.searchsorted(cum, u, side="right") - 1, lo, np.maximum(hi - 1, lo))


def impression_chunks(world: World) -> Iterator[pa.Table]:
    """raw_impressions, one Arrow table per chunk of ``config.chunk_members`` members; event and session ids
    are consecutive across chunks."""
    index = _build_index(world)
    n = len(world.members.activity)
    step = world.config.chunk_members
    next_event, next_session = 1, 1
    for chunk, first in enumerate(range(0, n, step)):
        members = np.arange(first, min(first + step, n))
        table, sessions = _chunk(world, index, members, chunk, next_event, next_session)
        next_event += table.num_rows
        next_session += sessions
        yield table


def _sessions(world: World, members: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Sessions of ``members``: (member, start µs, length, device), ordered by member then start."""
    cfg, m = world.config, world.members
    span_start = np.maximum(world.start_us, m.created_us[members])
    span_days = (world.end_us - span_start) / US_PER_DAY
    count = rng.poisson(m.activity[members] * span_days)
    s_mem = np.repeat(members, count)
    s_span = np.repeat(span_start, count)
    day = np.floor(
        (s_span - world.start_us) / US_PER_DAY + rng.random(len(s_mem)) * np.repeat(span_days, count)
    )
    comp = rng.choice(len(DIURNAL), size=len(s_mem), p=DIURNAL[:, 2])
    hour = np.mod(DIURNAL[comp, 0] + DIURNAL[comp, 1] * rng.standard_normal(len(s_mem)), 24.0)
    start = world.start_us + (day * 24.0 + hour) * 3600 * US_PER_SECOND
    start = np.clip(start, s_span, world.end_us - 3600 * US_PER_SECOND).astype(np.int64)
    order = np.lexsort((start, s_mem))
    s_mem, start = s_mem[order], start[order]
    length = 1 + rng.poisson((cfg.mean_session_length - 1) * m.depth[s_mem])
    device = np.where(
        rng.random(len(s_mem)) < 0.8, m.device[s_mem], rng.integers(len(DEVICE_TYPES), size=len(s_mem))
    )
    return s_mem, start, length, device


def _fill_slots(
    world: World, index: _Index, i_mem: np.ndarray, t_sess: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The logging policy: a post index for every slot (-1 where nothing was eligible)."""
    policy, posts = world.config.policy, world.posts
    n_slots = len(i_mem)
    probs = np.array([policy.followed, policy.popular, policy.topic, policy.random])
    source = rng.choice(4, size=n_slots, p=probs / probs.sum())
    window = policy.window_days * US_PER_DAY
    lo = np.searchsorted(posts.created_us, t_sess - window, side="left")
    hi = np.searchsorted(posts.created_us, t_sess, side="right")
    post = np.full(n_slots, -1, dtype=np.int64)

    rows = np.flatnonzero(source == SOURCE_RANDOM)
    post[rows] = lo[rows] + (rng.random(len(rows)) * (hi[rows] - lo[rows])).astype(np.int64)

    rows = np.flatnonzero(source == SOURCE_FOLLOWED)
    m = i_mem[rows]
    n_follow = index.follow_offsets[m + 1] - index.follow_offsets[m]
    j = index.follow_offsets[m] + (rng.random(len(rows)) * n_follow).astype(np.int64)
    j = np.minimum(j, len(index.follow_key) - 1)
    author = index.follow_key[j] - m * len(world.members.activity)
    ok = (n_follow > 0) & (index.follow_created[j] <= t_sess[rows])
    t_lo = (author << 31) | ((t_sess[rows] - window - index.base_us) // US_PER_SECOND)
    t_hi = (author << 31) | ((t_sess[rows] - index.base_us) // US_PER_SECOND)
    a_lo = np.searchsorted(index.author_key, t_lo, side="left")
    a_hi = np.searchsorted(index.author_key, t_hi, side="right")
    ok &= a_hi > a_lo
    pick = a_lo + (rng.random(len(rows)) * (a_hi - a_lo)).astype(np.int64)
    post[rows[ok]] = index.author_order[pick[ok]]

    rows = np.flatnonzero(source == SOURCE_TOPIC)
    noisy = (1 - policy.topic_noise) * world.members.interests[i_mem[rows]] + policy.topic_noise / K_TOPICS
    want = sample_rows(rng, noisy.astype(np.float64))
    for k in range(K_TOPICS):
        sel = rows[want == k]
        times = posts.created_us[index.topic_posts[k]]
        k_lo = np.searchsorted(times, t_sess[sel] - window, side="left")
        k_hi = np.searchsorted(times, t_sess[sel], side="right")
        ok = k_hi > k_lo
        pick = _weighted_in_range(rng, index.topic_cum[k], k_lo[ok], k_hi[ok])
        post[sel[ok]] = index.topic_posts[k][pick]

    # Popular, and the fallback of every source that found nothing (no follows, no recent topic post).
    rows = np.flatnonzero((post < 0) & (hi > lo))
    post[rows] = _weighted_in_range(rng, index.popular_cum, lo[rows], hi[rows])
    return post


def _chunk(
    world: World, index: _Index, members: np.ndarray, chunk: int, first_event: int, first_session: int
) -> tuple[pa.Table, int]:
    rng = rng_for(world.config, STREAM_IMPRESSIONS, chunk)
    posts = world.posts
    s_mem, s_start, s_len, s_device = _sessions(world, members, rng)
    n_sessions = len(s_mem)
    i_sess = np.repeat(np.arange(n_sessions), s_len)
    i_mem, t_sess = s_mem[i_sess], s_start[i_sess]
    gaps = rng.exponential(world.config.policy.slot_seconds * US_PER_SECOND, size=len(i_sess))
    cum = np.cumsum(gaps)
    first_slot = np.cumsum(s_len) - s_len
    i_time = (t_sess + cum - cum[first_slot][i_sess]).astype(np.int64)
    post = _fill_slots(world, index, i_mem, t_sess, rng)

    # Drop empty slots and own posts, show a post at most once per session, never before it exists.
    keep = post >= 0
    keep[keep] &= posts.author[post[keep]] != i_mem[keep]
    keep[keep] &= posts.created_us[post[keep]] <= i_time[keep]
    kept = np.flatnonzero(keep)
    _, first = np.unique(i_sess[kept] * len(posts.author) + post[kept], return_index=True)
    kept = kept[np.sort(first)]
    i_sess, i_mem, i_time, post = i_sess[kept], i_mem[kept], i_time[kept], post[kept]
    position = np.arange(len(kept)) - np.searchsorted(i_sess, i_sess, side="left")

    labels = _labels(world, index, i_mem, post, i_time, position, rng)
    n = len(kept)
    columns = {
        "event_id": pa.array(np.arange(first_event, first_event + n, dtype=np.int64)),
        "member_id": pa.array(i_mem + 1),
        "post_id": pa.array(post + 1),
        "event_timestamp": ts_array(i_time),
        "session_id": pa.array(first_session + i_sess.astype(np.int64)),
        "device_type": pa.array(np.asarray(DEVICE_TYPES, dtype=object)[s_device[i_sess]]),
        "position": pa.array(position.astype(np.int32)),
        "request_id": pa.nulls(n, type=pa.string()),
    } | {name: pa.array(labels[name].astype(np.int8)) for name in LABELS}
    return pa.table(columns, schema=RAW_IMPRESSIONS), n_sessions


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def click_logit(
    world: World,
    pop_z: np.ndarray,
    follows: np.ndarray,
    i_mem: np.ndarray,
    post: np.ndarray,
    i_time: np.ndarray,
    position: np.ndarray,
) -> np.ndarray:
    """z of the engagement model (EngagementModel's docstring)."""
    eng, posts, m = world.config.engagement, world.posts, world.members
    theta = m.interests[i_mem, posts.topic[post]].astype(np.float64)
    age_days = (i_time - posts.created_us[post]) / US_PER_DAY
    return (
        eng.intercept
        + eng.interest * np.log(np.maximum(K_TOPICS * theta, np.exp(-3.0)))
        + eng.quality * posts.quality[post]
        + eng.popularity * pop_z[posts.author[post]]
        + eng.follow * follows
        - eng.recency_per_day * age_days
        - eng.position * np.log1p(position)
        + m.propensity[i_mem]
    )


def _labels(
    world: World,
    index: _Index,
    i_mem: np.ndarray,
    post: np.ndarray,
    i_time: np.ndarray,
    position: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The label hierarchy: click ~ Bernoulli(σ(z)); long_dwell mostly after a click; like/comment/share
    rarer and tied to z (comment and share only after a click); skip only when nothing else happened."""
    e = world.config.engagement
    n = len(world.members.activity)
    fkey = i_mem * n + world.posts.author[post]
    j = np.minimum(np.searchsorted(index.follow_key, fkey), max(len(index.follow_key) - 1, 0))
    follows = (
        (index.follow_key[j] == fkey) & (index.follow_created[j] <= i_time)
        if len(index.follow_key)
        else np.zeros(len(fkey), dtype=bool)
    )
    z = click_logit(world, index.pop_z, follows.astype(np.float64), i_mem, post, i_time, position)
    p = _sigmoid(z)
    u = rng.random((6, len(z)))
    click = u[0] < p
    long_dwell = np.where(
        click, u[1] < 0.9 * _sigmoid(z + e.long_dwell_offset), u[1] < e.long_dwell_no_click * p
    )
    p_like = _sigmoid(z + e.like_offset)
    like = u[2] < np.where(click, p_like, e.no_click_like * p_like)
    comment = click & (u[3] < _sigmoid(z + e.comment_offset))
    share = click & (u[4] < _sigmoid(z + e.share_offset))
    engaged = click | long_dwell | like | comment | share
    skip = ~engaged & (u[5] < e.skip_base + e.skip_slope * (1 - p))
    return {
        "click": click,
        "skip": skip,
        "long_dwell": long_dwell,
        "like": like,
        "comment": comment,
        "share": share,
    }
