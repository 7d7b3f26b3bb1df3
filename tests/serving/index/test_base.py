"""The shared input rules (validate_vectors) and the reference filter semantics (SearchFilter.mask)."""

from __future__ import annotations

import numpy as np
import pytest

from serving.index.base import (
    IndexInputError,
    PostMeta,
    SearchFilter,
    normalize_filters,
    normalize_queries,
    validate_vectors,
)


def test_validate_vectors_normalises_and_keeps_order() -> None:
    ids, vecs = validate_vectors([5, 3], np.array([[3.0, 4.0], [0.0, 2.0]]), 2)
    assert ids.tolist() == [5, 3]
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(vecs, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        ([1, 2], np.ones((2, 3)), r"dimension 3 != index dimension 4 for post ids \[1, 2\]"),
        ([1, 2], np.array([[1.0, 0, 0, 0], [np.nan, 0, 0, 0]]), r"NaN or inf .* post ids \[2\]"),
        ([7, 8], np.array([[np.inf, 0, 0, 0], [1.0, 0, 0, 0]]), r"NaN or inf .* post ids \[7\]"),
        ([9, 10], np.array([[0.0, 0, 0, 0], [1.0, 0, 0, 0]]), r"zero-norm .* post ids \[9\]"),
        ([4, 4, 5], np.ones((3, 4)), r"duplicate post ids in one batch: \[4\]"),
        ([1, 2, 3], np.ones((2, 4)), r"2 vectors for 3 post ids"),
        ([-1], np.ones((1, 4)), r"negative post ids \[-1\]"),
        ([1.5], np.ones((1, 4)), r"must be integers"),
    ],
)
def test_validate_vectors_rejects_bad_input(ids: list, vectors: np.ndarray, message: str) -> None:
    with pytest.raises(IndexInputError, match=message):
        validate_vectors(ids, vectors, 4)


def test_index_input_error_is_a_value_error() -> None:
    assert issubclass(IndexInputError, ValueError)


def test_meta_must_align_with_ids() -> None:
    meta = PostMeta.of([1, 2], [0, 0], ["text", "text"])
    with pytest.raises(IndexInputError, match="author_id has 2 rows but there are 3"):
        meta.validate(3)
    with pytest.raises(IndexInputError, match=r"format must be a non-empty string; bad for post ids \[8\]"):
        PostMeta.of([1, 2], [0, 0], ["text", ""]).validate(2, np.array([7, 8]))


def test_filter_mask_each_field() -> None:
    ids = np.array([10, 11, 12, 13])
    meta = PostMeta.of([1, 2, 1, 3], [100, 200, 300, 400], ["text", "video", "poll", "text"])
    assert SearchFilter(exclude_post_ids={11, 99}).mask(ids, meta).tolist() == [True, False, True, True]
    assert SearchFilter(exclude_author_id=1).mask(ids, meta).tolist() == [False, True, False, True]
    # recency window is inclusive
    assert SearchFilter(created_after=300).mask(ids, meta).tolist() == [False, False, True, True]
    assert SearchFilter(formats={"text", "poll"}).mask(ids, meta).tolist() == [True, False, True, True]
    assert SearchFilter(formats=set()).mask(ids, meta).tolist() == [False] * 4  # nothing allowed
    combined = SearchFilter(
        exclude_post_ids={13}, exclude_author_id=2, created_after=150, formats={"text", "poll"}
    )
    assert combined.mask(ids, meta).tolist() == [False, False, True, False]


def test_filter_is_hashable_and_empty_detection() -> None:
    assert SearchFilter().is_empty
    assert not SearchFilter(formats=set()).is_empty
    assert hash(SearchFilter(exclude_post_ids=[1, 2])) == hash(SearchFilter(exclude_post_ids={2, 1}))


def test_filters_per_query_must_match_query_count() -> None:
    assert normalize_filters(None, 3) == [None, None, None]
    f = SearchFilter(exclude_author_id=1)
    assert normalize_filters(f, 2) == [f, f]
    with pytest.raises(IndexInputError, match="2 filters for 3 queries"):
        normalize_filters([f, f], 3)


def test_queries_are_checked() -> None:
    with pytest.raises(IndexInputError, match=r"shape \(Q, 4\)"):
        normalize_queries(np.ones((2, 3)), 4)
    with pytest.raises(IndexInputError, match=r"query rows \[1\]"):
        normalize_queries(np.array([[1.0, 0, 0, 0], [0.0, 0, 0, 0]]), 4)
    assert normalize_queries(np.array([2.0, 0, 0, 0]), 4).shape == (1, 4)
