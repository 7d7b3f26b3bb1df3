"""Configuration of the synthetic LinkedIn-like world. Every constant of the generative model is here, so
docs/data.md and the code cannot drift apart silently; :func:`synth_config` gives the named scales."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

DEFAULT_START = datetime(2026, 9, 1, tzinfo=UTC)


@dataclass(frozen=True)
class EngagementModel:
    """Click logit z = intercept + interest·log(clip(K·θ[m, topic], e^-3, ∞)) + quality·q + popularity·pop_z
    + follow·[m follows author] − recency_per_day·age_days − position·log1p(position) + u_m.
    Defaults give a click rate near 10 % at ``small``; see docs/data.md for the label hierarchy."""

    intercept: float = -3.0
    interest: float = 0.85  # per unit of log(K·θ): a top-interest topic (θ≈0.4, K=26) adds ≈ +2
    quality: float = 0.6  # per standard deviation of latent post quality
    popularity: float = 0.45  # per standard deviation of log author popularity
    follow: float = 0.7  # the member follows the author (at the impression time)
    recency_per_day: float = 0.08  # linear decay of the logit with post age in days
    position: float = 0.35  # per log1p(feed position): position bias
    member_sd: float = 0.5  # sd of the member propensity u_m ~ N(0, member_sd²)
    long_dwell_offset: float = 1.0  # P(long_dwell | click) = 0.9·σ(z + offset)
    long_dwell_no_click: float = 0.08  # P(long_dwell | no click) = this · p
    like_offset: float = -1.0  # P(like | click) = σ(z + offset); without a click ×no_click_like
    no_click_like: float = 0.1
    comment_offset: float = -2.5  # P(comment | click) = σ(z + offset); never without a click
    share_offset: float = -3.2  # P(share | click) = σ(z + offset); never without a click
    skip_base: float = 0.3  # P(skip | not engaged) = skip_base + skip_slope·(1 − p)
    skip_slope: float = 0.6


@dataclass(frozen=True)
class LoggingPolicy:
    """The feed that produced the logged impressions: each slot is filled from one source, then slots are
    shuffled (so position is independent of the source and its effect is pure position bias)."""

    followed: float = 0.35  # a recent post by an author the member follows
    popular: float = 0.25  # a recent post drawn ∝ author popularity · exp(0.3·quality)
    topic: float = 0.25  # a recent post on a topic drawn from the member's (noisy) interests
    random: float = 0.15  # a uniformly random recent post
    window_days: int = 14  # "recent": created at most this many days before the session
    topic_noise: float = 0.3  # topic source draws from (1 − noise)·θ + noise·uniform: the policy is imperfect
    slot_seconds: float = 8.0  # mean time between consecutive impressions of a session


@dataclass(frozen=True)
class SynthConfig:
    n_members: int
    n_posts: int
    days: int  # length of the logged period (impressions, new posts, profile updates)
    seed: int = 0
    start: datetime = DEFAULT_START
    author_share: float = 0.12  # members who post
    group_a_share: float = 0.6  # sensitive attribute "group": A with this probability, else B
    member_history_years: float = 3.0  # members created before the start are spread over this many years
    new_member_share: float = 0.08  # members who join during the period (cold start)
    backlog_days: int = 14  # posts created before the start, so the first sessions have a feed
    backlog_post_share: float = 0.25
    popularity_alpha: float = 1.3  # Pareto tail index of author popularity (smaller = heavier tail)
    interest_concentration: float = 3.0  # Dirichlet alpha = base + concentration · role prior
    interest_base: float = 0.05
    mean_sessions_per_day: float = 0.3  # mean of the lognormal member activity
    activity_sigma: float = 1.8  # sd of log activity: heavy-tailed usage
    max_sessions_per_day: float = 30.0
    mean_session_length: float = 8.0  # impressions per session ≈ 1 + Poisson((mean − 1)·depth_m)
    depth_sigma: float = 0.5  # sd of log scroll depth (per member, correlated with activity)
    follows_mean: float = 20.0  # lognormal mean follows per member (capped by the number of authors)
    follows_before_start: float = 0.85
    profile_update_share: float = 0.05
    chunk_members: int = 4000  # impressions are generated (and written) per chunk of members
    engagement: EngagementModel = field(default_factory=EngagementModel)
    policy: LoggingPolicy = field(default_factory=LoggingPolicy)

    def __post_init__(self) -> None:
        if self.n_members < 10 or self.n_posts < 10 or self.days < 1:
            raise ValueError(f"SynthConfig too small: {self.n_members} members, {self.n_posts} posts")
        if self.start.tzinfo is None:
            raise ValueError("SynthConfig.start must be timezone-aware (UTC)")


SCALES: dict[str, dict[str, int]] = {
    "tiny": {"n_members": 1_000, "n_posts": 2_500, "days": 28},
    "small": {"n_members": 20_000, "n_posts": 50_000, "days": 42},
    "medium": {"n_members": 200_000, "n_posts": 500_000, "days": 56},
}


def synth_config(scale: str = "tiny", seed: int = 0, **overrides: object) -> SynthConfig:
    """The named scale (``tiny``, ``small``, ``medium``) with ``overrides`` applied."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    return replace(SynthConfig(**SCALES[scale], seed=seed), **overrides)
