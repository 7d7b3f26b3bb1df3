"""What a prompt template version provides; render.py picks one by ``PromptConfig.version``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training.prompts.config import PromptConfig
from training.prompts.features import MemberFeatures, PostFeatures


@dataclass(frozen=True)
class PromptTemplate:
    """One template version. The post prompt is ``post_head`` then, on its own last line, ``post_text`` —
    text last so a token budget only ever cuts the text. The member prompt is ``member_profile`` then either
    ``history_block(items)`` or ``no_history``; ``history_block`` joins items with ``history_joiner`` after
    ``history_header`` so the renderer can price each item on its own."""

    version: str
    post_head: Callable[[PostFeatures, PromptConfig], str]
    post_text: Callable[[str], str]
    history_item: Callable[[PostFeatures], str]
    member_profile: Callable[[MemberFeatures], str]
    history_header: str
    history_joiner: str
    no_history: str

    def history_block(self, items: Sequence[str]) -> str:
        return self.history_header + "".join(self.history_joiner + item for item in items)
