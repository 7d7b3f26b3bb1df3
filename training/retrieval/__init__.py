"""Retrieval stage: the shared-tower dual encoder, its InfoNCE loss and trainer, and the training profiles.

Importable with torch + transformers only; evaluation and embedding export live in ``evaluate.py`` and
``embed.py``.
"""

from training.retrieval.loss import info_nce
from training.retrieval.model import DualEncoder, EncoderConfig, mean_pool
from training.retrieval.profiles import PROFILES, Profile, get_profile
from training.retrieval.train import (
    RetrievalExample,
    TrainConfig,
    TrainResult,
    load_examples,
    promote,
    train,
)

__all__ = [
    "PROFILES",
    "DualEncoder",
    "EncoderConfig",
    "Profile",
    "RetrievalExample",
    "TrainConfig",
    "TrainResult",
    "get_profile",
    "info_nce",
    "load_examples",
    "mean_pool",
    "promote",
    "train",
]
