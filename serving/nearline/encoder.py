"""The promoted encoder as the nearline workers see it: its version, its prompt settings and tokenizer (the
prompt worker renders with the token budgets the model was trained with) and the model itself (embed worker).

The version is re-read from ``artifacts/retrieval/CURRENT`` at every batch, so a promotion takes effect at
the next batch without a restart; every prompt row records the version it was rendered for, and the embed
worker encodes each row with that row's version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feed.config import FeedPaths

if TYPE_CHECKING:
    from training.prompts import PromptConfig
    from training.retrieval.model import DualEncoder


def current_version(paths: FeedPaths) -> str:
    """The promoted model version; ``ExportError`` (a ValueError) when none is promoted."""
    from training.retrieval.export import model_dir

    return model_dir(paths, None).name


@dataclass(frozen=True)
class Renderer:
    """What rendering prompts for one model version needs: its prompt config and tokenizer (no weights)."""

    model_version: str
    prompt: PromptConfig
    tokenizer: Any


def load_renderer(paths: FeedPaths, version: str) -> Renderer:
    from transformers import AutoTokenizer

    from training.retrieval.export import model_dir, prompt_config
    from training.retrieval.model import BACKBONE_DIR, CONFIG_FILE, EncoderConfig

    folder = model_dir(paths, version)
    encoder = EncoderConfig(**json.loads((folder / CONFIG_FILE).read_text())["encoder"])
    tokenizer = AutoTokenizer.from_pretrained(folder / BACKBONE_DIR, local_files_only=True)
    return Renderer(model_version=version, prompt=prompt_config(folder, encoder), tokenizer=tokenizer)


def load_encoder(paths: FeedPaths, version: str, device: str = "auto") -> DualEncoder:
    from training.retrieval.export import load_model, model_dir

    return load_model(model_dir(paths, version), device)


def model_folder(paths: FeedPaths, version: str) -> Path:
    from training.retrieval.export import model_dir

    return model_dir(paths, version)
