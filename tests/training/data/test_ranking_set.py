"""The GR ranking set (pipelines/ranking_set.py) built on ``tiny`` and read back by
training/data/ranking_data.py. One build per session: ``ranking_set`` in tests/conftest.py."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from feed.config import FeedPaths
from pipelines.schemas import LABELS
from training.ranking.features import CONTEXT_FEATURES, device_codes, encode_actions, hash_string

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from training.data.ranking_data import RankingArrays

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPLITS = ("train", "validation", "test")


def _table(folder: Path) -> pa.Table:
    return pads.dataset(sorted(str(p) for p in folder.glob("part-*.parquet")), format="parquet").to_table()


@pytest.fixture(scope="module")
def report(ranking_set: Any) -> dict[str, Any]:
    return json.loads((ranking_set.path / "build_report.json").read_text())


@pytest.fixture(scope="module")
def arrays(ranking_set: Any) -> dict[str, RankingArrays]:
    from training.data.ranking_data import load_ranking_arrays

    return {split: load_ranking_arrays(ranking_set.path, split) for split in SPLITS}


@pytest.fixture(scope="module")
def impressions(ranking_set: Any) -> pd.DataFrame:
    """raw_impressions as the set encodes them, in sequence order (member, ts, position, event_id)."""
    from pipelines import delta_io

    imp = delta_io.read(ranking_set.paths.table("raw_impressions")).to_pandas()
    imp["ts"] = imp["event_timestamp"].to_numpy(dtype="datetime64[us]").astype(np.int64) // 1_000_000
    imp["action"] = encode_actions(imp[list(LABELS)].to_numpy())
    imp["device"] = device_codes(imp["device_type"].tolist())
    return imp.sort_values(["member_id", "ts", "position", "event_id"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def targets(ranking_set: Any) -> pd.DataFrame:
    """Every target of every split, one row each, with its example's columns and the split."""
    import pandas as pd

    frames = []
    for split in SPLITS:
        table = _table(ranking_set.path / split)
        lists = [name for name in table.column_names if pa.types.is_list(table.schema.field(name).type)]
        lists.remove("member_embedding")
        frame = table.drop_columns(["member_embedding"]).to_pandas().explode(lists)
        frame["split"] = split
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    for name in ("post_id", "author_id", "session_id", "ts", "position", "action", "device"):
        out[name] = out[name].astype(np.int64)
    for name in CONTEXT_FEATURES:
        out[name] = out[name].astype(np.float64)
    return out


def test_sequences_are_chronological_and_complete(ranking_set: Any, impressions: pd.DataFrame) -> None:
    """Every impression of every member exactly once, in (ts, position, event_id) order, encoded right."""
    seq = _table(ranking_set.path / "sequences").to_pandas()
    assert seq["member_id"].is_unique
    seq = seq.sort_values("member_id").explode(["post_id", "action", "device", "ts", "position"])
    for column in ("member_id", "post_id", "ts", "position", "action", "device"):
        np.testing.assert_array_equal(
            seq[column].to_numpy(dtype=np.int64), impressions[column].to_numpy(dtype=np.int64), err_msg=column
        )


def test_report_counts_interactions_per_member(report: dict[str, Any], impressions: pd.DataFrame) -> None:
    per_member = impressions.groupby("member_id").size()
    stats = report["interactions_per_member"]
    assert stats["members"] == len(per_member)
    assert stats["max"] == per_member.max()
    assert stats["p50"] == pytest.approx(per_member.median())
    assert stats["members_over_1000"] == int((per_member > 1000).sum()) > 0  # tiny has a few heavy members
    assert report["skipped"]["valid_impressions"] == len(impressions)


def test_history_end_is_the_interactions_strictly_before_the_request(
    arrays: dict[str, RankingArrays], targets: pd.DataFrame
) -> None:
    for split, a in arrays.items():
        assert a.n_examples > 0, split
        for x in range(a.n_examples):
            lo, hi = a.seq_offsets[a.ex_seq[x]], a.seq_offsets[a.ex_seq[x] + 1]
            expected = int(np.searchsorted(a.ts[lo:hi], a.ex_request_ts[x], side="left"))
            assert a.ex_history_end[x] == expected, (split, x)
            assert expected == 0 or a.ts[lo + expected - 1] < a.ex_request_ts[x]
    # request_ts is the block's first target time; no target is earlier
    per_block = targets.groupby(["member_id", "block_id"]).agg(
        first=("ts", "min"), request=("request_ts", "first")
    )
    np.testing.assert_array_equal(per_block["first"], per_block["request"])


