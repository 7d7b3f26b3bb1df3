"""Feast rows → PostFeatures / MemberFeatures, and the defined behaviour on bad input."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from training.prompts import (
    MemberFeatures,
    PostFeatures,
    PromptConfig,
    clean_text,
    current_company,
    parse_work_item,
    render_post,
)


def test_post_from_feast_names(post_row: dict[str, Any], author_row: dict[str, Any]) -> None:
    post = PostFeatures.from_feast_row(post_row, author=author_row)
    assert post.post_id == 4711
    assert post.format == "article"
    assert post.topic == "renewableenergy"
    assert (post.views, post.likes, post.comments, post.shares, post.followers) == (12345, 120, 14, 3, 880)
    assert (post.view_percentile, post.share_percentile, post.follower_percentile) == (71, 40, 93)
    assert post.author_headline == "Electrical Engineer at Voltgrid"
    assert post.author_current_role == "Senior Electrical Engineer"
    assert post.author_industry == "Energy"
    assert post.author_company == "Voltgrid"  # parsed from the open position


def test_post_from_bare_names_and_pandas_types(post_row: dict[str, Any]) -> None:
    """posts.parquet rows use the dataclass field names; pandas gives numpy ints and NaN for gaps."""
    bare = {k.split("__")[-1]: v for k, v in post_row.items()}
    bare |= {
        "post_id": np.int64(4711),
        "views": np.int64(5),
        "like_percentile": math.nan,
        "author_headline": "Nurse at Mercy",
        "author_company": "Mercy",
    }
    post = PostFeatures.from_feast_row(bare)
    assert post.post_id == 4711
    assert type(post.post_id) is int
    assert post.views == 5
    assert type(post.views) is int
    assert post.like_percentile is None
    assert post.author_company == "Mercy"
    # the Feast name wins over the bare one when both are present
    both = dict(post_row) | {"views": 1}
    assert PostFeatures.from_feast_row(both).views == 12345


def test_post_from_pandas_series(post_row: dict[str, Any]) -> None:
    import pandas as pd

    frame = pd.DataFrame([post_row, post_row | {"post_id": 2, "post_engagement__view_percentile": None}])
    first, second = (PostFeatures.from_feast_row(row) for _, row in frame.iterrows())
    assert first.view_percentile == 71
    assert second.view_percentile is None  # an int column with a gap became float64 NaN
    assert second.post_id == 2


def test_bad_post_rows_are_clear_errors(post_row: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="post row without post_id"):
        PostFeatures.from_feast_row({k: v for k, v in post_row.items() if k != "post_id"})
    with pytest.raises(ValueError, match=r"post 4711: view_percentile=150 outside 1\.\.100"):
        PostFeatures.from_feast_row(post_row | {"post_engagement__view_percentile": 150})
    with pytest.raises(ValueError, match="post 4711: likes=-1 is negative"):
        PostFeatures.from_feast_row(post_row | {"post_engagement__likes": -1})
    with pytest.raises(TypeError, match="post 4711: shares must be an integer, got str"):
        PostFeatures.from_feast_row(post_row | {"post_engagement__shares": "3"})
    with pytest.raises(TypeError, match="post 4711: text: expected text, got int"):
        PostFeatures.from_feast_row(post_row | {"post_content__text": 12})
    with pytest.raises(ValueError, match="post_id is required"):
        PostFeatures(post_id=None)  # type: ignore[arg-type]


def test_member_from_feast_row(member_row: dict[str, Any]) -> None:
    member = MemberFeatures.from_feast_row(
        member_row | {"member_profile__skills": np.array(["python", "sql"])}
    )
    assert member.member_id == 42
    assert member.skills == ["python", "sql"]
    assert member.work_history[0].startswith("Senior Data Scientist @ Brightlake")
    assert not member.is_empty


def test_member_with_missing_fields(tokenizer: Any) -> None:
    member = MemberFeatures.from_feast_row(
        {"member_id": np.int64(3), "member_profile__headline": None, "member_profile__skills": None}
    )
    assert member == MemberFeatures(member_id=3)
    assert member.is_empty
    with pytest.raises(ValueError, match="member row without member_id"):
        MemberFeatures.from_feast_row({"member_profile__headline": "x"})


def test_company_parsing() -> None:
    assert parse_work_item("Nurse @ Mercy Health (Healthcare), 2019-03 – present") == (
        "Nurse",
        "Mercy Health",
        "Healthcare",
    )
    assert parse_work_item("Nurse @ Mercy, 2019-03 – 2020-01") == ("Nurse", "Mercy", None)
    assert parse_work_item("freelancer") == ("freelancer", None, None)
    history = ["Lead @ Old Co (Retail), 2015-01 – 2019-02", "Lead @ New Co (Retail), 2019-03 – present"]
    assert current_company(history) == "New Co"
    assert current_company(history[:1]) is None  # a former employer is not the company
    assert current_company([]) is None


def test_author_without_open_position(post_row: dict[str, Any]) -> None:
    author = {"headline": "Consultant", "work_history": ["Consultant @ Acme (Finance), 2010-01 – 2020-01"]}
    post = PostFeatures.from_feast_row(post_row, author=author)
    assert post.author_headline == "Consultant"
    assert post.author_company is None


def test_clean_text_normalises() -> None:
    assert clean_text("  a\tb\x00c\n\n d\x7f ") == "a bc d"
    assert clean_text(b"caf\xc3\xa9 \xff ok") == "café \ufffd ok"  # invalid UTF-8 → one U+FFFD
    assert clean_text("ｆｕｌｌ\u200bwidth ﬁ\ud800x") == "fullwidth fi\ufffdx"  # NFKC, zero-width, surrogate
    assert clean_text("   ") is None
    assert clean_text(None) is None
    assert clean_text(math.nan) is None
    assert clean_text("word " * 1000, max_chars=22) == "word word word word ..."
    assert clean_text("x" * 100, max_chars=10) == "x" * 10 + " ..."
    with pytest.raises(TypeError, match="headline: expected text, got list"):
        clean_text(["a"], field="headline")


def test_non_utf8_and_control_text_renders(post_row: dict[str, Any]) -> None:
    dirty = post_row | {
        "post_content__text": b"Grid \xff\xfe storage\x1b[31m ok",
        "post_content__article_title": "Title\r\nwith\x00 breaks",
    }
    prompt = render_post(PostFeatures.from_feast_row(dirty), PromptConfig())
    assert "text: Grid \ufffd\ufffd storage[31m ok" in prompt
    assert "title: Title with breaks" in prompt
    prompt.encode("utf-8")  # always encodable


def test_huge_text_is_cleaned_in_bounded_time(post_row: dict[str, Any]) -> None:
    post = PostFeatures.from_feast_row(post_row | {"post_content__text": "é " * 2_000_000})
    prompt = render_post(post, PromptConfig(text_max_chars=50))
    assert prompt.endswith("é ...")
    assert len(prompt.splitlines()[-1]) <= len("text: ") + 50 + 4


def test_import_is_light() -> None:
    code = (
        "import sys, training.prompts\n"
        "heavy = [m for m in ('torch', 'transformers', 'pandas', 'feast', 'pyspark') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
