"""The retrieval stage: member vector → Milvus top-N, the cold-start encoder, and the popular fallback.

* :class:`Retriever` searches the collection behind the ``posts`` alias (Milvus Lite locally, a cluster by
  URI) with the member's filter (already engaged/seen posts, the member's own posts). It refuses to start when
  the alias holds another encoder's vectors than the promoted one (query and post vectors must share a space).
  A lost connection is retried once per request after a reconnect; if Milvus is still down the request takes
  the popular fallback and the next request tries again (recovery needs no restart).
* :class:`ColdStartEncoder` renders a member's profile prompt (the retrieval model's own prompt settings, no
  history) and encodes it with the promoted encoder — the path for members without a stored embedding.
* :class:`PopularPosts`: the fallback candidates, recent posts ranked by their engagement percentiles from the
  ``post_engagement`` Delta table as of the serving clock (the same numbers Feast serves).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from feed.config import FeedPaths
from serving.index.base import SearchFilter
from serving.types import MemberOnline

if TYPE_CHECKING:
    from serving.index.milvus import MilvusPostIndex

log = logging.getLogger(__name__)


class RetrievalUnavailable(RuntimeError):
    """Milvus could not answer (down, timed out, or the collection is gone)."""


@dataclass(frozen=True)
class Candidates:
    post_ids: np.ndarray  # int64, best first
    scores: np.ndarray  # float32 (cosine for Milvus, popularity for the fallback)
    source: str  # "milvus" | "popular"


class Retriever:
    """Milvus top-N for one member vector, with the member's filter."""

    def __init__(
        self, paths: FeedPaths, *, uri: str | None, token: str, start_server: bool, model_version: str
    ) -> None:
        from serving.index.milvus import IndexConfig

        self.paths = paths
        self.model_version = model_version
        self.config = IndexConfig(uri=uri, token=token, timeout_s=5.0)
        self.start_server = start_server
        self._index: MilvusPostIndex | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.open()

    def open(self) -> MilvusPostIndex:
        """(Re)connect and check the served collection holds the promoted encoder's vectors."""
        from serving.index.base import ModelVersionMismatchError
        from serving.index.milvus import MilvusPostIndex, resolve_uri

        with self._lock:
            try:
                if self.start_server and not self.config.uri:
                    resolve_uri(
                        self.config, self.paths, start=True
                    )  # the home's Lite server, started if needed
                self._index = MilvusPostIndex.open(
                    self.config, self.paths, expect_model_version=self.model_version
                )
            except ModelVersionMismatchError:
                raise
            except Exception as exc:
                self._index = None
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise RetrievalUnavailable(f"Milvus unavailable: {self.last_error}") from exc
            self.last_error = None
            return self._index

    @property
    def collection(self) -> str | None:
        index = self._index
        if index is None:
            return None
        try:
            return index.collection
        except Exception:
            return None

    def search(self, vector: np.ndarray, n: int, flt: SearchFilter) -> Candidates:
        from serving.index.milvus import MAX_TOPK

        n = min(n, MAX_TOPK)
        for attempt in (0, 1):
            index = self._index
            try:
                if index is None:
                    index = self.open()
                result = index.search(vector[None, :], n, flt)[0]
                return Candidates(result.post_ids, result.scores, "milvus")
            except RetrievalUnavailable:
                raise
            except Exception as exc:  # connection lost mid-flight: reconnect once, then give up
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._index = None
                if attempt == 1:
                    raise RetrievalUnavailable(f"Milvus search failed: {self.last_error}") from exc
        raise AssertionError("unreachable")

    def check(self) -> None:
        index = self._index or self.open()
        len(index)


class ReplicaRetriever:
    """The in-process FAISS HNSW replica of the same post vectors (serving/index/replica.py), kept current by
    tailing the nearline embedding log: the embedded path for catalogues where Milvus Lite's per-row Python
    search is too slow (docs/index.md: ≈ 80 ms p50 at 100k posts vs ≈ 2 ms). Milvus stays the system of record
    and the scale-out index; ``FEED_SERVE_RETRIEVER=replica`` selects this one."""

    def __init__(self, paths: FeedPaths, *, model_version: str, refresh_s: float = 5.0) -> None:
        from serving.index.replica import HnswReplica

        self.model_version = model_version
        self.replica = HnswReplica.from_delta(paths, model_version, follow=True)
        self.paths = paths
        self.refresh_s = refresh_s
        self._last_refresh = time.monotonic()
        self._lock = threading.Lock()

    @property
    def collection(self) -> str:
        return f"replica:{self.model_version}"

    def search(self, vector: np.ndarray, n: int, flt: SearchFilter) -> Candidates:
        now = time.monotonic()
        if now - self._last_refresh > self.refresh_s and self._lock.acquire(blocking=False):
            try:
                self._last_refresh = now
                self.replica.refresh()
            except Exception as exc:  # a bad log read must not fail the request: the replica stays as it was
                log.warning("replica refresh failed: %s", exc)
            finally:
                self._lock.release()
        result = self.replica.search(vector[None, :], n, flt)[0]
        return Candidates(result.post_ids, result.scores, "replica")

    def check(self) -> None:
        len(self.replica)