def test_blocks_stay_in_their_split_window_and_hold_whole_sessions(
    ranking_set: Any, report: dict[str, Any], targets: pd.DataFrame, impressions: pd.DataFrame
) -> None:
    import pandas as pd

    max_t = ranking_set.cfg.max_targets
    windows = {k: int(pd.Timestamp(v).timestamp()) for k, v in report["windows"].items()}
    bounds = {
        "train": (windows["first_snapshot"], windows["validation_start"]),
        "validation": (windows["validation_start"], windows["test_start"]),
        "test": (windows["test_start"], windows["end"]),
    }
    for split, (lo, hi) in bounds.items():
        ts = targets.loc[targets["split"] == split, "ts"]
        assert ts.between(lo, hi - 1).all(), split
    size = targets.groupby(["member_id", "block_id"]).size()
    assert size.max() <= max_t
    assert targets.groupby(["member_id", "block_id"])["split"].nunique().max() == 1
    # Every impression from the first snapshot on is a target exactly once.
    expected = impressions[impressions["ts"] >= windows["first_snapshot"]]
    key = ["member_id", "post_id", "ts", "position"]
    assert len(targets) == len(expected)
    assert Counter(map(tuple, targets[key].to_numpy())) == Counter(map(tuple, expected[key].to_numpy()))
    # A session with at most max_t targets in a split sits in one block; longer ones fill blocks completely.
    per_session = targets.groupby(["member_id", "split", "session_id"]).agg(
        n=("ts", "size"), blocks=("block_id", "nunique")
    )
    short = per_session[per_session["n"] <= max_t]
    assert (short["blocks"] == 1).all()
    long = per_session[per_session["n"] > max_t]
    assert len(long) > 0  # max_targets=16 in the fixture: some sessions are cut
    assert (long["blocks"] >= np.ceil(long["n"] / max_t)).all()


def test_blocks_are_packed_greedily_in_time_order(ranking_set: Any, targets: pd.DataFrame) -> None:
    """Block ids follow request time; a block is closed only when the next session (chunk) did not fit."""
    max_t = ranking_set.cfg.max_targets
    blocks = (
        targets.groupby(["member_id", "block_id"])
        .agg(request_ts=("request_ts", "first"), n=("ts", "size"), split=("split", "first"))
        .reset_index()
    )
    for _, member_blocks in blocks.groupby("member_id"):
        np.testing.assert_array_equal(member_blocks["block_id"], np.arange(len(member_blocks)))
    # Packing order = session start within the (member, split); the first chunk of block b+1 is the part of
    # its earliest-starting session that it holds.
    start = targets.groupby(["member_id", "split", "session_id"])["ts"].transform("min")
    chunks = (
        targets.assign(start=start)
        .groupby(["member_id", "block_id", "start", "session_id"])
        .size()
        .rename("chunk")
        .reset_index()
        .sort_values(["member_id", "block_id", "start", "session_id"])
        .drop_duplicates(["member_id", "block_id"])
    )
    nxt = blocks.merge(chunks, on=["member_id", "block_id"])
    nxt["block_id"] -= 1
    pairs = blocks.merge(nxt, on=["member_id", "block_id"], suffixes=("", "_next"))
    pairs = pairs[pairs["split"] == pairs["split_next"]]
    assert len(pairs) > 100
    # Time order of request_ts, except after a block that is the later chunk of a cut session (it starts
    # mid-session; a session of the member that overlaps it in time can start earlier).
    sessions = targets.groupby(["member_id", "block_id"])["session_id"].nunique().rename("sessions")
    cut = (
        (targets.groupby(["member_id", "split", "session_id"])["ts"].transform("size") > max_t)
        .groupby([targets["member_id"], targets["block_id"]])
        .all()
    )
    pairs = pairs.join(sessions, on=["member_id", "block_id"]).join(
        cut.rename("cut"), on=["member_id", "block_id"]
    )
    late_chunk = (pairs["sessions"] == 1) & pairs["cut"]
    assert (late_chunk | (pairs["request_ts"] <= pairs["request_ts_next"])).all()
    assert (pairs["n"] + pairs["chunk"] > max_t).all()


