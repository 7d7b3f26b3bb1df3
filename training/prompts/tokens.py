"""Percentile tags as special tokens.

LinkedIn's finding: a language model reads "views: 12345" as a few arbitrary number pieces, so raw counts
barely move an embedding (popularity–similarity correlation ≈ −0.004); wrapping a 1..100 bucket in tags
that are single special tokens (``<view_percentile>71</view_percentile>``) makes popularity legible. That only
holds when each tag is ONE token and the number is ONE token: :func:`add_special_tokens` guarantees both for
any Hugging Face tokenizer and grows the model's embedding matrix to match.
"""

from __future__ import annotations

from typing import Any

from training.prompts.features import PERCENTILE_MAX, PERCENTILE_MIN

# Order matters only for reproducibility: new token ids are assigned in this order.
STATS: tuple[str, ...] = ("view", "like", "comment", "share", "follower")
SPECIAL_TOKENS: tuple[str, ...] = tuple(
    tag for stat in STATS for tag in (f"<{stat}_percentile>", f"</{stat}_percentile>")
)


def percentile_tag(stat: str, value: int) -> str:
    """``<view_percentile>71</view_percentile>`` for stat "view" (one of :data:`STATS`)."""
    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r}; expected one of {STATS}")
    return f"<{stat}_percentile>{value}</{stat}_percentile>"


def split_numbers(tokenizer: Any) -> list[str]:
    """Bucket values (1..100) that the tokenizer does not keep as one token between two tags.

    Checked inside a tag, not alone: that is the context the prompt uses, and sentencepiece tokenizers
    tokenise a number differently at the start of a text than after another token.
    """
    open_tag, close_tag = SPECIAL_TOKENS[0], SPECIAL_TOKENS[1]
    split = []
    for n in range(PERCENTILE_MIN, PERCENTILE_MAX + 1):
        pieces = tokenizer.tokenize(f"{open_tag}{n}{close_tag}")
        if len(pieces) != 3 or pieces[0] != open_tag or pieces[2] != close_tag:
            split.append(str(n))
    return split


def add_special_tokens(tokenizer: Any, model: Any = None) -> int:
    """Make the percentile tags single special tokens of ``tokenizer`` (and the numbers 1..100 single
    tokens when its vocabulary splits any); resize ``model``'s input embeddings to the new vocabulary.

    Idempotent: a second call adds nothing and returns 0. Returns the number of tokens added. Numbers are
    added as ordinary ``single_word`` tokens, so "71" becomes one token only when it stands alone (after a
    tag, "views:71") and "1971" is left to the tokenizer's own rules. New embedding rows are initialised by
    ``resize_token_embeddings`` (transformers: mean of the existing rows), and fine-tuning learns them.
    """
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    added = 0
    if missing:
        # normalized=False: an uncased tokenizer must not lower-case or accent-strip the tag text before
        # matching (the tags are lower-case already, but a cased vocabulary must match them verbatim too).
        tags = [AddedToken(t, special=True, normalized=False) for t in missing]
        added += tokenizer.add_special_tokens(
            {"extra_special_tokens": tags}, replace_extra_special_tokens=False
        )
    numbers = split_numbers(tokenizer)
    if numbers:
        added += tokenizer.add_tokens([AddedToken(n, single_word=True, normalized=False) for n in numbers])
        still_split = split_numbers(tokenizer)
        if still_split:
            name = type(tokenizer).__name__
            raise RuntimeError(f"tokenizer {name} still splits the percentiles {still_split[:5]}")
    if model is not None:
        embeddings = model.get_input_embeddings()
        if embeddings.num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    return added