class ColdStartEncoder:
    """The promoted retrieval encoder, for members whose embedding the store does not have."""

    def __init__(self, paths: FeedPaths, *, device: str = "cpu", cache_size: int = 10_000) -> None:
        import torch

        from training.retrieval.export import load_model, model_dir, prompt_config

        folder = model_dir(paths, None)
        self.version = folder.name
        self.model = load_model(folder, device)
        self.prompt = prompt_config(folder, self.model.config)
        self.dim = int(self.model.dim)
        self._cache: OrderedDict[int, tuple[np.ndarray, str]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._torch = torch

    def prompt_text(self, member: MemberOnline) -> str:
        from training.prompts import MemberFeatures, render_member

        profile = MemberFeatures(
            member_id=member.member_id,
            headline=member.headline,
            current_role=member.current_role,
            industry=member.industry,
            skills=list(member.skills),
            education=list(member.education),
            work_history=list(member.work_history),
        )
        return render_member(profile, [], self.model.tokenizer, self.prompt)

    def forget(self, member_ids: set[int]) -> None:
        with self._lock:
            for m in member_ids:
                self._cache.pop(m, None)

    def encode(self, member: MemberOnline) -> tuple[np.ndarray, str]:
        """(unit vector, prompt) for the member's profile; cached per member and profile text."""
        text = self.prompt_text(member)
        with self._lock:
            hit = self._cache.get(member.member_id)
            if hit is not None and hit[1] == text:
                self._cache.move_to_end(member.member_id)
                return hit
        with self._torch.inference_mode():
            vec = self.model.embed([text], "member")[0].float().cpu().numpy()
        out = (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32), text
        with self._lock:
            self._cache[member.member_id] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out


class PopularPosts:
    """Recent popular posts (the fallback candidates), from ``post_engagement`` and ``post_content``."""

    def __init__(self, paths: FeedPaths, *, as_of: float, window_days: int, size: int) -> None:
        self.paths, self.window_days, self.size = paths, window_days, size
        self.as_of = as_of
        self._set(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        self.loaded_at = 0.0
        self.error: str | None = None
        self.refresh()

    def refresh(self) -> None:
        import pyarrow.compute as pc

        from pipelines import delta_io

        try:
            t0 = time.perf_counter()
            eng = delta_io.read(self.paths.table("post_engagement"))
            content = delta_io.read(self.paths.table("post_content"))
            eng = eng.select(
                ["post_id", "event_timestamp", "views_7d", "likes_7d", "comments_7d", "shares_7d"]
            )
            ts = pc.cast(eng["event_timestamp"], "int64").to_numpy() / 1e6  # µs → s
            keep = ts <= self.as_of
            post_ids = eng["post_id"].to_numpy()[keep]
            ts = ts[keep]
            score = (
                eng["views_7d"].to_numpy()[keep]
                + 5 * eng["likes_7d"].to_numpy()[keep]
                + 10 * eng["comments_7d"].to_numpy()[keep]
                + 10 * eng["shares_7d"].to_numpy()[keep]
            ).astype(np.float64)
            order = np.lexsort((ts, post_ids))  # newest row of each post last
            post_ids, ts, score = post_ids[order], ts[order], score[order]
            last = np.append(post_ids[1:] != post_ids[:-1], True)
            post_ids, score = post_ids[last], score[last]
            c_ids = content["post_id"].to_numpy()
            created = pc.cast(content["created_at"], "int64").to_numpy() / 1e6
            authors = content["author_id"].to_numpy()
            c_order = np.argsort(c_ids, kind="stable")
            pos = np.searchsorted(c_ids[c_order], post_ids)
            pos = np.clip(pos, 0, max(len(c_ids) - 1, 0))
            known = c_ids[c_order][pos] == post_ids if len(c_ids) else np.zeros(len(post_ids), bool)
            recent = known & (created[c_order][pos] >= self.as_of - self.window_days * 86400)
            post_ids, score = post_ids[recent], score[recent]
            author = authors[c_order][pos][recent]
            top = np.argsort(-score, kind="stable")[: self.size]
            self._set(
                post_ids[top].astype(np.int64), author[top].astype(np.int64), score[top].astype(np.float32)
            )
            self.loaded_at = time.time()
            self.error = None
            log.info(
                "popular fallback: %d posts in %.0f ms", len(self.post_ids), 1e3 * (time.perf_counter() - t0)
            )
        except Exception as exc:  # the fallback must never take the service down
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("popular fallback unavailable: %s", self.error)

    def authors_of(self, post_ids: np.ndarray) -> np.ndarray:
        """The author of each of ``post_ids`` (0 for a post not in the list)."""
        pos = np.clip(np.searchsorted(self._sorted_ids, post_ids), 0, max(len(self._sorted_ids) - 1, 0))
        if not len(self._sorted_ids):
            return np.zeros(len(post_ids), np.int64)
        hit = self._sorted_ids[pos] == post_ids
        return np.where(hit, self._sorted_authors[pos], 0).astype(np.int64)

    def forget(self, post_ids: set[int], author_ids: set[int]) -> None:
        """Drop erased posts and the posts of erased members (the next refresh reads the erased tables)."""
        keep = ~np.isin(self.post_ids, list(post_ids)) & ~np.isin(self.author_ids, list(author_ids))
        self._set(self.post_ids[keep], self.author_ids[keep], self.scores[keep])

    def _set(self, post_ids: np.ndarray, author_ids: np.ndarray, scores: np.ndarray) -> None:
        order = np.argsort(post_ids, kind="stable")
        self._sorted_ids, self._sorted_authors = post_ids[order], author_ids[order]
        self.post_ids, self.author_ids, self.scores = post_ids, author_ids, scores

    def candidates(self, n: int, flt: SearchFilter) -> Candidates:
        keep = np.ones(len(self.post_ids), bool)
        if flt.exclude_post_ids:
            keep &= ~np.isin(self.post_ids, np.fromiter(flt.exclude_post_ids, np.int64))
        if flt.exclude_author_id is not None:
            keep &= self.author_ids != flt.exclude_author_id
        return Candidates(self.post_ids[keep][:n], self.scores[keep][:n], "popular")