def _asof_reference(
    targets: pd.DataFrame, table: pd.DataFrame, key: str, column: str, ttl: dt.timedelta
) -> pd.Series:
    """Feast's point-in-time rule by hand: the latest row with event_timestamp <= ts, within ttl."""
    import pandas as pd

    left = targets[[key, "ts"]].copy()
    left["at"] = pd.to_datetime(left["ts"], unit="s", utc=True).astype("datetime64[us, UTC]")
    left["_row"] = np.arange(len(left))
    right = table[[key, "event_timestamp", "created", column]].sort_values(["event_timestamp", "created"])
    right["event_timestamp"] = right["event_timestamp"].astype("datetime64[us, UTC]")
    merged = pd.merge_asof(
        left.sort_values("at"),
        right.drop_duplicates([key, "event_timestamp"], keep="last"),
        left_on="at",
        right_on="event_timestamp",
        by=key,
        direction="backward",
    ).sort_values("_row")
    value = merged[column].astype(float) / 100.0
    value[(merged["at"] - merged["event_timestamp"]) > pd.Timedelta(ttl)] = np.nan
    return pd.Series(value.to_numpy(), index=targets.index)


@pytest.mark.parametrize(
    ("table", "key", "feature", "ttl"),
    [
        ("author_stats", "author_id", "follower_percentile", dt.timedelta(days=7)),
        ("post_engagement", "post_id", "view_percentile", dt.timedelta(days=2)),
    ],
)
def test_contexts_are_point_in_time(
    ranking_set: Any, targets: pd.DataFrame, table: str, key: str, feature: str, ttl: dt.timedelta
) -> None:
    from pipelines import delta_io

    rows = delta_io.read(ranking_set.paths.table(table)).to_pandas()
    expected = _asof_reference(targets, rows, key, feature, ttl)
    np.testing.assert_allclose(targets[feature].to_numpy(), expected.to_numpy(), rtol=1e-6, equal_nan=True)


def test_a_row_stamped_after_the_request_is_never_used(ranking_set: Any, targets: pd.DataFrame) -> None:
    """The planted mid-day author_stats row: targets before its stamp see the morning snapshot, those after
    (same day) see the planted value."""
    import pandas as pd

    planted = ranking_set.planted
    at = int(planted.author_stats_at.timestamp())
    day_end = int(pd.Timestamp(planted.author_stats_at).ceil("D").timestamp())
    mine = targets[targets["author_id"] == planted.author_id]
    day_start = int(pd.Timestamp(planted.author_stats_at).floor("D").timestamp())
    before = mine[(mine["ts"] < at) & (mine["ts"] >= day_start)]
    after = mine[(mine["ts"] >= at) & (mine["ts"] < day_end)]
    assert len(before) > 0
    assert len(after) > 0
    value = planted.follower_percentile / 100
    assert (np.abs(before["follower_percentile"] - value) > 1e-6).all()
    np.testing.assert_allclose(after["follower_percentile"], value, rtol=1e-6)


def test_member_embedding_is_null_unless_valid_at_the_request(
    ranking_set: Any, report: dict[str, Any]
) -> None:
    planted = ranking_set.planted
    examples = pa.concat_tables(_table(ranking_set.path / s) for s in SPLITS).to_pandas()
    mine = examples[examples["member_id"] == planted.member_id]
    at = int(planted.member_emb_at.timestamp())
    valid = (mine["request_ts"] >= at) & (mine["request_ts"] < at + planted.member_emb_ttl.total_seconds())
    assert valid.any()
    assert (~valid).any()
    for emb in mine.loc[valid, "member_embedding"]:
        np.testing.assert_array_equal(emb, planted.member_emb)  # never the later (future) row
    assert mine.loc[~valid, "member_embedding"].isna().all()  # before: none valid, or another model's
    others = examples[examples["member_id"] != planted.member_id]
    assert others["member_embedding"].isna().all()
    counts = report["member_embedding"]
    assert counts["present"] == int(valid.sum())
    assert counts["dropped_other_model_version"] > 0
    assert (
        counts["present"] + counts["null_no_row_at_request_ts"] + counts["dropped_other_model_version"]
        == (examples[["member_id", "request_ts"]].drop_duplicates().shape[0])
    )


