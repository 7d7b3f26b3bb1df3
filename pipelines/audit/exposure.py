"""Exposure metrics over audited feeds: who gets seen, by creator group and by creator.

Definitions (``reports/audit/audit.md`` repeats them):

- **exposure** of one feed item at 0-based position p: ``1 / log2(p + 2)`` — the DCG discount of rank
  r = p + 1, ``1 / log2(1 + r)``: the top item counts 1, the 10th 0.29, the 50th 0.18. Raw exposure counts
  every item as 1.
- **exposure share by group**: Σ exposure of items whose *author*'s group is g / Σ exposure of all items.
  The group is the author's ``audit_attributes`` value (authors are members); none → ``unknown``.
- **post share by group**: share of all posts (raw_posts) written by group g; **eligible post share**: the
  same over the posts the served index can return. **exposure ratio** = exposure share / post share
  (1 = exposure in proportion to output; < 1 under-exposed).
- **Gini of exposure** over every creator with at least one post (creators never shown count with 0), from
  the sorted exposures x₁ ≤ … ≤ xₙ: ``G = 2 Σ i·xᵢ / (n Σ xᵢ) − (n + 1) / n`` — 0 when all are equal,
  (n − 1) / n when one creator gets everything.
- **engagement share by group**: share of the lake's engaged impressions on posts by group g's authors —
  what the feed would mirror if it simply followed past engagement.
- **popularity bias**: the top 1% of those creators by engaged impressions of their posts (at least one
  creator; ties broken by author id) — their share of feed exposure vs their share of engagements.

numpy + pandas only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.audit.lake import UNKNOWN_GROUP

FEED_COLUMNS: tuple[str, ...] = ("request_id", "member_id", "position", "post_id", "author_id")


@dataclass(frozen=True)
class ExposureConfig:
    top_fraction: float = 0.01  # "top-1% authors" of the popularity-bias measure
    lorenz_points: int = 101  # points of the Lorenz curve kept in the report (the plot uses all)

    def __post_init__(self) -> None:
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")


def position_weight(position: np.ndarray | pd.Series | int) -> np.ndarray:
    """``1 / log2(p + 2)`` for 0-based positions p (rank r = p + 1: ``1 / log2(1 + r)``)."""
    p = np.asarray(position, dtype=np.float64)
    if (p < 0).any():
        raise ValueError("feed positions are 0-based and must be >= 0")
    return 1.0 / np.log2(p + 2.0)


def gini(values: np.ndarray | pd.Series | list[float]) -> float | None:
    """Gini coefficient of non-negative ``values`` (zeros included); None when empty or all zero."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size and x[0] < 0:
        raise ValueError("gini needs non-negative values")
    n, total = x.size, float(x.sum())
    if n == 0 or total <= 0:
        return None
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * (i * x).sum() / (n * total) - (n + 1) / n)


def lorenz(values: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative share of creators, cumulative share of exposure), creators sorted by exposure
    ascending, both starting at 0 and ending at 1 (the diagonal for an all-zero input)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = x.size, float(x.sum())
    people = np.arange(n + 1, dtype=np.float64) / max(n, 1)
    if total <= 0:
        return people, people.copy()
    return people, np.concatenate([[0.0], np.cumsum(x) / total])


def shares(weights: pd.Series) -> dict[str, float]:
    """Σ weight per index label / Σ weight, labels sorted (empty when the total is 0)."""
    total = float(weights.sum())
    if total <= 0:
        return {}
    by = weights.groupby(level=0).sum()
    return {str(k): float(v) / total for k, v in sorted(by.items(), key=lambda kv: str(kv[0]))}


def group_of(ids: np.ndarray | pd.Series, groups: pd.Series) -> np.ndarray:
    """The audited attribute's value of each member/author id (``unknown`` where it has none)."""
    return pd.Series(np.asarray(ids)).map(groups).fillna(UNKNOWN_GROUP).astype(str).to_numpy()


def ratios(numerator: Mapping[str, float], denominator: Mapping[str, float]) -> dict[str, float | None]:
    """numerator[g] / denominator[g] for every group of either (None where the denominator is 0/absent)."""
    out: dict[str, float | None] = {}
    for g in sorted(set(numerator) | set(denominator)):
        d = denominator.get(g, 0.0)
        out[g] = numerator.get(g, 0.0) / d if d > 0 else None
    return out


def top_authors(engagements: pd.Series, creators: np.ndarray, fraction: float) -> np.ndarray:
    """The ceil(fraction × n) creators (at least 1) with the most engagements, ties by smaller author id."""
    eng = engagements.reindex(creators, fill_value=0).to_numpy(np.float64)
    n_top = max(1, math.ceil(round(fraction * len(creators), 9)))
    order = np.lexsort((creators, -eng))  # last key is primary: engagements descending, then id
    return np.sort(creators[order[:n_top]])


def popularity_bias(
    exposure: pd.Series, engagements: pd.Series, creators: np.ndarray, fraction: float = 0.01
) -> dict[str, Any]:
    """Share of feed exposure and share of engagements of the top-``fraction`` creators by engagements.
    ``exposure`` and ``engagements``: author_id → value (missing = 0); ``creators``: the population."""
    top = top_authors(engagements, creators, fraction)
    eng = engagements.reindex(creators, fill_value=0).astype(np.float64)
    exp = exposure.reindex(creators, fill_value=0).astype(np.float64)
    eng_total, exp_total = float(eng.sum()), float(exp.sum())
    return {
        "n_creators": len(creators),
        "n_top": len(top),
        "top_author_ids": [int(a) for a in top],
        "engagement_share": float(eng[top].sum()) / eng_total if eng_total > 0 else None,
        "exposure_share": float(exp[top].sum()) / exp_total if exp_total > 0 else None,
    }


