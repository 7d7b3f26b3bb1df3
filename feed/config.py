"""Typed configuration, read once by the CLI and passed down.

Only :class:`FeedSettings` reads the environment (prefix ``FEED_``); library code receives the resolved
:class:`FeedPaths` / :class:`SparkConfig` objects and never looks at ``os.environ`` or ``sys.argv`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO_DIR = PROJECT_ROOT / "feature_repo"
REPORTS_DIR = PROJECT_ROOT / "reports"

RAW_TABLES = (
    "raw_members",
    "raw_posts",
    "raw_follows",
    "raw_impressions",
    "raw_profile_updates",
)
FEATURE_TABLES = (
    "member_profile",
    "member_history",
    "member_sequence",
    "member_affinity",
    "post_content",
    "post_engagement",
    "author_stats",
)
EMBEDDING_TABLES = ("member_embeddings", "post_embeddings")
TRUTH_TABLES = ("truth_members", "truth_posts")
AUDIT_TABLE = "audit_attributes"


@dataclass(frozen=True)
class FeedPaths:
    """Where everything generated lives. All of it is git-ignored (``data/``, ``artifacts/``)."""

    home: Path  # project working directory; data/ and artifacts/ hang off it

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def landing(self) -> Path:
        """Raw files as they arrive (generator / loaders write here; ``feed data ingest`` reads)."""
        return self.data / "landing"

    @property
    def lake(self) -> Path:
        """Delta tables: raw_*, features, embeddings, truth_*, audit_attributes."""
        return self.data / "lake"

    @property
    def staging(self) -> Path:
        """Batches computed but not yet validated by the quality gate."""
        return self.data / "staging"

    @property
    def quarantine(self) -> Path:
        """Batches the quality gate refused, with their validation results."""
        return self.data / "quarantine"

    @property
    def feast(self) -> Path:
        """Feast registry and SQLite online store for the embedded default."""
        return self.data / "feast"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    def table(self, name: str) -> Path:
        """Path of the Delta table ``name`` in the lake."""
        return self.lake / name


@dataclass(frozen=True)
class SparkConfig:
    """Spark settings live here, not in job code (STYLE.md)."""

    master: str = "local[*]"
    app_name: str = "feed"
    conf: dict[str, str] = field(
        default_factory=lambda: {
            "spark.sql.session.timeZone": "UTC",
            # Delta (delta-rs) cannot read INT96 timestamps; write micros (STACK.md).
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            "spark.sql.shuffle.partitions": "8",  # 2-core default; raise on a cluster
            "spark.driver.memory": "6g",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",  # progress bars would interleave with our own output
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        }
    )


class FeedSettings(BaseSettings):
    """The one place the environment is read. ``FEED_HOME``, ``FEED_DATA_DIR``, ``FEED_SPARK_MASTER``."""

    model_config = SettingsConfigDict(env_prefix="FEED_", extra="ignore")

    home: Path = Field(default_factory=Path.cwd)
    data_dir: Path | None = None  # real data sets (MovieLens, MIND) supplied by the user
    spark_master: str = "local[*]"

    def paths(self) -> FeedPaths:
        return FeedPaths(home=self.home.resolve())

    def spark(self) -> SparkConfig:
        return SparkConfig(master=self.spark_master)