def test_posts_carry_the_promoted_models_embeddings(
    ranking_set: Any, arrays: dict[str, RankingArrays], impressions: pd.DataFrame
) -> None:
    planted = ranking_set.planted
    posts = pads.dataset(str(ranking_set.path / "posts.parquet")).to_table().to_pandas()
    assert set(posts["post_id"]) == set(impressions["post_id"])
    with_vec = posts[posts["embedding"].notna()]
    assert set(with_vec["post_id"]) == set(planted.post_vectors)
    a = arrays["train"]
    assert a.post_table.shape == (len(posts) + 1, 3)
    assert not a.post_table[0].any()
    for post_id, vector in planted.post_vectors.items():
        rows = a.post_idx[a.post_id == post_id]
        assert len(rows) > 0
        np.testing.assert_allclose(a.post_table[rows], np.tile(vector, (len(rows), 1)))
    assert a.unknown_posts == 0


def test_posts_carry_their_authors(ranking_set: Any, arrays: dict[str, RankingArrays]) -> None:
    from pipelines import delta_io

    raw = delta_io.read(ranking_set.paths.table("raw_posts"), columns=["post_id", "author_id"]).to_pandas()
    author_of = dict(zip(raw["post_id"], raw["author_id"], strict=True))
    a = arrays["train"]
    assert a.post_author.shape == (len(a.post_table),)
    assert a.post_author[0] == 0
    sample = np.unique(a.tgt_post_idx)[:200]
    for idx in sample:
        post_id = int(a.tgt_post_id[np.flatnonzero(a.tgt_post_idx == idx)[0]])
        assert a.post_author[idx] == author_of[post_id]


def test_load_ranking_arrays_shapes_and_offsets(
    ranking_set: Any, arrays: dict[str, RankingArrays], report: dict[str, Any]
) -> None:
    for split, a in arrays.items():
        s, x, n = len(a.post_id), a.n_examples, a.n_targets
        assert a.seq_offsets[0] == 0
        assert a.seq_offsets[-1] == s
        assert np.all(np.diff(a.seq_offsets) > 0)
        assert np.all(np.diff(a.seq_member) > 0)
        assert a.seq_offsets.shape == (len(a.seq_member) + 1,)
        for arr in (a.post_idx, a.action, a.device, a.ts):
            assert arr.shape == (s,)
        assert a.ex_target_offsets[0] == 0
        assert a.ex_target_offsets[-1] == n
        assert np.all(np.diff(a.ex_target_offsets) > 0)
        assert np.diff(a.ex_target_offsets).max() <= ranking_set.cfg.max_targets
        for arr in (a.tgt_post_idx, a.tgt_action, a.tgt_device, a.tgt_session):
            assert arr.shape == (n,)
        assert a.tgt_context.shape == (n, len(CONTEXT_FEATURES))
        assert a.tgt_context.dtype == np.float32
        assert a.ex_profile.shape == (x, 2)
        assert a.ex_member_emb.shape == (x, 4)
        assert a.ex_member_emb_present.shape == (x,)
        assert np.all(a.ex_history_end <= np.diff(a.seq_offsets)[a.ex_seq])
        assert x == report["examples_per_split"][split]
        assert n == report["targets_per_split"][split]
        assert a.tgt_post_idx.dtype == np.int32
        assert a.action.dtype == np.uint8
        assert a.device.dtype == np.int8
        assert np.isnan(a.tgt_context).sum(axis=0).tolist()  # some contexts are missing (early days)


def test_loader_targets_match_the_files(arrays: dict[str, RankingArrays], targets: pd.DataFrame) -> None:
    """Flat target arrays = the split files' lists in (member, block) order; profiles hashed."""
    for split, a in arrays.items():
        mine = targets[targets["split"] == split].sort_values(["member_id", "block_id"], kind="stable")
        np.testing.assert_array_equal(a.tgt_post_id, mine["post_id"].to_numpy())
        np.testing.assert_array_equal(a.tgt_action, mine["action"].to_numpy())
        np.testing.assert_array_equal(a.tgt_session, mine["session_id"].to_numpy())
        np.testing.assert_allclose(
            a.tgt_context, mine[list(CONTEXT_FEATURES)].to_numpy(dtype=np.float32), equal_nan=True
        )
        first = mine.drop_duplicates(["member_id", "block_id"])
        np.testing.assert_array_equal(a.ex_profile[:, 0], [hash_string(v) for v in first["industry"]])


