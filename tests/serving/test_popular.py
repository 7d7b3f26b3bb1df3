"""The popular-posts fallback list: author lookup and erasure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feed.config import FeedPaths
from serving.index.base import SearchFilter
from serving.retrieve import PopularPosts


def _popular(tmp_path: Path) -> PopularPosts:
    popular = PopularPosts(FeedPaths(home=tmp_path), as_of=0.0, window_days=7, size=10)
    assert popular.error  # no lake here: an empty list, never an exception
    popular._set(np.array([30, 10, 20]), np.array([3, 1, 2]), np.array([9.0, 8.0, 7.0], np.float32))
    return popular


def test_authors_of_looks_up_listed_posts_and_gives_0_otherwise(tmp_path: Path) -> None:
    popular = _popular(tmp_path)
    assert popular.authors_of(np.array([20, 99, 30, 10])).tolist() == [2, 0, 3, 1]
    empty = PopularPosts(FeedPaths(home=tmp_path), as_of=0.0, window_days=7, size=10)
    assert empty.authors_of(np.array([1, 2])).tolist() == [0, 0]


def test_forget_drops_erased_posts_and_the_posts_of_erased_members(tmp_path: Path) -> None:
    popular = _popular(tmp_path)
    popular.forget({10}, {3})
    assert popular.candidates(10, SearchFilter()).post_ids.tolist() == [20]
    assert popular.authors_of(np.array([10, 20, 30])).tolist() == [0, 2, 0]
