"""What the MovieLens and MIND loaders share: deterministic int64 ids, hashtags, pseudo-author members and
the canonical impression table.

Ids must not depend on load order (MIND's train and dev splits share news and users; a re-load must produce
the same ids so that ingest's duplicate check catches it), so they are hashes of the source's own keys:
``mix64(namespace, *int64 columns)`` — SplitMix64's finaliser folded over the inputs, top bit cleared so the
result is a non-negative int64. Collisions are ~n²/2⁶⁴: none expected below billions of rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.ingest import Problem, RawDataError
from pipelines.schemas import LABELS, RAW_IMPRESSIONS, RAW_MEMBERS

# Pseudo-author members (one per genre / news category) live above every real id of the sources.
PSEUDO_AUTHOR_BASE = 10**15
# Neither source records the device; both were web sites when the data was logged.
SOURCE_DEVICE = "desktop_web"
US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def namespace(name: str) -> int:
    """A 63-bit constant naming what an id is of (e.g. ``"movielens/event"``)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


def mix64(ns: str, *columns: np.ndarray | int) -> np.ndarray:
    """Deterministic non-negative int64 id per row of the int64 ``columns`` (see the module docstring)."""
    size = max((len(c) for c in columns if isinstance(c, np.ndarray)), default=1)
    with np.errstate(over="ignore"):
        h = np.full(size, namespace(ns), dtype=np.uint64)
        for col in columns:
            h = _splitmix(h ^ np.asarray(col, dtype=np.int64).astype(np.uint64))
    return (h >> np.uint64(1)).astype(np.int64)


def pseudo_author_id(kind: str, name: str) -> int:
    """member_id of the pseudo-author standing for a genre or news category: ``PSEUDO_AUTHOR_BASE`` plus a
    12-digit hash of ``kind:name`` (stable across loads and splits)."""
    return PSEUDO_AUTHOR_BASE + namespace(f"{kind}:{name}") % 10**12


def hashtag(name: str) -> str:
    """``"Children's"`` → ``"childrens"``, ``"Sci-Fi"`` → ``"scifi"``; keeps letters, digits and ``_``."""
    return re.sub(r"[^a-z0-9_]", "", name.lower())


def ts_array(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC"))


def numeric(frame: pd.DataFrame, column: str, file: Path, *, first_line: int) -> np.ndarray:
    """Column as float64; unparsable values raise :class:`RawDataError` naming the file, line and field."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        problems = [
            Problem(
                file.name, None, column, f"line {first_line + i}: {frame[column].iat[i]!r} is not a number"
            )
            for i in bad[:5]
        ]
        if len(bad) > 5:
            problems.append(
                Problem(file.name, None, column, f"same problem on {len(bad) - 5} more line(s)", len(bad) - 5)
            )
        raise RawDataError(file, problems)
    return values.to_numpy(dtype=np.float64)


def fail(file: Path, message: str, field: str | None = None) -> RawDataError:
    return RawDataError(file, [Problem(file.name, None, field, message)])


def pseudo_authors(
    kind: str, names: Sequence[str], created_us: int, *, headline: str, role: str, industry: str
) -> pa.Table:
    """One member per genre/category name: the authors of the source's items (authors must be members)."""
    ids = [pseudo_author_id(kind, n) for n in names]
    return pa.table(
        {
            "member_id": pa.array(ids, type=pa.int64()),
            "headline": [headline.format(name=n) for n in names],
            "current_role": [role] * len(names),
            "industry": [industry] * len(names),
            "skills": pa.nulls(len(names), RAW_MEMBERS.field("skills").type),
            "education": pa.nulls(len(names), RAW_MEMBERS.field("education").type),
            "work_history": pa.nulls(len(names), RAW_MEMBERS.field("work_history").type),
            "created_at": ts_array(np.full(len(names), created_us)),
        },
        schema=RAW_MEMBERS,
    )


def positions_in_session(session: np.ndarray) -> np.ndarray:
    """0-based position of each row within its session; rows must be grouped by session already."""
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    counts = np.diff(np.r_[starts, len(session)])
    return np.arange(len(session)) - np.repeat(starts, counts)


def impressions_table(
    event_id: np.ndarray,
    member_id: np.ndarray,
    post_id: np.ndarray,
    ts_us: np.ndarray,
    session_id: np.ndarray,
    position: np.ndarray,
    labels: dict[str, np.ndarray],
) -> pa.Table:
    n = len(event_id)
    columns = {
        "event_id": pa.array(event_id, type=pa.int64()),
        "member_id": pa.array(member_id, type=pa.int64()),
        "post_id": pa.array(post_id, type=pa.int64()),
        "event_timestamp": ts_array(ts_us),
        "session_id": pa.array(session_id, type=pa.int64()),
        "device_type": pa.array([SOURCE_DEVICE] * n, type=pa.string()),
        "position": pa.array(np.asarray(position, dtype=np.int32)),
        "request_id": pa.nulls(n, type=pa.string()),
    }
    for name in LABELS:
        columns[name] = pa.array(labels.get(name, np.zeros(n)).astype(np.int8))
    return pa.table(columns, schema=RAW_IMPRESSIONS)
