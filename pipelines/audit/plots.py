"""The audit's two plots (matplotlib, Agg: no display needed): exposure vs post share per creator group, and
the Lorenz curve of creator exposure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def share_bars(
    exposure: Mapping[str, float],
    posts: Mapping[str, float],
    out: Path,
    *,
    eligible: Mapping[str, float] | None = None,
    attribute: str = "group",
) -> Path:
    """Grouped bars per creator group: share of posts, of eligible posts (if given), of feed exposure."""
    plt = _pyplot()
    groups = sorted(set(exposure) | set(posts) | set(eligible or {}))
    series = [("share of posts", posts)]
    if eligible is not None:
        series.append(("share of eligible posts", eligible))
    series.append(("share of feed exposure (position-discounted)", exposure))
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, values) in enumerate(series):
        heights = [values.get(g, 0.0) for g in groups]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, [f"{attribute} {g}" for g in groups])
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.set_title("Creator exposure vs share of posts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def lorenz_curve(creators: np.ndarray, exposure: np.ndarray, gini: float | None, out: Path) -> Path:
    """The Lorenz curve (cumulative share of creators → of exposure) against the equality diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="equal exposure")
    label = "creators" if gini is None else f"creators (Gini {gini:.3f})"
    ax.plot(creators, exposure, label=label)
    ax.set_xlabel("cumulative share of creators (least exposed first)")
    ax.set_ylabel("cumulative share of feed exposure")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Lorenz curve of creator exposure")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
