"""Rendering: feature rows → prompt text, with token budgets measured by the model's own tokenizer.

Budgets count the tokenizer's special tokens too ([CLS]/[SEP] for BERT), so a prompt that fits is never
truncated again by the encoder. Cuts are at whole history items; only when the profile alone is over the
budget is it cut, at a word (or, for one giant word, a character) from the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from training.prompts import v1
from training.prompts.config import PROMPT_VERSION, PromptConfig
from training.prompts.features import MemberFeatures, PostFeatures
from training.prompts.template import PromptTemplate
from training.prompts.text import clean_text

TEMPLATES: Mapping[str, PromptTemplate] = MappingProxyType({v1.VERSION: v1.TEMPLATE})
_WORDS = re.compile(r"\S+\s*")


def template_for(version: str) -> PromptTemplate:
    """The template of a prompt version; an unknown version is an error, never a silent fallback."""
    try:
        return TEMPLATES[version]
    except KeyError:
        raise ValueError(f"unknown prompt version {version!r}; known: {sorted(TEMPLATES)}") from None


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens the encoder will see for ``text``, including the tokenizer's own special tokens."""
    return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def render_post(post: PostFeatures, cfg: PromptConfig, *, tokenizer: Any = None) -> str:
    """The post prompt. Text is clipped to ``cfg.text_max_chars`` characters; with a ``tokenizer`` the text
    is also cut at a word so the whole prompt fits ``cfg.post_max_tokens`` (the head — format, author,
    stats, topic, title — comes first and is kept; it is cut only if it alone is over the budget)."""
    _check_type(post, PostFeatures, "post")
    template = template_for(cfg.version)
    head = template.post_head(post, cfg)
    text = clean_text(post.text, field=f"post {post.post_id}: text", max_chars=cfg.text_max_chars)
    prompt = f"{head}\n{template.post_text(text)}" if text else head
    if tokenizer is None:
        return prompt

    def fits(candidate: str) -> bool:
        return count_tokens(tokenizer, candidate) <= cfg.post_max_tokens

    if fits(prompt):
        return prompt
    if text and fits(head):
        words = _WORDS.findall(text)
        k = _largest(len(words), lambda k: fits(f"{head}\n{template.post_text(_join(words[:k]))}"))
        if k > 0:
            return f"{head}\n{template.post_text(_join(words[:k]))}"
        return head
    return _cut_to_fit(head, fits)


def render_history_item(post: PostFeatures, *, version: str = PROMPT_VERSION) -> str:
    """One engaged post as a compact one-liner (the member prompt's history entries)."""
    _check_type(post, PostFeatures, "history item")
    return template_for(version).history_item(post)


def render_member(
    member: MemberFeatures, history: Sequence[PostFeatures], tokenizer: Any, cfg: PromptConfig
) -> str:
    """The member prompt: profile, then the engaged posts in chronological order (``history`` oldest
    first, newest last).

    Keeps the NEWEST items that fit ``cfg.member_max_tokens`` (at most ``cfg.history_max_items``), whole
    items only, still oldest first. An empty history renders the template's cold-start line ("engaged posts:
    none"); a non-empty history of which not even the newest item fits renders the profile alone. If the
    profile alone (with the cold-start line when there is no history) is over the budget, it is cut at a
    word from the end and no history is rendered.
    """
    _check_type(member, MemberFeatures, "member")
    if tokenizer is None:
        raise TypeError("render_member needs the model's tokenizer: the budget is counted in its tokens")
    for i, post in enumerate(history):
        _check_type(post, PostFeatures, f"member {member.member_id}: history[{i}]")
    template = template_for(cfg.version)
    budget = cfg.member_max_tokens

    def fits(candidate: str) -> bool:
        return count_tokens(tokenizer, candidate) <= budget

    profile = template.member_profile(member)
    if not history:
        cold = f"{profile}\n{template.no_history}"
        return cold if fits(cold) else _cut_to_fit(profile, fits)
    if not fits(profile):
        return _cut_to_fit(profile, fits)
    recent = list(history)[-cfg.history_max_items :] if cfg.history_max_items else []
    return _fit_history(profile, recent, template, tokenizer, fits, budget)


def _fit_history(
    profile: str,
    recent: list[PostFeatures],
    template: PromptTemplate,
    tokenizer: Any,
    fits: Callable[[str], bool],
    budget: int,
) -> str:
    """``profile`` plus the largest block of newest items of ``recent`` that fits the budget."""
    newest_first: list[str] = []  # rendered lazily: a 5,000-item history costs only the items that fit

    def item(i: int) -> str:  # the i-th newest item (0 = newest)
        while len(newest_first) <= i:
            newest_first.append(template.history_item(recent[-1 - len(newest_first)]))
        return newest_first[i]

    def with_newest(k: int) -> str:
        kept = [item(i) for i in reversed(range(k))]
        return f"{profile}\n{template.history_block(kept)}" if k else profile

    # Price items one by one, newest first. Exact for WordPiece (items are separated by whitespace); for
    # BPE/sentencepiece a merge across the joiner can shift the sum by a token, which the loops below fix.
    used = count_tokens(tokenizer, f"{profile}\n{template.history_header}")
    k = 0
    while k < len(recent):
        used += len(tokenizer(template.history_joiner + item(k), add_special_tokens=False)["input_ids"])
        if used > budget:
            break
        k += 1
    while k > 0 and not fits(with_newest(k)):
        k -= 1
    while k < len(recent) and fits(with_newest(k + 1)):
        k += 1
    return with_newest(k)


def _cut_to_fit(text: str, fits: Callable[[str], bool]) -> str:
    """The longest word prefix of ``text`` that fits; a single word too long for the budget is cut by
    characters. Returns "" only if not even one character fits (impossible with PromptConfig's minimums)."""
    words = _WORDS.findall(text)
    k = _largest(len(words), lambda k: fits(_join(words[:k])))
    if k > 0:
        return _join(words[:k])
    first = words[0] if words else ""
    c = _largest(len(first), lambda c: fits(first[:c]))
    return first[:c].rstrip()


def _largest(n: int, fits: Callable[[int], bool]) -> int:
    """Largest k in 0..n with fits(k) (fits is monotone: more text never has fewer tokens); 0 if none."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _join(words: Sequence[str]) -> str:
    return "".join(words).rstrip()


def _check_type(value: object, expected: type, what: str) -> None:
    if not isinstance(value, expected):
        raise TypeError(f"{what}: expected {expected.__name__}, got {type(value).__name__}")