# --- bad input


def _raw_frame(spark: SparkSession, rows: list[dict[str, Any]]) -> Any:
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("event_id", T.LongType()),
            T.StructField("member_id", T.LongType()),
            T.StructField("post_id", T.LongType()),
            T.StructField("event_timestamp", T.TimestampType()),
            T.StructField("session_id", T.LongType()),
            T.StructField("device_type", T.StringType()),
            T.StructField("position", T.IntegerType()),
            *[T.StructField(label, T.IntegerType()) for label in LABELS],
        ]
    )
    base = {
        "event_id": 1,
        "member_id": 1,
        "post_id": 10,
        "event_timestamp": dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC),
        "session_id": 5,
        "device_type": "tablet",
        "position": 0,
        **dict.fromkeys(LABELS, 0),
    }
    return spark.createDataFrame([{**base, **row} for row in rows], schema=schema)


def test_bad_rows_are_counted_and_skipped(spark: SparkSession) -> None:
    from pipelines.ranking_set import clean_impressions

    raw = _raw_frame(
        spark,
        [
            {"event_id": 1, "click": 1, "like": 1},  # valid: action 1 + 8
            {"event_id": 2, "member_id": None},
            {"event_id": 3, "post_id": None},
            {"event_id": 4, "share": 2},  # a label outside {0, 1}
            {"event_id": 5, "skip": None},
            {"event_id": 6, "post_id": 99},  # not in post_content
            {"event_id": 7, "device_type": "smart_tv"},  # kept, device 0
        ],
    )
    catalog = spark.createDataFrame([(10, 100)], "post_id long, author_id long")
    skipped: Counter[str] = Counter()
    valid = clean_impressions(raw, catalog, skipped).orderBy("event_id").collect()
    assert [r["event_id"] for r in valid] == [1, 7]
    assert valid[0]["action"] == 1 + 8
    assert valid[0]["author_id"] == 100
    assert [r["device"] for r in valid] == [4, 0]
    assert skipped == Counter(
        {
            "valid_impressions": 2,
            "impression_null_id_time_or_position": 2,
            "impression_label_not_0_or_1": 2,
            "impression_unknown_post": 1,
            "impression_unknown_device_kept": 1,
        }
    )


def test_missing_label_column_raises(spark: SparkSession) -> None:
    from pipelines.ranking_set import RankingSetError, clean_impressions

    raw = _raw_frame(spark, [{}]).drop("comment")
    catalog = spark.createDataFrame([(10, 100)], "post_id long, author_id long")
    with pytest.raises(RankingSetError, match="comment"):
        clean_impressions(raw, catalog, Counter())


def test_a_failed_build_leaves_nothing_behind(ranking_set: Any, tmp_path: Path) -> None:
    """raw_impressions whose every row is bad: a clear error, no set folder, no temporary folder; a previous
    set of that name stays as it was."""
    import shutil

    import pandas as pd
    from deltalake import write_deltalake

    from feed.config import SparkConfig
    from pipelines.ranking_set import RankingSetConfig, RankingSetError, build_ranking_set, set_dir

    paths = FeedPaths(home=tmp_path)
    shutil.copytree(ranking_set.paths.lake, paths.lake)
    bad = pd.DataFrame(
        {
            "event_id": [1, 2],
            "member_id": pd.array([None, None], dtype="Int64"),
            "post_id": [1, 2],
            "event_timestamp": pd.to_datetime(["2026-09-03", "2026-09-04"], utc=True),
            "session_id": [1, 1],
            "device_type": ["tablet", "tablet"],
            "position": pd.array([0, 1], dtype="int32"),
            "request_id": [None, None],
            **{label: pd.array([0, 0], dtype="int8") for label in LABELS},
        }
    )
    write_deltalake(str(paths.table("raw_impressions")), bad, mode="overwrite", schema_mode="overwrite")
    previous = set_dir(paths, "t")
    previous.mkdir(parents=True)
    (previous / "marker").write_text("old set\n")
    with pytest.raises(RankingSetError, match="no valid rows"):
        build_ranking_set(paths, RankingSetConfig(name="t"), SparkConfig(master="local[2]"))
    assert sorted(p.name for p in previous.parent.iterdir()) == ["t"]
    assert sorted(p.name for p in previous.iterdir()) == ["marker"]
