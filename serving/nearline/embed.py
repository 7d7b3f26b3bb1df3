"""Embed worker: ``nearline_prompts`` → ``nearline_embeddings``, micro-batched by size and deadline.

Input commits are buffered until ``embed_batch_size`` prompts wait or the oldest waiting one has waited
``embed_deadline_s``; then every buffered prompt is encoded (forward passes of ``embed_batch_size`` texts,
each row with the model version it was rendered for) and the output rows are committed together with the
offset (the last buffered prompts version) in one Delta commit — app transaction ``APP_ID``. A crash loses
only the buffer, which the restarted worker re-reads from the committed offset: nothing is lost or doubled.

Stats rows pass through without inference. A row whose model version cannot be loaded any more (its folder
was removed) is skipped and counted in the log: there is no encoder to give it a vector.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feed.config import FeedPaths
from serving.nearline import log as nlog
from serving.nearline.config import NearlineConfig
from serving.nearline.encoder import current_version, load_encoder
from serving.nearline.schemas import (
    EMBEDDINGS_TABLE,
    MEMBER,
    NEARLINE_EMBEDDINGS,
    NEARLINE_PROMPTS,
    POST,
    PROMPTS_TABLE,
)

if TYPE_CHECKING:
    from training.retrieval.model import DualEncoder

log = logging.getLogger(__name__)

APP_ID = "feed.nearline.embed"
STAGE = "embed"
SKIP_UNKNOWN_VERSION = "model_version_not_loadable"


class EncoderOutputError(ValueError):
    """The encoder returned vectors of the wrong shape or with non-finite values."""


def _embedding_array(vectors: list[np.ndarray | None]) -> pa.Array:
    return pa.array([None if v is None else v.tolist() for v in vectors], type=pa.list_(pa.float32()))


class EmbedWorker:
    stage = STAGE

    def __init__(self, paths: FeedPaths, cfg: NearlineConfig, *, device: str = "auto") -> None:
        self.paths, self.cfg, self.device = paths, cfg, device
        self.input = paths.table(PROMPTS_TABLE)
        self.output = paths.table(EMBEDDINGS_TABLE)
        self.offset = nlog.committed_offset(self.output, APP_ID)
        self.buffer: list[nlog.Commit] = []
        self.buffer_since: float | None = None  # monotonic time the oldest buffered commit was read
        self.models: dict[str, DualEncoder] = {}
        self.skipped: Counter[str] = Counter()
        self._warm_up()

    def _warm_up(self) -> None:
        """Load the promoted encoder now rather than on the first prompt (seconds of torch start-up)."""
        try:
            version = current_version(self.paths)
        except ValueError:
            return  # nothing promoted yet: rows name their version, loaded when they come
        self._model(version)

    @property
    def read_upto(self) -> int:
        return self.buffer[-1].version if self.buffer else self.offset

    def pending(self) -> int:
        head = nlog.head_version(self.input)
        return 0 if head is None else max(0, head - self.offset)

    def _model(self, version: str) -> DualEncoder | None:
        if version not in self.models:
            try:
                model = load_encoder(self.paths, version, self.device)
            except (ValueError, FileNotFoundError) as exc:
                log.warning(
                    "embed: model version %s cannot be loaded (%s); its rows are skipped", version, exc
                )
                return None
            self.models = {version: model}  # one version at a time in memory (a promotion switches)
        return self.models[version]

    def step(self, *, drain: bool = False) -> int:
        """Read new input into the buffer and flush it when due (``drain``: flush whatever is buffered)."""
        commits = nlog.read_commits(
            self.input,
            NEARLINE_PROMPTS,
            self.read_upto,
            max_versions=self.cfg.max_versions,
            max_rows=self.cfg.max_rows,
        )
        if commits:
            if not self.buffer:
                self.buffer_since = time.monotonic()
            self.buffer.extend(commits)
        if not self.buffer:
            return 0
        waiting = sum(c.rows.num_rows for c in self.buffer)
        due = (
            drain
            or waiting >= self.cfg.embed_batch_size
            or time.monotonic() - (self.buffer_since or 0.0) >= self.cfg.embed_deadline_s
        )
        if not due:
            return 0
        return self._flush()

    def _flush(self) -> int:
        self.cfg.maybe_crash(STAGE, "after_read")
        parts = []
        for commit in self.buffer:
            rows = commit.rows
            parts.append(
                rows.append_column("prompts_version", pa.array([commit.version] * rows.num_rows, pa.int64()))
            )
        rows = pa.concat_tables(parts) if parts else NEARLINE_PROMPTS.empty_table()
        vectors = self._encode(rows)
        keep = [
            i for i, v in enumerate(vectors) if v is not None or rows["kind"][i].as_py() not in (POST, MEMBER)
        ]
        out = rows.take(pa.array(keep, pa.int64())) if len(keep) < rows.num_rows else rows
        out = (
            out.drop_columns(["prompt"])
            .append_column("embedding", _embedding_array([vectors[i] for i in keep]))
            .append_column(
                "embedded_at",
                pa.array(
                    [dt.datetime.now(dt.UTC)] * out.num_rows, NEARLINE_EMBEDDINGS.field("embedded_at").type
                ),
            )
        )
        last = self.buffer[-1].version
        nlog.commit_with_offset(self.output, out, NEARLINE_EMBEDDINGS, APP_ID, last)
        consumed = len(self.buffer)
        self.offset, self.buffer, self.buffer_since = last, [], None
        log.info("embed: prompts ≤ v%d → %d embedding rows", last, out.num_rows)
        self.cfg.maybe_crash(STAGE, "after_commit")
        return consumed

    def _encode(self, rows: pa.Table) -> list[np.ndarray | None]:
        """One vector per row (None for stats rows and rows whose version cannot be loaded)."""
        vectors: list[np.ndarray | None] = [None] * rows.num_rows
        kinds = rows["kind"].to_pylist()
        versions = rows["model_version"].to_pylist()
        prompts = rows["prompt"].to_pylist()
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (kind, version) in enumerate(zip(kinds, versions, strict=True)):
            if kind in (POST, MEMBER):
                groups.setdefault((version, kind), []).append(i)
        for (version, kind), idx in groups.items():
            model = self._model(version)
            if model is None:
                self.skipped[SKIP_UNKNOWN_VERSION] += len(idx)
                continue
            texts = [prompts[i] or "" for i in idx]
            out = model.embed(texts, kind, batch_size=self.cfg.embed_batch_size).float().numpy()
            if out.shape != (len(idx), model.dim) or not np.isfinite(out).all():
                raise EncoderOutputError(
                    f"encoder {version} returned shape {out.shape} / non-finite values "
                    f"for {len(idx)} {kind} prompts"
                )
            for j, i in enumerate(idx):
                vectors[i] = out[j]
        return vectors


def embedded_kinds(table: pa.Table) -> dict[str, int]:
    """Rows per kind (status, tests)."""
    counts = pc.value_counts(table["kind"]).to_pylist() if table.num_rows else []
    return {c["values"]: c["counts"] for c in counts}
