"""Prompt configuration: which template version renders, how engagement is spelled, the token budgets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The version new models train with. Older versions stay importable beside it (training/prompts/v1.py,
# v2.py, …) so a checkpoint can always re-render the exact prompts it was trained on: the version goes in
# its config.
PROMPT_VERSION = "v1"

# Smallest budgets that still leave room for a profile line after the encoder's own [CLS]/[SEP] tokens.
MIN_MAX_TOKENS = 16


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are rendered. Travels with a model's config so serving renders what training saw."""

    version: str = PROMPT_VERSION
    # "percentile": <view_percentile>71</view_percentile> special tokens (the default, LinkedIn's choice);
    # "raw": views:12345 — the ablation arm that shows why raw counts barely move the embedding.
    counts: Literal["percentile", "raw"] = "percentile"
    # Member prompts are cut to this many tokens *including* the tokenizer's own special tokens, so the
    # encoder never truncates them mid-item itself.
    member_max_tokens: int = 256
    # The post side's encoder length; render_post honours it when given a tokenizer (text cut at a word).
    post_max_tokens: int = 128
    # Engaged posts considered for the member prompt (the newest ones) before the token budget applies.
    history_max_items: int = 50
    # Post text is clipped at a word boundary before tokenising: a 100 kB post must not cost a 100 kB
    # tokenisation only to be cut to ~100 tokens. 600 characters ≈ 130 WordPiece tokens of English.
    text_max_chars: int = 600

    def __post_init__(self) -> None:
        if self.counts not in ("percentile", "raw"):
            raise ValueError(f"PromptConfig.counts must be 'percentile' or 'raw', got {self.counts!r}")
        for name in ("member_max_tokens", "post_max_tokens"):
            if getattr(self, name) < MIN_MAX_TOKENS:
                value = getattr(self, name)
                raise ValueError(f"PromptConfig.{name} must be >= {MIN_MAX_TOKENS}, got {value}")
        if self.history_max_items < 0:
            raise ValueError(f"PromptConfig.history_max_items must be >= 0, got {self.history_max_items}")
        if self.text_max_chars < 1:
            raise ValueError(f"PromptConfig.text_max_chars must be >= 1, got {self.text_max_chars}")
