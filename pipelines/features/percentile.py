"""DESIGN.md's percentile bucket, one rule for Spark (batch) and plain Python (nearline).

bucket(x) = 1 + floor(99 × percent_rank(x)) with Spark's percent_rank: (rank − 1) / (n − 1) where tied
values share the lowest rank, and 0 for a cohort of one. ``rank − 1`` is the number of cohort values strictly
below x, so everything here is written in terms of ``smaller`` (values below x) and ``n`` (cohort size).

The division and the product are IEEE doubles in the same order everywhere (Python float, Spark/Java double,
DuckDB DOUBLE): ``99.0 * (smaller / (n − 1))``. That matters: exact integer arithmetic,
``(99·smaller) // (n−1)``, disagrees with the double result for some (smaller, n) pairs (574 of the 4.5M
with n ≤ 3000, e.g. 1632 of 2993), so a nearline path using integers would drift from the batch tables.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

BUCKETS = 100  # buckets are 1..100


def bucket_from_rank(smaller: int, n: int) -> int:
    """Bucket of a value with ``smaller`` cohort values strictly below it in a cohort of ``n``."""
    if n <= 1:
        return 1  # Spark's percent_rank of a single row is 0
    percent_rank = smaller / (n - 1)
    # Only a value above the whole cohort (nearline: smaller == n) can exceed 100; batch values never do.
    return min(1 + math.floor(99.0 * percent_rank), BUCKETS)


def buckets(values: Sequence[float]) -> list[int]:
    """Buckets of every value of one cohort (same order as ``values``)."""
    ordered = sorted(values)
    n = len(ordered)
    return [bucket_from_rank(bisect.bisect_left(ordered, v), n) for v in values]


@dataclass(frozen=True)
class CutPoints:
    """A snapshot's cut points: what the nearline path keeps instead of the whole cohort.

    ``thresholds[b − 2]`` is the cohort value a count must exceed to reach bucket ``b`` (``inf`` when no count
    can); so ``bucket(x) = 1 + #{thresholds < x}``. For a count equal to a cohort value this is exactly the
    batch bucket; a new count is ranked against the snapshot's cohort as it was (it does not join it).
    """

    thresholds: tuple[float, ...]  # 99 nondecreasing entries, for buckets 2..100
    cohort_size: int

    def bucket(self, x: float) -> int:
        return 1 + bisect.bisect_left(self.thresholds, x)


def cut_points(values: Sequence[float]) -> CutPoints:
    """Cut points of one cohort (any order, ties allowed)."""
    ordered = sorted(values)
    n = len(ordered)
    thresholds = [math.inf] * (BUCKETS - 1)
    # bucket_from_rank is nondecreasing in `smaller`; record the first `smaller` reaching each bucket. A value
    # x has smaller(x) >= s exactly when x > ordered[s - 1].
    reached = 1
    for smaller in range(1, n + 1):
        bucket = bucket_from_rank(smaller, n)
        while reached < bucket:
            reached += 1
            thresholds[reached - 2] = float(ordered[smaller - 1])
    return CutPoints(thresholds=tuple(thresholds), cohort_size=n)


# --- Spark ------------------------------------------------------------------------------------------------


def bucket_column(smaller: Column, n: Column) -> Column:
    """:func:`bucket_from_rank` as a Spark expression (same double arithmetic, same order)."""
    from pyspark.sql import functions as F

    percent_rank = smaller.cast("double") / (n - 1).cast("double")
    bucket = (F.floor(F.lit(99.0) * percent_rank) + 1).cast("long")
    return F.when(n <= 1, F.lit(1).cast("long")).otherwise(F.least(bucket, F.lit(BUCKETS).cast("long")))


def spark_percentile_buckets(
    df: DataFrame, *, partition_by: Sequence[str], value_col: str, out_col: str
) -> DataFrame:
    """Add ``out_col`` = bucket of ``value_col`` within each ``partition_by`` group (a snapshot's cohort).

    Not a window over all rows of a snapshot: rows are first counted per distinct (group, value); the window
    runs over those distinct values (a few hundred per snapshot, not the cohort's millions), giving the number
    of smaller values as a running sum; the small lookup is broadcast back onto the rows.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = [*partition_by, value_col]
    per_value = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("_rows"))
    group = Window.partitionBy(*partition_by)
    below = group.orderBy(value_col).rowsBetween(Window.unboundedPreceding, -1)
    lookup = per_value.select(
        *keys,
        F.coalesce(F.sum("_rows").over(below), F.lit(0)).alias("_smaller"),
        F.sum("_rows").over(group).alias("_cohort"),
    ).select(*keys, bucket_column(F.col("_smaller"), F.col("_cohort")).alias(out_col))
    return df.join(F.broadcast(lookup), on=keys, how="left")
