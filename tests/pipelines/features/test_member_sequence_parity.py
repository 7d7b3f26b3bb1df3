"""member_sequence (served by Feast) is the history the GR ranker trains on: on ``tiny``, every row equals the
ranking set's sequence of that member (pipelines/ranking_set.py) cut before the row's snapshot, its newest
``sequence_max_len`` — same posts, action codes, seconds and order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.dataset as pads
import pytest

from pipelines import delta_io
from pipelines.features.config import FeatureConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_member_sequence_is_the_ranking_sets_sequence_before_each_snapshot(ranking_set: Any) -> None:
    cap = FeatureConfig().sequence_max_len
    folder = ranking_set.path / "sequences"
    trained = pads.dataset(sorted(str(p) for p in folder.glob("part-*.parquet")), format="parquet").to_table()
    by_member = {
        m: (np.asarray(p, np.int64), np.asarray(a, np.int64), np.asarray(t, np.int64))
        for m, p, a, t in zip(
            trained.column("member_id").to_pylist(),
            trained.column("post_id").to_pylist(),
            trained.column("action").to_pylist(),
            trained.column("ts").to_pylist(),
            strict=True,
        )
    }
    served = delta_io.read(ranking_set.paths.table("member_sequence")).to_pylist()
    assert {r["member_id"] for r in served} == set(by_member)  # every member with an impression has a row
    capped = 0
    for row in served:
        posts, actions, ts = by_member[row["member_id"]]
        end = int(np.searchsorted(ts, int(row["event_timestamp"].timestamp()), side="left"))  # ts < S
        lo = max(0, end - cap)
        key = (row["member_id"], row["event_timestamp"])
        assert row["sequence_length"] == end, key
        assert row["post_ids"] == posts[lo:end].tolist(), key
        assert row["actions"] == actions[lo:end].tolist(), key
        assert row["timestamps"] == ts[lo:end].tolist(), key
        capped += lo > 0
    assert capped > 0  # tiny has members with more than sequence_max_len impressions
