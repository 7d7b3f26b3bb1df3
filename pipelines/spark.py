"""Spark session from :class:`feed.config.SparkConfig` (settings live in config, not in job code)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from feed.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def get_spark(cfg: SparkConfig | None = None) -> SparkSession:
    """Start (or reuse) the Spark session. ``local[*]`` by default; a cluster master by config."""
    from pyspark.sql import SparkSession

    cfg = cfg or SparkConfig()
    # The machine's hostname resolves to loopback; say so, or Spark warns on every start.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