def check_feeds(feeds: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in FEED_COLUMNS if c not in feeds.columns]
    if missing:
        raise ValueError(f"feeds frame lacks columns {missing}; expected {list(FEED_COLUMNS)}")
    out = feeds.copy()
    out["weight"] = position_weight(out["position"].to_numpy())
    return out


def exposure_audit(
    feeds: pd.DataFrame,
    post_authors: pd.DataFrame,
    groups: pd.Series,
    *,
    eligible_post_ids: np.ndarray | None = None,
    engagements: pd.Series | None = None,
    cfg: ExposureConfig | None = None,
) -> dict[str, Any]:
    """Every exposure metric of the module docstring. ``feeds``: one row per served item
    (:data:`FEED_COLUMNS`, 0-based position); ``post_authors``: every post (post_id, author_id);
    ``groups``: member_id → attribute value; ``engagements``: author_id → engaged impressions."""
    cfg = cfg or ExposureConfig()
    items = check_feeds(feeds)
    posts = post_authors.drop_duplicates("post_id")
    creators = np.unique(
        np.concatenate([posts["author_id"].to_numpy(np.int64), items["author_id"].to_numpy(np.int64)])
    )
    item_group = pd.Index(group_of(items["author_id"], groups))
    post_group = pd.Index(group_of(posts["author_id"], groups))
    exposure = pd.Series(items["weight"].to_numpy(), index=item_group)
    raw = pd.Series(np.ones(len(items)), index=item_group)
    post_share = shares(pd.Series(np.ones(len(posts)), index=post_group))
    exposure_share = shares(exposure)
    per_creator = items.groupby("author_id")["weight"].sum().reindex(creators, fill_value=0.0)
    per_creator_raw = items.groupby("author_id").size().reindex(creators, fill_value=0).astype(np.float64)
    out: dict[str, Any] = {
        "feeds": int(items["request_id"].nunique()),
        "members": int(items["member_id"].nunique()),
        "items": len(items),
        "exposure_share_by_group": exposure_share,
        "exposure_share_by_group_raw": shares(raw),
        "post_share_by_group": post_share,
        "exposure_ratio_by_group": ratios(exposure_share, post_share),
        "n_creators": len(creators),
        "n_creators_exposed": int((per_creator > 0).sum()),
        "gini_exposure": gini(per_creator.to_numpy()),
        "gini_exposure_raw": gini(per_creator_raw.to_numpy()),
        "mean_position_by_group": {
            str(g): float(v) for g, v in items.groupby(item_group)["position"].mean().sort_index().items()
        },
    }
    if eligible_post_ids is not None:
        eligible = posts[posts["post_id"].isin(eligible_post_ids)]
        eligible_share = shares(
            pd.Series(np.ones(len(eligible)), index=pd.Index(group_of(eligible["author_id"], groups)))
        )
        out["eligible_post_share_by_group"] = eligible_share
        out["exposure_ratio_by_group_eligible"] = ratios(exposure_share, eligible_share)
        out["eligible_posts"] = len(eligible)
    if engagements is not None:
        eng = engagements.reindex(creators, fill_value=0).astype(np.float64)
        out["engagement_share_by_group"] = shares(
            pd.Series(eng.to_numpy(), index=pd.Index(group_of(creators, groups)))
        )
        out["popularity"] = popularity_bias(per_creator, engagements, creators, cfg.top_fraction)
        out["popularity_raw"] = popularity_bias(per_creator_raw, engagements, creators, cfg.top_fraction)
    people, cum = lorenz(per_creator.to_numpy())
    keep = np.unique(np.linspace(0, len(people) - 1, min(cfg.lorenz_points, len(people))).round().astype(int))
    out["lorenz"] = {"creators": people[keep].round(6).tolist(), "exposure": cum[keep].round(6).tolist()}
    return out


def creator_exposure(feeds: pd.DataFrame, post_authors: pd.DataFrame) -> np.ndarray:
    """Position-discounted exposure of every creator with a post (zeros included), for the Lorenz plot."""
    items = check_feeds(feeds)
    creators = np.unique(
        np.concatenate([post_authors["author_id"].to_numpy(np.int64), items["author_id"].to_numpy(np.int64)])
    )
    return items.groupby("author_id")["weight"].sum().reindex(creators, fill_value=0.0).to_numpy()


PATH_KEYS = ("feeds", "items", "exposure_share_by_group", "exposure_ratio_by_group", "gini_exposure")


def exposure_by_path(
    feeds: pd.DataFrame, post_authors: pd.DataFrame, groups: pd.Series
) -> dict[str, dict[str, Any]]:
    """The headline exposure figures of each serving path's feeds (``path`` column: personalized or
    popular), so a fallback-heavy sample can be told apart from the model's own feeds."""
    if "path" not in feeds.columns:
        return {}
    out = {}
    for path, part in feeds.groupby("path"):
        metrics = exposure_audit(part, post_authors, groups)
        out[str(path)] = {k: metrics[k] for k in PATH_KEYS}
    return out
