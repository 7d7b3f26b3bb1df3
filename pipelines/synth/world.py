"""The static part of the synthetic world: members (profiles, latent interests, activity), authors, posts,
follows and profile updates. Impressions are drawn from it in :mod:`pipelines.synth.impressions`.

Everything is drawn from ``numpy.random.Generator`` streams seeded by ``(seed, stream id)``, so the same
config gives the same tables, and adding draws to one stream leaves the others unchanged. Per-row Python runs
only where text is written (members, posts, profile updates); impressions are fully vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa

from pipelines.schemas import (
    AUDIT_ATTRIBUTES,
    POST_FORMATS,
    RAW_FOLLOWS,
    RAW_MEMBERS,
    RAW_POSTS,
    RAW_PROFILE_UPDATES,
    TRUTH_MEMBERS,
    TRUTH_POSTS,
)
from pipelines.synth import vocab
from pipelines.synth.config import SynthConfig

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
K_TOPICS = len(vocab.TOPICS)
FORMAT_PROBS = np.array([0.30, 0.20, 0.20, 0.10, 0.05, 0.15])  # order of POST_FORMATS
DEVICE_PROBS = np.array([0.55, 0.30, 0.10, 0.05])  # order of DEVICE_TYPES: members' usual device
GENERAL_DOMAINS = ("businessdaily-news.com", "worktrends-journal.com", "industryinsider-weekly.com")

# Stream ids of the seeded generators (never reuse one for another purpose).
STREAM_MEMBERS, STREAM_AUTHORS, STREAM_POSTS, STREAM_FOLLOWS, STREAM_UPDATES, STREAM_IMPRESSIONS = range(1, 7)


def rng_for(config: SynthConfig, *stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *stream])


def to_us(ts: datetime) -> int:
    return int(ts.timestamp() * US_PER_SECOND)


def ts_array(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


@dataclass(frozen=True)
class Members:
    """Members in member_id order (member_id = index + 1)."""

    table: pa.Table  # raw_members
    role: np.ndarray  # index into vocab.ROLES
    prefix: list[str]  # seniority prefix of the current title
    company: list[str]
    skills: list[list[str]]
    work_history: list[list[dict]]
    interests: np.ndarray  # (N, K) float32, rows sum to 1 — latent, truth only
    activity: np.ndarray  # expected sessions per day
    depth: np.ndarray  # scroll depth multiplier of the session length
    propensity: np.ndarray  # u_m of the click logit
    device: np.ndarray  # index into DEVICE_TYPES
    created_us: np.ndarray
    group_a: np.ndarray  # bool: sensitive attribute, audit only


@dataclass(frozen=True)
class Posts:
    """Posts sorted by created_at (post_id = index + 1)."""

    table: pa.Table
    author: np.ndarray  # member index of the author
    topic: np.ndarray  # index into vocab.TOPICS
    quality: np.ndarray
    created_us: np.ndarray


@dataclass(frozen=True)
class World:
    config: SynthConfig
    members: Members
    popularity: np.ndarray  # (N,) latent author popularity (0 for members who never post)
    posts: Posts
    follows: pa.Table
    follow_member: np.ndarray
    follow_author: np.ndarray
    follow_created_us: np.ndarray
    profile_updates: pa.Table

    @property
    def start_us(self) -> int:
        return to_us(self.config.start)

    @property
    def end_us(self) -> int:
        return self.start_us + self.config.days * US_PER_DAY

    def audit_attributes(self) -> pa.Table:
        n = len(self.members.group_a)
        return pa.table(
            {
                "member_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
                "attribute": pa.array(["group"] * n),
                "value": pa.array(np.where(self.members.group_a, "A", "B")),
            },
            schema=AUDIT_ATTRIBUTES,
        )

    def truth_members(self) -> pa.Table:
        m = self.members
        n = len(m.activity)
        flat = pa.array(m.interests.astype(np.float32).ravel())
        offsets = pa.array(np.arange(0, (n + 1) * K_TOPICS, K_TOPICS, dtype=np.int32))
        return pa.table(
            {
                "member_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
                "interests": pa.ListArray.from_arrays(offsets, flat),
                "activity": pa.array(m.activity.astype(np.float64)),
            },
            schema=TRUTH_MEMBERS,
        )

    def truth_posts(self) -> pa.Table:
        p = self.posts
        return pa.table(
            {
                "post_id": pa.array(np.arange(1, len(p.topic) + 1, dtype=np.int64)),
                "topic": pa.array(np.asarray(vocab.TOPICS, dtype=object)[p.topic]),
                "quality": pa.array(p.quality.astype(np.float64)),
            },
            schema=TRUTH_POSTS,
        )


def build_world(config: SynthConfig) -> World:
    members = _members(config)
    popularity = _popularity(config, members)
    posts = _posts(config, members, popularity)
    fm, fa, fc = _follows(config, members, popularity)
    follows = pa.table(
        {"member_id": pa.array(fm + 1), "author_id": pa.array(fa + 1), "created_at": ts_array(fc)},
        schema=RAW_FOLLOWS,
    )
    updates = _profile_updates(config, members)
    return World(config, members, popularity, posts, follows, fm, fa, fc, updates)


# --- members -----------------------------------------------------------------------------------------------


def _role_priors() -> np.ndarray:
    """(n_roles, K) latent interest prior of each role, rows normalised."""
    index = {t: i for i, t in enumerate(vocab.TOPICS)}
    prior = np.zeros((len(vocab.ROLES), K_TOPICS))
    for r, role in enumerate(vocab.ROLES):
        for topic, weight in role.topics:
            prior[r, index[topic]] = weight
    return prior / prior.sum(axis=1, keepdims=True)


def _company_pools(rng: np.random.Generator) -> dict[str, list[str]]:
    """Twelve fictitious employers per industry."""
    pools: dict[str, list[str]] = {}
    for industry in vocab.INDUSTRIES:
        names: set[str] = set()
        while len(names) < 12:
            names.add(
                f"{vocab.COMPANY_PREFIXES[rng.integers(len(vocab.COMPANY_PREFIXES))]}"
                f"{vocab.COMPANY_STEMS[rng.integers(len(vocab.COMPANY_STEMS))]} "
                f"{vocab.COMPANY_KINDS[rng.integers(len(vocab.COMPANY_KINDS))]}"
            )
        pools[industry] = sorted(names)
    return pools


def _seniority(years: float) -> str:
    prefix = ""
    for min_years, p in vocab.SENIORITY:
        if years >= min_years:
            prefix = p
    return prefix


def _members(config: SynthConfig) -> Members:
    rng = rng_for(config, STREAM_MEMBERS)
    n = config.n_members
    start_us = to_us(config.start)
    role = rng.integers(len(vocab.ROLES), size=n)
    # Latent interests: Dirichlet(base + c · role prior), drawn as normalised gammas (one alpha per row).
    alpha = config.interest_base + config.interest_concentration * _role_priors()[role]
    gam = rng.gamma(alpha)
    interests = (gam / gam.sum(axis=1, keepdims=True)).astype(np.float32)
    years = rng.gamma(2.0, 4.0, size=n)
    # Heavy-tailed usage: lognormal sessions/day with the configured mean; the more active scroll deeper.
    eps = rng.standard_normal((2, n))
    sigma = config.activity_sigma
    activity = np.exp(np.log(config.mean_sessions_per_day) - sigma**2 / 2 + sigma * eps[0])
    activity = np.minimum(activity, config.max_sessions_per_day)
    ds = config.depth_sigma
    depth = np.exp(-(ds**2) / 2 + ds * (0.5 * eps[0] + np.sqrt(0.75) * eps[1]))
    propensity = rng.normal(0.0, config.engagement.member_sd, size=n)
    device = rng.choice(len(DEVICE_PROBS), size=n, p=DEVICE_PROBS)
    new = rng.random(n) < config.new_member_share
    back = rng.random(n) * config.member_history_years * 365 * US_PER_DAY
    during = rng.random(n) * max(config.days - 1, 1) * US_PER_DAY
    created_us = np.where(new, start_us + during, start_us - US_PER_DAY - back).astype(np.int64)
    group_a = rng.random(n) < config.group_a_share
    top2 = np.argsort(-interests, axis=1)[:, :2]
    pools = _company_pools(rng)
    u = rng.random((n, 24))  # per-member uniforms; each column has one use
    start_day = config.start.date()

    headlines, roles_out, industries, skills, educations, histories, prefixes, companies = (
        [] for _ in range(8)
    )
    for i in range(n):
        r = vocab.ROLES[role[i]]
        prefix = _seniority(years[i]) if r.ladder else ""
        title = f"{prefix}{r.title}"
        company = pools[r.industry][int(u[i, 0] * 12)]
        k = 3 + int(u[i, 1] * 3)
        order = np.argsort(u[i, 2 : 2 + len(r.skills)])  # roles list at most six skills
        own = [r.skills[j] for j in order[:k]]
        topic_skills = [vocab.TOPIC_SPECS[t].skills[int(u[i, 8] * 3) % 3] for t in top2[i]]
        member_skills = list(dict.fromkeys(own + topic_skills[: 1 + int(u[i, 9] < 0.5)]))
        kind = int(u[i, 10] * 3)
        if kind == 0:
            headline = f"{title} at {company}"
        elif kind == 1:
            headline = f"{title} | {member_skills[0]} · {member_skills[-1]}"
        else:
            headline = f"{title} in {r.industry} | passionate about {topic_skills[0]}"
        degree = vocab.DEGREES[int(u[i, 11] * len(vocab.DEGREES))]
        school = vocab.UNIVERSITIES[int(u[i, 12] * len(vocab.UNIVERSITIES))]
        education = [f"{degree} {r.field_of_study}, {school}"]
        if years[i] >= 6 and u[i, 13] < 0.25:
            education.append("MBA, Summit Business School")
        history = _work_history(r, prefix, company, years[i], u[i], pools, start_day)
        headlines.append(headline)
        roles_out.append(title)
        industries.append(r.industry)
        skills.append(member_skills)
        educations.append(education)
        histories.append(history)
        prefixes.append(prefix)
        companies.append(company)

    table = pa.table(
        {
            "member_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "headline": headlines,
            "current_role": roles_out,
            "industry": industries,
            "skills": skills,
            "education": educations,
            "work_history": pa.array(histories, type=RAW_MEMBERS.field("work_history").type),
            "created_at": ts_array(created_us),
        },
        schema=RAW_MEMBERS,
    )
    return Members(
        table,
        role,
        prefixes,
        companies,
        skills,
        histories,
        interests,
        activity,
        depth,
        propensity,
        device,
        created_us,
        group_a,
    )


def _work_history(
    role: vocab.Role,
    prefix: str,
    company: str,
    years: float,
    u: np.ndarray,
    pools: dict[str, list[str]],
    today: date,
) -> list[dict]:
    """Current position first, then up to three earlier ones, newest first, with consecutive dates."""
    current_start = today - timedelta(days=int(365 * min(years, 6.0) * u[14]) + 30)
    positions = [
        {
            "title": f"{prefix}{role.title}",
            "company": company,
            "industry": role.industry,
            "start": current_start,
            "end": None,
        }
    ]
    end = current_start
    pool = pools[role.industry]
    for j in range(min(3, int(years // 3))):
        begin = end - timedelta(days=int(365 * (1 + 3 * u[15 + j])))
        title = role.title if j == 0 and prefix not in ("", "Junior ") else f"Junior {role.title}"
        positions.append(
            {
                "title": title,
                "company": pool[int(u[18 + j] * len(pool))],
                "industry": role.industry,
                "start": begin,
                "end": end,
            }
        )
        end = begin
    return positions


# --- authors and posts -------------------------------------------------------------------------------------


def _popularity(config: SynthConfig, members: Members) -> np.ndarray:
    """Pareto popularity for the members who post (the rest get 0)."""
    rng = rng_for(config, STREAM_AUTHORS)
    n = len(members.activity)
    is_author = rng.random(n) < config.author_share
    is_author[rng.choice(n, size=min(5, n), replace=False)] = True  # a feed needs a few authors at any size
    pareto = (1.0 - rng.random(n)) ** (-1.0 / config.popularity_alpha)
    return np.where(is_author, pareto, 0.0)


def author_topics(members: Members) -> np.ndarray:
    """(N, K) topic distribution of what each member writes about: squared interests (authors specialise)."""
    sharp = members.interests.astype(np.float64) ** 2
    return sharp / sharp.sum(axis=1, keepdims=True)


def sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows sum to 1), vectorised."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _posts(config: SynthConfig, members: Members, popularity: np.ndarray) -> Posts:
    rng = rng_for(config, STREAM_POSTS)
    p = config.n_posts
    start_us = to_us(config.start)
    authors = np.flatnonzero(popularity > 0)
    rate = popularity[authors] ** 0.6 * rng.lognormal(0.0, 0.5, size=len(authors))
    author = authors[rng.choice(len(authors), size=p, p=rate / rate.sum())]
    topic = sample_rows(rng, author_topics(members)[author])
    quality = rng.standard_normal(p)  # independent of the author's group: equal quality across groups
    fmt = rng.choice(len(POST_FORMATS), size=p, p=FORMAT_PROBS)
    backlog = rng.random(p) < config.backlog_post_share
    created = np.where(
        backlog,
        start_us - rng.random(p) * config.backlog_days * US_PER_DAY,
        start_us + rng.random(p) * config.days * US_PER_DAY,
    ).astype(np.int64)
    # Nobody posts before joining: an author created mid-period posts after their first hour.
    created = np.maximum(created, members.created_us[author] + 3600 * US_PER_SECOND)
    end_us = start_us + config.days * US_PER_DAY
    created = np.minimum(created, end_us - US_PER_SECOND)
    order = np.argsort(created, kind="stable")
    author, topic, quality, fmt, created = (
        author[order],
        topic[order],
        quality[order],
        fmt[order],
        created[order],
    )

    u = rng.random((p, 8))
    texts, titles, domains = [], [], []
    for i in range(p):
        spec = vocab.TOPIC_SPECS[topic[i]]
        fmt_name = POST_FORMATS[fmt[i]]
        ph = spec.phrases
        a = int(u[i, 0] * len(ph))
        b = (a + 1 + int(u[i, 1] * (len(ph) - 1))) % len(ph)
        c = (b + 1 + int(u[i, 2] * (len(ph) - 2))) % len(ph)
        if c == a:
            c = (c + 1) % len(ph)
        templates = vocab.POST_TEMPLATES[fmt_name]
        body = templates[int(u[i, 3] * len(templates))].format(a=ph[a], b=ph[b], c=ph[c])
        n_extra = int(u[i, 4] < 0.6) + int(u[i, 5] < 0.25)
        extra = [spec.extra_tags[(int(u[i, 6] * 7) + j) % len(spec.extra_tags)] for j in range(n_extra)]
        tags = " ".join(f"#{t}" for t in dict.fromkeys([spec.hashtag, *extra]))
        texts.append(f"{body} {tags}")
        if fmt_name == "article":
            tmpl = vocab.ARTICLE_TITLES[int(u[i, 7] * len(vocab.ARTICLE_TITLES))]
            titles.append(tmpl.format(a=ph[a], A=ph[a][:1].upper() + ph[a][1:], b=ph[b]))
            pool = spec.domains + GENERAL_DOMAINS[:1]
            domains.append(pool[int(u[i, 6] * len(pool))])
        else:
            titles.append(None)
            domains.append(None)
    table = pa.table(
        {
            "post_id": pa.array(np.arange(1, p + 1, dtype=np.int64)),
            "author_id": pa.array(author + 1),
            "format": pa.array(np.asarray(POST_FORMATS, dtype=object)[fmt]),
            "text": texts,
            "article_title": pa.array(titles, type=pa.string()),
            "article_domain": pa.array(domains, type=pa.string()),
            "created_at": ts_array(created),
        },
        schema=RAW_POSTS,
    )
    return Posts(table, author, topic, quality, created)


# --- follows -----------------------------------------------------------------------------------------------


def _weighted_pick(rng: np.random.Generator, cum: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn ∝ the weights whose cumulative sum is ``cum``."""
    return np.minimum(np.searchsorted(cum, rng.random(size) * cum[-1], side="right"), len(cum) - 1)


