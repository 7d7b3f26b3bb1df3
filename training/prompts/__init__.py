"""Prompt library: Feast feature rows → deterministic, versioned prompt text for the dual encoder.

Light to import (no torch, Feast, Spark or pandas at module level); tokenizers are passed in by the caller.
See docs/prompts.md for the templates and every defined behaviour on bad input.
"""

from training.prompts.config import PROMPT_VERSION, PromptConfig
from training.prompts.features import MemberFeatures, PostFeatures, current_company, parse_work_item
from training.prompts.render import (
    TEMPLATES,
    count_tokens,
    render_history_item,
    render_member,
    render_post,
    template_for,
)
from training.prompts.text import clean_text
from training.prompts.tokens import SPECIAL_TOKENS, STATS, add_special_tokens, percentile_tag, split_numbers

__all__ = [
    "PROMPT_VERSION",
    "SPECIAL_TOKENS",
    "STATS",
    "TEMPLATES",
    "MemberFeatures",
    "PostFeatures",
    "PromptConfig",
    "add_special_tokens",
    "clean_text",
    "count_tokens",
    "current_company",
    "parse_work_item",
    "percentile_tag",
    "render_history_item",
    "render_member",
    "render_post",
    "split_numbers",
    "template_for",
]
