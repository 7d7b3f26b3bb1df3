"""Text hygiene for prompt fields: every string that reaches a prompt goes through :func:`clean_text`.

Prompts must be deterministic and tokenizer-safe whatever the upstream data holds: bytes that are not
UTF-8, lone surrogates, control characters, odd Unicode forms (full-width digits, ligatures), runs of
whitespace and very long texts all map to one canonical string.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

ELLIPSIS = " ..."  # ASCII: every tokenizer has it, "…" is [UNK] in some vocabularies
# Unicode categories removed: control (Cc, after whitespace became spaces), format (Cf: zero-width and
# bidi marks, invisible to readers but tokens to a model), surrogates, private use, unassigned.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# ASCII control characters: whitespace ones become spaces (collapsed later), the rest are deleted.
_ASCII_CONTROLS = {c: (" " if chr(c).isspace() else None) for c in (*range(32), 127)}
_WINDOW_SLACK = 32
# Lone surrogates (from a lossy "surrogateescape" decode upstream) cannot be encoded; one U+FFFD each, as
# for invalid bytes.
_SURROGATES = re.compile("[\ud800-\udfff]")


def is_missing(value: Any) -> bool:
    """None, float NaN, or pandas' NA/NaT — how a missing feature arrives from Feast, Parquet or pandas
    (checked by type name so this module needs no pandas)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def clean_text(value: Any, *, field: str = "text", max_chars: int | None = None) -> str | None:
    """The canonical form of one text field, or None when nothing is left.

    bytes are decoded as UTF-8 with invalid sequences replaced (U+FFFD); lone surrogates in a str are
    replaced the same way; then NFKC, control/format characters removed, whitespace collapsed to single
    spaces. ``max_chars`` clips at the last word boundary (a single longer word is cut hard) and appends
    " ..." so the reader sees the cut. Anything that is not text raises a TypeError naming ``field``.
    """
    if is_missing(value):
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("utf-8", errors="replace")
    elif isinstance(value, str):
        text = value if value.isascii() else _SURROGATES.sub("\ufffd", value)
    else:
        raise TypeError(f"{field}: expected text, got {type(value).__name__} {value!r:.80}")
    if max_chars is not None and len(text) > 2 * max_chars + _WINDOW_SLACK:
        # Clean only a window: a 1 MB post must not cost a 1 MB clean to keep 600 characters. Cleaning is
        # prefix-compatible except in the window's last few characters, which the clip below drops.
        head = _normalise(text[: 2 * max_chars + _WINDOW_SLACK])
        if len(head) > max_chars + _WINDOW_SLACK:
            return clip_words(head, max_chars)
    text = _normalise(text)
    if max_chars is not None and len(text) > max_chars:
        text = clip_words(text, max_chars)
    return text or None


def _normalise(text: str) -> str:
    if text.isascii():  # the common case, ~20× faster: NFKC is the identity on ASCII
        return " ".join(text.translate(_ASCII_CONTROLS).split())
    text = unicodedata.normalize("NFKC", text)
    text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or not _dropped(ch))
    return " ".join(text.split())


def clip_words(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters at a word boundary, plus :data:`ELLIPSIS`."""
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space > 0 and text[max_chars : max_chars + 1] != " ":
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def _dropped(ch: str) -> bool:
    return unicodedata.category(ch) in _DROPPED_CATEGORIES
