"""The GR ranker's input vocabulary: task order, action code, device codes, context features, profile hashes.

Shared by the set builder (``pipelines/ranking_set.py``), the loader (``training/data/ranking_data.py``), the
model and serving, so all of them encode a (labels, device, profile) the same way. numpy only: importable
without torch, pandas, Spark or Feast.

Action code (uint8, 0..63) = sum(label_i << i) over :data:`TASKS` order; a history token carries it, so the
model sees which of the six things the member did with an item in one embedding lookup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

# Same order as pipelines.schemas.LABELS (a test keeps them equal); passive first, then active.
TASKS: tuple[str, ...] = ("click", "skip", "long_dwell", "like", "comment", "share")
PASSIVE_TASKS: tuple[str, ...] = TASKS[:3]
ACTIVE_TASKS: tuple[str, ...] = TASKS[3:]
# DESIGN.md: an impression is engaged when any of these is 1 (skip is not engagement).
ENGAGED_TASKS: tuple[str, ...] = ("click", "long_dwell", "like", "comment", "share")
N_ACTIONS = 1 << len(TASKS)  # 64 action codes

# 0 = unknown (a value outside the vocabulary, or missing), then the known raw_impressions.device_type values
# sorted (pipelines.schemas.DEVICE_TYPES; a test keeps them equal). Appending a new device type changes the
# codes after it: models record the vocabulary they were trained with.
DEVICES: tuple[str, ...] = ("unknown", "desktop_web", "mobile_app", "mobile_web", "tablet")
UNKNOWN_DEVICE = 0

# Per-target context floats (NaN where the feature store had no value), in this order in RankingArrays.
CONTEXT_FEATURES: tuple[str, ...] = (
    "author_affinity",  # member_affinity as of the impression: the author's score if in the top list, else 0
    "topic_affinity",  # same for the post's topic (post_content.topic)
    "view_percentile",  # post_engagement percentiles / 100 (DESIGN.md bucket rule: 0.01..1.00)
    "like_percentile",
    "comment_percentile",
    "share_percentile",
    "follower_percentile",  # author_stats / 100
    "post_age_hours_log1p",  # log1p(hours since post_content.created_at), 0 for a post created later
)
PROFILE_FEATURES: tuple[str, ...] = ("industry", "current_role")  # hashed per example, 0 = missing

PROFILE_HASH_MOD = (1 << 62) - 1  # hashes fall in [1, 2**62): positive int64, 0 stays "missing"


def _as_label_matrix(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(TASKS):
        raise ValueError(f"labels must have shape (N, {len(TASKS)}), got {labels.shape}")
    return labels


def encode_actions(labels: np.ndarray) -> np.ndarray:
    """(N, 6) 0/1 labels in TASKS order → (N,) uint8 action codes. Any non-zero label counts as 1."""
    labels = _as_label_matrix(labels) != 0
    weights = (1 << np.arange(len(TASKS), dtype=np.uint8)).astype(np.uint8)
    return (labels.astype(np.uint8) * weights).sum(axis=1, dtype=np.uint8)


def decode_actions(codes: np.ndarray) -> np.ndarray:
    """(N,) action codes → (N, 6) uint8 0/1 labels in TASKS order."""
    codes = np.asarray(codes)
    if codes.size and (codes.min() < 0 or codes.max() >= N_ACTIONS):
        raise ValueError(f"action codes must lie in [0, {N_ACTIONS}), got [{codes.min()}, {codes.max()}]")
    return ((codes.astype(np.uint8)[:, None] >> np.arange(len(TASKS), dtype=np.uint8)) & 1).astype(np.uint8)


def task_mask(tasks: Iterable[str]) -> int:
    """Bit mask of ``tasks`` in the action code (``task_mask(ENGAGED_TASKS)`` → engaged test)."""
    mask = 0
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        mask |= 1 << TASKS.index(task)
    return mask


ENGAGED_MASK = task_mask(ENGAGED_TASKS)


def is_engaged(codes: np.ndarray) -> np.ndarray:
    """(N,) bool: the action code has any engaged label (DESIGN.md)."""
    return (np.asarray(codes).astype(np.int64) & ENGAGED_MASK) != 0


def device_codes(values: Sequence[str | None] | np.ndarray) -> np.ndarray:
    """device_type strings → int8 codes of :data:`DEVICES` (0 for missing or unknown values)."""
    lookup = {name: i for i, name in enumerate(DEVICES) if i != UNKNOWN_DEVICE}
    return np.fromiter((lookup.get(v, UNKNOWN_DEVICE) for v in values), dtype=np.int8, count=len(values))


def hash_string(value: str | None) -> int:
    """A stable (process- and machine-independent) hash of a profile string in [1, 2**62); 0 for a missing
    or empty value. The model reduces it modulo its own bucket count."""
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return 0
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % PROFILE_HASH_MOD


def hash_strings(values: Sequence[str | None] | np.ndarray) -> np.ndarray:
    """(N,) int64 :func:`hash_string` of each value (each distinct value hashed once)."""
    cache: dict[object, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        key = None if value is None or (isinstance(value, float) and np.isnan(value)) else value
        if key not in cache:
            cache[key] = hash_string(key)
        out[i] = cache[key]
    return out
