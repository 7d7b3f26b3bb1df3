"""Embedding export: batched inference to the Delta tables ``post_embeddings`` / ``member_embeddings``.

Rows follow ``pipelines.schemas.EMBEDDING_POST`` / ``EMBEDDING_MEMBER`` (id, model_version, embedding
list<float32>, event_timestamp, created) — what the Milvus index build and the Feast push sources read.

Versioned and idempotent: every model version's rows live side by side in one table, and exporting a version
again replaces exactly that version's rows (one Delta commit, ``predicate = "model_version = '<v>'"``), so a
re-run after a crash or a retrain under the same name never duplicates rows and never touches other versions.
The whole version is committed at once (all batches are gathered first): a reader never sees half a version.
That holds a version in memory — 384 floats × 4 B ≈ 1.5 kB a row, ≈ 0.8 GB at 500k posts.

Bad input, each with a defined behaviour: an empty or missing text is skipped and counted (``empty_text``);
text that is not valid UTF-8 (bytes, or a str carrying lone surrogates from a lossy decode) is repaired with
U+FFFD and counted (``text_repaired``); a duplicate or non-integer id, a model version that is not a plain
name, or an encoder returning the wrong shape or non-finite values raises a ``ValueError`` naming it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from feed.config import FeedPaths

EmbedKind = Literal["post", "member"]
EncodeFn = Callable[[list[str]], Any]  # texts -> (N, D) tensor or array

SKIP_EMPTY_TEXT = "empty_text"
TEXT_REPAIRED = "text_repaired"
# Goes into a SQL predicate and a Milvus collection name (posts_<model_version>): keep it a plain name.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TABLES: dict[str, tuple[str, str]] = {
    "post": ("post_embeddings", "post_id"),
    "member": ("member_embeddings", "member_id"),
}


@dataclass(frozen=True)
class EmbedResult:
    table: Path
    model_version: str
    rows: int
    dim: int
    delta_version: int
    skipped: dict[str, int]  # reason -> rows skipped (or repaired, for text_repaired)


def check_model_version(model_version: str) -> str:
    if not isinstance(model_version, str) or not _VERSION_RE.match(model_version):
        raise ValueError(
            f"model_version {model_version!r} must be 1–128 characters of letters, digits, '.', '_' or '-' "
            "(it is used in a Delta predicate and a Milvus collection name)"
        )
    return model_version


def _clean_text(text: Any, counts: Counter[str]) -> str | None:
    """Valid UTF-8 text, or None when there is nothing to embed."""
    if text is None:
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("utf-8", errors="replace")
            counts[TEXT_REPAIRED] += 1
    elif not isinstance(text, str):
        raise ValueError(f"text must be str or bytes, got {type(text).__name__}")
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: arrow and tokenizers reject them
            text = text.encode("utf-8", errors="replace").decode("utf-8")
            counts[TEXT_REPAIRED] += 1
    return text if text.strip() else None


def _batches(
    rows: Iterable[tuple[int, Any]], batch_size: int, counts: Counter[str], id_name: str
) -> Iterator[tuple[list[int], list[str]]]:
    """Valid (ids, texts) batches; raises on a bad or repeated id, naming the row."""
    seen: dict[int, int] = {}
    ids: list[int] = []
    texts: list[str] = []
    for row_no, (raw_id, raw_text) in enumerate(rows):
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | np.integer):
            raise ValueError(f"row {row_no}: {id_name} {raw_id!r} is not an integer")
        key = int(raw_id)
        if key in seen:
            raise ValueError(f"row {row_no}: {id_name} {key} already given at row {seen[key]}")
        seen[key] = row_no
        try:
            text = _clean_text(raw_text, counts)
        except ValueError as exc:
            raise ValueError(f"row {row_no} ({id_name} {key}): {exc}") from exc
        if text is None:
            counts[SKIP_EMPTY_TEXT] += 1
            continue
        ids.append(key)
        texts.append(text)
        if len(ids) == batch_size:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts


def _encode_batch(encode_fn: EncodeFn, ids: list[int], texts: list[str], id_name: str) -> np.ndarray:
    with torch.inference_mode():
        out = encode_fn(texts)
    vecs = (
        out.detach().to("cpu", torch.float32).numpy()
        if isinstance(out, torch.Tensor)
        else np.asarray(out, dtype=np.float32)
    )
    if vecs.ndim != 2 or vecs.shape[0] != len(texts):
        raise ValueError(
            f"encoder returned shape {vecs.shape} for {len(texts)} texts ({id_name}s {ids[:3]}…)"
        )
    finite = np.isfinite(vecs).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"encoder returned a non-finite embedding for {id_name} {ids[int(np.argmin(finite))]}"
        )
    return vecs


def _to_arrow(
    id_name: str,
    ids: list[int],
    vecs: np.ndarray,
    model_version: str,
    event_ts: dt.datetime,
    created: dt.datetime,
) -> pa.Table:
    from pipelines.schemas import TS

    n, d = vecs.shape
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    embedding = pa.ListArray.from_arrays(offsets, pa.array(vecs.reshape(-1), type=pa.float32()))
    return pa.table(
        {
            id_name: pa.array(ids, type=pa.int64()),
            "model_version": pa.array([model_version] * n, type=pa.string()),
            "embedding": embedding,
            "event_timestamp": pa.array([event_ts] * n, type=TS),
            "created": pa.array([created] * n, type=TS),
        }
    )


def export_embeddings(
    kind: EmbedKind,
    encode_fn: EncodeFn,
    rows: Iterable[tuple[int, Any]],
    model_version: str,
    paths: FeedPaths,
    *,
    batch_size: int = 64,
    event_timestamp: dt.datetime | None = None,
    progress: bool = True,
) -> EmbedResult:
    """Encode ``rows`` of (id, prompt text) in batches and replace ``model_version``'s rows in the table.

    ``event_timestamp`` is when the embeddings become valid for point-in-time reads (default: now, UTC).
    """
    from pipelines import delta_io
    from pipelines.schemas import FEATURE_SCHEMAS

    if kind not in _TABLES:
        raise ValueError(f"unknown embedding kind {kind!r}; expected 'post' or 'member'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    check_model_version(model_version)
    table_name, id_name = _TABLES[kind]
    created = dt.datetime.now(dt.UTC)
    event_ts = event_timestamp or created
    if event_ts.tzinfo is None:
        raise ValueError(f"event_timestamp {event_ts} must be timezone-aware (UTC)")
    counts: Counter[str] = Counter()
    parts: list[pa.Table] = []
    dim: int | None = None
    total = len(rows) if hasattr(rows, "__len__") else None  # type: ignore[arg-type]
    with tqdm(total=total, desc=f"embed {kind}s", unit="row", disable=not progress) as bar:
        for ids, texts in _batches(rows, batch_size, counts, id_name):
            vecs = _encode_batch(encode_fn, ids, texts, id_name)
            if dim is not None and vecs.shape[1] != dim:
                raise ValueError(
                    f"encoder changed dimension from {dim} to {vecs.shape[1]} at {id_name} {ids[0]}"
                )
            dim = vecs.shape[1]
            parts.append(_to_arrow(id_name, ids, vecs, model_version, event_ts, created))
            bar.update(len(ids))
    if not parts or dim is None:
        raise ValueError(
            f"no {kind} had text to embed ({dict(counts)}); "
            f"table {table_name} left unchanged for {model_version!r}"
        )
    path = paths.table(table_name)
    data = pa.concat_tables(parts)
    if delta_io.exists(path):
        version = delta_io.write(
            path,
            data,
            mode="overwrite",
            predicate=f"model_version = '{model_version}'",
            schema=FEATURE_SCHEMAS[table_name],
        )
    else:
        version = delta_io.write(path, data, mode="append", schema=FEATURE_SCHEMAS[table_name])
    return EmbedResult(path, model_version, data.num_rows, dim, version, dict(counts))


def embed_posts(
    encode_fn: EncodeFn,
    posts: Iterable[tuple[int, Any]],
    model_version: str,
    paths: FeedPaths,
    *,
    batch_size: int = 64,
    event_timestamp: dt.datetime | None = None,
    progress: bool = True,
) -> EmbedResult:
    """(post_id, post prompt) pairs → ``post_embeddings`` rows of ``model_version``."""
    return export_embeddings(
        "post",
        encode_fn,
        posts,
        model_version,
        paths,
        batch_size=batch_size,
        event_timestamp=event_timestamp,
        progress=progress,
    )


def embed_members(
    encode_fn: EncodeFn,
    members: Iterable[tuple[int, Any]],
    model_version: str,
    paths: FeedPaths,
    *,
    batch_size: int = 64,
    event_timestamp: dt.datetime | None = None,
    progress: bool = True,
) -> EmbedResult:
    """(member_id, member prompt) pairs → ``member_embeddings`` rows of ``model_version``."""
    return export_embeddings(
        "member",
        encode_fn,
        members,
        model_version,
        paths,
        batch_size=batch_size,
        event_timestamp=event_timestamp,
        progress=progress,
    )


def model_versions(paths: FeedPaths, kind: EmbedKind) -> list[str]:
    """The model versions present in the table, sorted; empty when the table does not exist."""
    from pipelines import delta_io

    path = paths.table(_TABLES[kind][0])
    if not delta_io.exists(path):
        return []
    col = delta_io.read(path, columns=["model_version"]).column("model_version")
    return sorted(set(col.to_pylist()))


def read_embeddings(paths: FeedPaths, kind: EmbedKind, model_version: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) int64, vectors (N, D) float32) of one model version, ordered by id."""
    import pyarrow.compute as pc

    from pipelines import delta_io

    table_name, id_name = _TABLES[kind]
    path = paths.table(table_name)
    if not delta_io.exists(path):
        raise FileNotFoundError(f"no {table_name} table at {path}; run the embedding export first")
    check_model_version(model_version)
    data = delta_io.read(
        path, columns=[id_name, "embedding"], filter=pc.field("model_version") == model_version
    ).sort_by(id_name)
    if not data.num_rows:
        raise ValueError(f"{table_name} has no rows for model_version {model_version!r}")
    ids = data.column(id_name).to_numpy()
    emb = data.column("embedding").combine_chunks()
    lengths = pc.list_value_length(emb).to_numpy()
    if (lengths != lengths[0]).any():
        raise ValueError(
            f"{table_name} {model_version!r}: embeddings of different lengths {sorted(set(lengths))}"
        )
    vecs = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(ids), int(lengths[0]))
    return ids, vecs
