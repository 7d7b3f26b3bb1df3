"""Embedding export to Delta: schema, batching, versions side by side, idempotent re-runs, bad input."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
import torch

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.schemas import EMBEDDING_MEMBER, EMBEDDING_POST
from training.retrieval.embed import (
    SKIP_EMPTY_TEXT,
    TEXT_REPAIRED,
    embed_members,
    embed_posts,
    model_versions,
    read_embeddings,
)

DIM = 8
WHEN = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def hash_encoder(texts: list[str], salt: str = "") -> torch.Tensor:
    """Deterministic toy encoder: each text hashed to a seed, a unit vector drawn from it."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256((salt + text).encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).normal(size=DIM)
        rows.append(v / np.linalg.norm(v))
    return torch.tensor(np.array(rows), dtype=torch.float32)


def test_embed_posts_writes_the_schema_in_batches(feed_paths: FeedPaths) -> None:
    calls: list[int] = []

    def encode(texts: list[str]) -> torch.Tensor:
        calls.append(len(texts))
        return hash_encoder(texts)

    posts = [(i, f"post {i} about data") for i in range(7)]
    result = embed_posts(encode, posts, "v1", feed_paths, batch_size=3, event_timestamp=WHEN, progress=False)
    assert calls == [3, 3, 1]
    assert result.rows == 7
    assert result.dim == DIM
    assert result.skipped == {}
    assert result.table == feed_paths.table("post_embeddings")
    table = delta_io.read(result.table)
    assert table.schema.equals(EMBEDDING_POST, check_metadata=False)
    assert set(table.column("model_version").to_pylist()) == {"v1"}
    assert set(table.column("event_timestamp").to_pylist()) == {WHEN}
    ids, vecs = read_embeddings(feed_paths, "post", "v1")
    assert ids.tolist() == list(range(7))
    np.testing.assert_allclose(vecs, hash_encoder([t for _, t in posts]).numpy(), rtol=1e-6)


def test_rerun_replaces_its_version_and_keeps_the_others(feed_paths: FeedPaths) -> None:
    members = [(m, f"member {m} headline") for m in (5, 6, 7)]
    embed_members(hash_encoder, members, "v1", feed_paths, progress=False)
    embed_members(lambda t: hash_encoder(t, "v2"), members, "v2", feed_paths, progress=False)
    # v1 again, retrained (different vectors) and over fewer members: exactly v1's rows are replaced
    rerun = embed_members(lambda t: hash_encoder(t, "v1b"), members[:2], "v1", feed_paths, progress=False)
    table = delta_io.read(feed_paths.table("member_embeddings"))
    assert table.schema.equals(EMBEDDING_MEMBER, check_metadata=False)
    assert table.num_rows == 2 + 3
    assert model_versions(feed_paths, "member") == ["v1", "v2"]
    ids1, vecs1 = read_embeddings(feed_paths, "member", "v1")
    ids2, vecs2 = read_embeddings(feed_paths, "member", "v2")
    assert ids1.tolist() == [5, 6]
    np.testing.assert_allclose(vecs1, hash_encoder([t for _, t in members[:2]], "v1b").numpy(), rtol=1e-6)
    assert ids2.tolist() == [5, 6, 7]
    np.testing.assert_allclose(vecs2, hash_encoder([t for _, t in members], "v2").numpy(), rtol=1e-6)
    assert rerun.delta_version == delta_io.version(feed_paths.table("member_embeddings"))


def test_bad_text_is_skipped_or_repaired_and_counted(feed_paths: FeedPaths) -> None:
    seen: list[str] = []

    def encode(texts: list[str]) -> torch.Tensor:
        seen.extend(texts)
        return hash_encoder(texts)

    posts = [
        (1, "fine"),
        (2, ""),
        (3, None),
        (4, "   "),
        (5, b"caf\xe9 latin-1 bytes"),
        (6, "lone \udcff surrogate"),
        (np.int64(7), "numpy id"),
    ]
    result = embed_posts(encode, posts, "v1", feed_paths, progress=False)
    assert result.rows == 4
    assert result.skipped == {SKIP_EMPTY_TEXT: 3, TEXT_REPAIRED: 2}
    assert "caf\ufffd latin-1 bytes" in seen
    assert all(t.encode("utf-8") for t in seen)  # every text reaching the encoder is valid UTF-8
    assert read_embeddings(feed_paths, "post", "v1")[0].tolist() == [1, 5, 6, 7]


def test_bad_ids_versions_and_encoders_are_clear_errors(feed_paths: FeedPaths) -> None:
    with pytest.raises(ValueError, match="row 2: post_id 1 already given at row 0"):
        embed_posts(hash_encoder, [(1, "a"), (2, "b"), (1, "c")], "v1", feed_paths, progress=False)
    with pytest.raises(ValueError, match="row 0: post_id '1' is not an integer"):
        embed_posts(hash_encoder, [("1", "a")], "v1", feed_paths, progress=False)
    with pytest.raises(ValueError, match='model_version "v1\'; drop" must be'):
        embed_posts(hash_encoder, [(1, "a")], "v1'; drop", feed_paths, progress=False)
    with pytest.raises(ValueError, match="row 0 \\(member_id 1\\): text must be str or bytes"):
        embed_members(hash_encoder, [(1, 42)], "v1", feed_paths, progress=False)
    with pytest.raises(ValueError, match="non-finite embedding for post_id 2"):
        embed_posts(
            lambda t: torch.tensor([[1.0, 0.0], [float("nan"), 0.0]]),
            [(1, "a"), (2, "b")],
            "v1",
            feed_paths,
            progress=False,
        )
    with pytest.raises(ValueError, match="encoder returned shape"):
        embed_posts(lambda t: torch.zeros(1, 4), [(1, "a"), (2, "b")], "v1", feed_paths, progress=False)
    with pytest.raises(ValueError, match="timezone-aware"):
        embed_posts(hash_encoder, [(1, "a")], "v1", feed_paths, event_timestamp=dt.datetime(2026, 1, 1))
    assert not delta_io.exists(feed_paths.table("post_embeddings"))  # nothing half-written


def test_nothing_to_embed_leaves_the_version_untouched(feed_paths: FeedPaths) -> None:
    embed_posts(hash_encoder, [(1, "a"), (2, "b")], "v1", feed_paths, progress=False)
    with pytest.raises(ValueError, match=r"no post had text to embed \(\{'empty_text': 2\}\)"):
        embed_posts(hash_encoder, [(1, ""), (2, None)], "v1", feed_paths, progress=False)
    assert read_embeddings(feed_paths, "post", "v1")[0].tolist() == [1, 2]
    with pytest.raises(ValueError, match="no rows for model_version 'v9'"):
        read_embeddings(feed_paths, "post", "v9")
    with pytest.raises(FileNotFoundError, match="no member_embeddings table"):
        read_embeddings(feed_paths, "member", "v1")
    assert model_versions(feed_paths, "member") == []
