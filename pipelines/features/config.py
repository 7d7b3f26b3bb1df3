"""Feature pipeline settings (one frozen dataclass, built once and passed down)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.schemas import POST_ENGAGEMENT_WINDOWS


@dataclass(frozen=True)
class FeatureConfig:
    """Windows and caps of the feature definitions. Column names in ``schemas.py`` are the Feast contract, so
    the engagement windows must keep matching them (changing one means changing the schema too)."""

    engagement_windows_days: tuple[int, ...] = (1, 7, 28)  # post_engagement views_1d/_7d/_28d, ...
    cohort_days: int = 28  # percentile cohort: posts created in the 28 days before the snapshot
    author_window_days: int = 28  # author_stats posts_28d / engagements_28d
    affinity_window_days: int = 28  # member_affinity looks at the last 28 days of engagements
    history_cap: int = 256  # member_history keeps the most recent 256 engaged post ids
    # member_sequence keeps the newest 1024 impressions: the GR ranker's history length (RankingSetConfig's
    # max_history), so serving reads as much history as the model was trained on.
    sequence_max_len: int = 1024
    top_k_authors: int = 20
    top_k_topics: int = 20

    def __post_init__(self) -> None:
        names = tuple(f"{d}d" for d in self.engagement_windows_days)
        if names != POST_ENGAGEMENT_WINDOWS:
            raise ValueError(
                f"engagement_windows_days={self.engagement_windows_days} must match the post_engagement "
                f"schema windows {POST_ENGAGEMENT_WINDOWS} (pipelines/schemas.py)"
            )
        for name in (
            "cohort_days",
            "author_window_days",
            "affinity_window_days",
            "history_cap",
            "sequence_max_len",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.top_k_authors < 1 or self.top_k_topics < 1:
            raise ValueError("top_k_authors and top_k_topics must be >= 1")