def _follows(
    config: SynthConfig, members: Members, popularity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each member follows ~lognormal(follows_mean) authors: half drawn ∝ popularity (so followers are
    heavy-tailed), half ∝ popularity among authors writing mostly on a topic the member is interested in."""
    rng = rng_for(config, STREAM_FOLLOWS)
    n = len(members.activity)
    authors = np.flatnonzero(popularity > 0)
    mean = config.follows_mean
    count = rng.poisson(rng.lognormal(np.log(mean) - 0.5, 1.0, size=n))
    count = np.minimum(count, len(authors) - 1)
    fm = np.repeat(np.arange(n), count)
    total = len(fm)
    fa = authors[_weighted_pick(rng, np.cumsum(popularity[authors]), total)]
    by_topic = rng.random(total) < 0.5
    main_topic = np.argmax(author_topics(members)[authors], axis=1)
    want = sample_rows(rng, members.interests[fm[by_topic]].astype(np.float64))
    picked = np.empty(len(want), dtype=np.int64)
    for k in range(K_TOPICS):
        rows = np.flatnonzero(want == k)
        cands = authors[main_topic == k]
        if len(cands) == 0:
            cands = authors
        picked[rows] = cands[_weighted_pick(rng, np.cumsum(popularity[cands]), len(rows))]
    fa[by_topic] = picked
    keep = fa != fm
    fm, fa = fm[keep], fa[keep]
    _, first = np.unique(fm.astype(np.int64) * n + fa, return_index=True)
    first.sort()
    fm, fa = fm[first], fa[first]
    start_us = to_us(config.start)
    end_us = start_us + config.days * US_PER_DAY
    lower = np.maximum(members.created_us[fm], members.created_us[fa])
    before = (rng.random(len(fm)) < config.follows_before_start) & (lower < start_us)
    lo = np.where(before, lower, np.maximum(lower, start_us))
    hi = np.where(before, start_us, end_us)
    created = (lo + rng.random(len(fm)) * np.maximum(hi - lo, 0)).astype(np.int64)
    return fm.astype(np.int64), fa.astype(np.int64), created


# --- profile updates ---------------------------------------------------------------------------------------


def _profile_updates(config: SynthConfig, members: Members) -> pa.Table:
    """Some members change their profile mid-period: a promotion (title, headline, work history), a job
    change to another role of the same industry (title, headline, skills, work history) or new skills only.
    Only the changed fields are non-null. Latent interests stay fixed (documented in docs/data.md)."""
    rng = rng_for(config, STREAM_UPDATES)
    start_us = to_us(config.start)
    eligible = np.flatnonzero(members.created_us < start_us)
    chosen = np.sort(
        rng.choice(eligible, size=int(config.profile_update_share * len(eligible)), replace=False)
    )
    when = (start_us + (0.2 + 0.6 * rng.random(len(chosen))) * config.days * US_PER_DAY).astype(np.int64)
    u = rng.random((len(chosen), 4))
    by_industry: dict[str, list[int]] = {}
    for r, role in enumerate(vocab.ROLES):
        by_industry.setdefault(role.industry, []).append(r)
    rows: list[dict] = []
    for i, m in enumerate(chosen):
        role = vocab.ROLES[members.role[m]]
        day = (config.start + timedelta(microseconds=int(when[i] - start_us))).date()
        old_history = members.work_history[m]
        closed = [{**old_history[0], "end": day}, *old_history[1:]]
        row: dict = {"member_id": int(m) + 1, "event_timestamp": int(when[i])}
        kind = int(u[i, 0] * 3)
        if kind == 0 and not role.ladder:
            kind = 2  # no promotion ladder (students): a new skill instead
        if kind == 0:
            ladder = [p for _, p in vocab.SENIORITY]
            prefix = ladder[min(ladder.index(members.prefix[m]) + 1, len(ladder) - 1)]
            title = f"{prefix}{role.title}"
            row |= {
                "current_role": title,
                "headline": f"{title} at {members.company[m]}",
                "work_history": [{**old_history[0], "title": title, "start": day, "end": None}, *closed],
            }
        elif kind == 1:
            options = by_industry[role.industry]
            new_role = vocab.ROLES[options[int(u[i, 1] * len(options))]]
            title = f"{members.prefix[m]}{new_role.title}"
            company = f"{members.company[m].split(' ')[0]} Ventures"
            skills = list(dict.fromkeys(members.skills[m] + list(new_role.skills[:2])))
            row |= {
                "current_role": title,
                "headline": f"{title} at {company}",
                "industry": new_role.industry,
                "skills": skills,
                "work_history": [
                    {
                        "title": title,
                        "company": company,
                        "industry": new_role.industry,
                        "start": day,
                        "end": None,
                    },
                    *closed,
                ],
            }
        else:
            spec = vocab.TOPIC_SPECS[int(np.argmax(members.interests[m]))]
            new_skill = spec.skills[int(u[i, 2] * len(spec.skills))]
            row["skills"] = list(dict.fromkeys([*members.skills[m], new_skill]))
        rows.append(row)
    columns = {f.name: [r.get(f.name) for r in rows] for f in RAW_PROFILE_UPDATES}
    columns["event_timestamp"] = ts_array(np.asarray(columns["event_timestamp"], dtype=np.int64))
    return pa.table(
        {
            f.name: pa.array(columns[f.name], type=f.type) if f.name != "event_timestamp" else columns[f.name]
            for f in RAW_PROFILE_UPDATES
        },
        schema=RAW_PROFILE_UPDATES,
    )
