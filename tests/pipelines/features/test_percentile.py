"""The percentile rule: Python, Spark and the cut points agree with an exact pandas reference."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.features.percentile import BUCKETS, bucket_from_rank, buckets, cut_points


def reference(values: list[int]) -> list[int]:
    """DESIGN.md literally: rank(method="min") → (r − 1)/(n − 1) (0 for one row) → 1 + floor(99·pr)."""
    series = pd.Series(values, dtype="float64")
    n = len(series)
    pr = (series.rank(method="min") - 1) / (n - 1) if n > 1 else series * 0
    return [1 + math.floor(99 * p) for p in pr]


cohorts = st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=300)


@given(values=cohorts)
@settings(max_examples=200, deadline=None)
def test_buckets_match_reference(values: list[int]) -> None:
    assert buckets(values) == reference(values)


@given(values=cohorts, probe=st.integers(min_value=-5, max_value=40))
@settings(max_examples=200, deadline=None)
def test_cut_points_reproduce_cohort_buckets_and_rank_new_values(values: list[int], probe: int) -> None:
    cuts = cut_points(values)
    assert len(cuts.thresholds) == BUCKETS - 1
    assert list(cuts.thresholds) == sorted(cuts.thresholds)
    assert [cuts.bucket(v) for v in values] == buckets(values)
    # A new count is ranked against the cohort as it was: smaller = number of cohort values below it.
    n = len(values)
    assert cuts.bucket(probe) == bucket_from_rank(sum(v < probe for v in values), n)


def test_edge_cohorts() -> None:
    assert buckets([5]) == [1]  # a cohort of one → percent_rank 0
    assert buckets([3, 3, 3, 3]) == [1, 1, 1, 1]  # all tied share the lowest rank
    assert buckets([0, 1]) == [1, 100]
    assert buckets([0, 0, 7]) == [1, 1, 100]
    assert cut_points([4]).bucket(100) == 1  # n = 1: Spark's guard, nothing to rank against
    assert cut_points([]).bucket(3) == 1
    assert cut_points([1, 2, 3]).bucket(99) == BUCKETS  # above the whole cohort: clamped to 100


def test_float_rule_not_integer_rule() -> None:
    # 99 · (1632 / 2992) is 54 in exact arithmetic but the double product is just below: the rule is Spark's
    # double percent_rank, so the bucket is 1 + 53.
    assert (99 * 1632) // 2992 == 54
    assert bucket_from_rank(1632, 2993) == 1 + math.floor(99.0 * (1632 / 2992)) == 54


@pytest.mark.integration
def test_spark_buckets_match_reference_and_cut_points(spark) -> None:
    from pipelines.features.percentile import spark_percentile_buckets

    rng = random.Random(3)
    rows = []
    cohorts_by_snapshot: dict[int, list[int]] = {
        0: [rng.choice([0, 0, 0, 1, 2, 5, 9]) for _ in range(400)],  # heavy ties
        1: [
            rng.randint(0, 10_000) for _ in range(3000)
        ],  # mostly distinct, n large enough to hit 1632/2992-like
        2: [42],  # cohort of one
        3: [7] * 50,  # all equal
        4: [0] * 1632 + [1] * 1361,  # the double-rounding case above: the ones are in bucket 54
    }
    for snap, values in cohorts_by_snapshot.items():
        rows += [(snap, i, v) for i, v in enumerate(values)]
    df = spark.createDataFrame(rows, "sday int, post_id int, views long")
    got = spark_percentile_buckets(df, partition_by=["sday"], value_col="views", out_col="pct").toPandas()
    for snap, values in cohorts_by_snapshot.items():
        part = got[got.sday == snap].sort_values("post_id")
        assert part.pct.tolist() == reference(values), snap
        cuts = cut_points(values)
        assert [cuts.bucket(v) for v in part.views] == part.pct.tolist(), snap
    assert set(got[(got.sday == 4) & (got.views == 1)].pct) == {54}
