"""Templates: golden files pin v1; token budgets keep whole, newest items; the raw/percentile switch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from training.prompts import (
    MemberFeatures,
    PostFeatures,
    PromptConfig,
    count_tokens,
    render_history_item,
    render_member,
    render_post,
    template_for,
)

HISTORY_PREFIX = "- "


def _items(prompt: str) -> list[str]:
    return [line[len(HISTORY_PREFIX) :] for line in prompt.splitlines() if line.startswith(HISTORY_PREFIX)]


# --- golden files -----------------------------------------------------------------------------------------


def test_golden_post_percentile(post: PostFeatures, golden: Any) -> None:
    golden("post_percentile", render_post(post, PromptConfig()))


def test_golden_post_raw(post: PostFeatures, golden: Any) -> None:
    golden("post_raw", render_post(post, PromptConfig(counts="raw")))


def test_golden_member_with_history(
    member: MemberFeatures, make_history: Any, tokenizer: Any, golden: Any
) -> None:
    golden("member_history", render_member(member, make_history(3), tokenizer, PromptConfig()))


def test_golden_member_cold_start(member: MemberFeatures, tokenizer: Any, golden: Any) -> None:
    golden("member_cold_start", render_member(member, [], tokenizer, PromptConfig()))


def test_golden_member_truncated(
    member: MemberFeatures, make_history: Any, tokenizer: Any, golden: Any
) -> None:
    golden("member_truncated", render_member(member, make_history(40), tokenizer, PromptConfig()))


def test_golden_history_item(make_history: Any, golden: Any) -> None:
    golden("history_items", "\n".join(render_history_item(p) for p in make_history(6)))


# --- post prompt ------------------------------------------------------------------------------------------


def test_percentile_and_raw_switch(post: PostFeatures) -> None:
    pct = render_post(post, PromptConfig(counts="percentile"))
    raw = render_post(post, PromptConfig(counts="raw"))
    assert "<view_percentile>71</view_percentile>" in pct
    assert "<follower_percentile>93</follower_percentile>" in pct
    assert "12345" not in pct
    assert "views:12345 likes:120 comments:14 shares:3 followers:880" in raw
    assert "_percentile>" not in raw
    # everything but the stats line is identical
    assert [line for line in pct.splitlines() if not line.startswith("stats:")] == [
        line for line in raw.splitlines() if not line.startswith("stats:")
    ]


def test_post_text_comes_last_and_author_is_deduplicated(post: PostFeatures) -> None:
    lines = render_post(post, PromptConfig()).splitlines()
    assert lines[0] == "post: article"
    assert lines[-1].startswith("text: New article:")
    # the company is in the headline already, the role is not
    assert lines[1] == (
        "author: Electrical Engineer at Voltgrid | role: Senior Electrical Engineer | industry: Energy"
    )


def test_missing_percentiles_are_left_out(post: PostFeatures) -> None:
    partial = dataclasses.replace(post, like_percentile=None, followers=None, follower_percentile=None)
    pct = render_post(partial, PromptConfig())
    assert "<like_percentile>" not in pct
    assert "<follower_percentile>" not in pct
    assert "<view_percentile>71</view_percentile> <comment_percentile>58" in pct
    assert "followers:" not in render_post(partial, PromptConfig(counts="raw"))
    bare = PostFeatures(post_id=1, text="hello")
    assert render_post(bare, PromptConfig()) == "post\ntext: hello"  # no stats line, no empty fields


def test_post_text_is_capped_in_characters(post: PostFeatures) -> None:
    long = dataclasses.replace(post, text="storage " * 5000)
    prompt = render_post(long, PromptConfig(text_max_chars=100))
    text_line = prompt.splitlines()[-1]
    assert text_line.endswith("storage ...")
    assert len(text_line) <= len("text: ") + 100 + len(" ...")


def test_post_token_budget_cuts_text_at_a_word(post: PostFeatures, tokenizer: Any) -> None:
    long = dataclasses.replace(post, text="grid storage " * 200)
    cfg = PromptConfig(post_max_tokens=80)
    prompt = render_post(long, cfg, tokenizer=tokenizer)
    assert count_tokens(tokenizer, prompt) <= 80
    full_head = render_post(dataclasses.replace(long, text=None), cfg)
    assert prompt.startswith(full_head + "\ntext: grid storage")  # the head is kept whole
    assert prompt.split("text: ")[1].split()[-1] in ("grid", "storage", "...")
    # one more word would not fit
    words = prompt.split("text: ")[1].split()
    extra = f"{full_head}\ntext: {' '.join([*words, 'grid'])}"
    assert count_tokens(tokenizer, extra) > 80 or len(words) >= 400
    # a prompt that fits is returned unchanged
    assert render_post(post, PromptConfig(), tokenizer=tokenizer) == render_post(post, PromptConfig())


def test_unknown_version_is_an_error(post: PostFeatures) -> None:
    with pytest.raises(ValueError, match="unknown prompt version 'v9'"):
        render_post(post, PromptConfig(version="v9"))
    assert template_for("v1").version == "v1"


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="counts"):
        PromptConfig(counts="log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="member_max_tokens"):
        PromptConfig(member_max_tokens=4)


def test_rendering_is_deterministic(
    post: PostFeatures, member: MemberFeatures, make_history: Any, minilm_path: Any
) -> None:
    from transformers import AutoTokenizer

    from training.prompts import add_special_tokens

    outputs = set()
    for _ in range(2):
        tok = AutoTokenizer.from_pretrained(minilm_path)
        add_special_tokens(tok)
        cfg = PromptConfig()
        outputs.add(render_post(post, cfg) + render_member(member, make_history(30), tok, cfg))
    assert len(outputs) == 1


# --- member prompt ----------------------------------------------------------------------------------------


def test_truncation_keeps_whole_newest_items(
    member: MemberFeatures, make_history: Any, tokenizer: Any
) -> None:
    history = make_history(40)
    cfg = PromptConfig(member_max_tokens=200)
    prompt = render_member(member, history, tokenizer, cfg)
    rendered = [render_history_item(p) for p in history]
    kept = _items(prompt)
    assert 0 < len(kept) < len(history)  # the case where not all fit
    assert kept == rendered[-len(kept) :]  # whole items, the newest ones, oldest first
    assert "post 39:" in kept[-1]
    assert count_tokens(tokenizer, prompt) <= cfg.member_max_tokens
    # maximal: the next older item would not have fitted
    profile = prompt.split("\nengaged posts")[0]
    bigger = template_for("v1").history_block(rendered[-len(kept) - 1 :])
    assert count_tokens(tokenizer, f"{profile}\n{bigger}") > cfg.member_max_tokens
    assert prompt.startswith(template_for("v1").member_profile(member))


def test_history_that_fits_is_kept_whole(member: MemberFeatures, make_history: Any, tokenizer: Any) -> None:
    history = make_history(3)
    prompt = render_member(member, history, tokenizer, PromptConfig())
    assert _items(prompt) == [render_history_item(p) for p in history]
    assert "engaged posts, oldest first:" in prompt


def test_history_max_items_caps_before_the_budget(
    member: MemberFeatures, make_history: Any, tokenizer: Any
) -> None:
    history = make_history(10)
    cfg = PromptConfig(member_max_tokens=512, history_max_items=2)
    prompt = render_member(member, history, tokenizer, cfg)
    assert _items(prompt) == [render_history_item(p) for p in history[-2:]]


def test_cold_start_and_empty_profile(tokenizer: Any) -> None:
    empty = MemberFeatures(member_id=5)
    assert empty.is_empty
    cfg = PromptConfig()
    assert render_member(empty, [], tokenizer, cfg) == "member\nprofile: empty\nengaged posts: none"
    only_role = MemberFeatures(member_id=6, current_role="Nurse", skills=["", "  "])
    assert render_member(only_role, [], tokenizer, cfg) == "member\nrole: Nurse\nengaged posts: none"


def test_oversized_profile_is_cut_at_a_word(make_history: Any, tokenizer: Any) -> None:
    huge = MemberFeatures(member_id=7, headline="Engineer", skills=[f"skill number {i}" for i in range(20)])
    cfg = PromptConfig(member_max_tokens=32)
    for history in ([], make_history(5)):
        prompt = render_member(huge, history, tokenizer, cfg)
        assert count_tokens(tokenizer, prompt) <= 32
        assert prompt.startswith("member: Engineer\nskills: skill number 0, skill number 1")
        assert "engaged posts" not in prompt
        full = template_for("v1").member_profile(huge)
        assert full.startswith(prompt)  # a prefix, cut between words
        assert full[len(prompt)] in " \n"


def test_one_giant_word_is_cut_by_characters(tokenizer: Any) -> None:
    member = MemberFeatures(member_id=8, headline="x" * 190 + "y")
    prompt = render_member(member, [], tokenizer, PromptConfig(member_max_tokens=16))
    assert prompt.startswith("member:")
    assert 0 < count_tokens(tokenizer, prompt) <= 16


def test_history_items_are_compact_one_liners(make_history: Any) -> None:
    item = render_history_item(make_history(2)[1])
    assert "\n" not in item
    assert item.startswith("article #machinelearning by Author 1 at Company 1: Long read number 1")
    long = PostFeatures(post_id=9, text="word " * 400)
    assert len(render_history_item(long)) < 120


def test_wrong_types_are_clear_errors(member: MemberFeatures, tokenizer: Any) -> None:
    with pytest.raises(TypeError, match=r"member 42: history\[1\]: expected PostFeatures, got dict"):
        render_member(member, [PostFeatures(post_id=1), {"post_id": 2}], tokenizer, PromptConfig())  # type: ignore[list-item]
    with pytest.raises(TypeError, match="needs the model's tokenizer"):
        render_member(member, [], None, PromptConfig())
    with pytest.raises(TypeError, match="post: expected PostFeatures"):
        render_post({"post_id": 1}, PromptConfig())  # type: ignore[arg-type]


def test_docs_show_the_golden_prompts() -> None:
    from feed.config import PROJECT_ROOT
    from training.prompts.render import TEMPLATES

    docs = (PROJECT_ROOT / "docs" / "prompts.md").read_text(encoding="utf-8")
    golden = Path(__file__).parent / "golden"
    for name in ("post_percentile", "post_raw", "member_history"):
        assert (golden / f"{name}.txt").read_text(encoding="utf-8") in docs, name
    assert sorted(TEMPLATES) == ["v1"]
