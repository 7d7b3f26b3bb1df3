"""The request path of ``POST /v1/feed``, as a class the HTTP app, the audit and the tests all call.

Stages (each timed into ``feed_stage_seconds{stage}`` and the response's ``timings_ms``; each with a budget in
``ServingSettings.timeouts_ms`` and a fallback):

1. ``member_features`` — Feast online read of the member (profile, engaged history, interaction sequence,
   affinities, embedding). Store down or over budget → ``feature_store_unavailable``: no profile, no history;
   rows older than their view's TTL → ``member_features_stale`` (dropped, as the offline join would).
2. ``cold_start`` — no usable embedding (none stored, stale, or from another encoder than the index's) →
   the profile prompt is rendered and encoded now with the promoted encoder (``cold_start``). A member the
   store does not know at all → ``member_unknown``: popular candidates.
3. ``retrieval`` — Milvus top-N (``top_n``, default 500) excluding the member's seen and engaged posts, the
   posts the client sent in ``exclude_post_ids`` and the member's own posts. Milvus down/slow →
   ``retrieval_unavailable``: recent popular posts (same filter).
4. ``post_features`` — Feast online post features of the candidates and the history posts (TTL cache).
   Failure → ``post_features_unavailable``: served in retrieval order.
5. ``ranking`` — the GR scores all candidates in one shared-context pass. The model stage is a separate
   thread with its own micro-batching (``score_batch_max`` members per forward, waiting at most
   ``score_batch_wait_ms``): the CPU feature stage of many requests runs in parallel while one model forward
   serves several of them — the split that becomes two services at scale (docs/serving.md). No promoted
   ranker, or it failed/over budget → ``ranker_unavailable``: retrieval order.
6. ``assemble`` — blended score from the task heads (``blend`` weights), creator-diversity guard (at most
   ``max_per_author`` posts per author), "why" per item, impressions logged (asynchronously).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from serving.index.base import SearchFilter
from serving.metrics import ServiceMetrics
from serving.schemas import FeedItem, FeedRequest, FeedResponse, HistoryItem, MemberView, TaskProbabilities
from serving.settings import ServingSettings
from serving.types import MemberOnline, PostTable, ScoreRequest, ScoreResult

log = logging.getLogger(__name__)
T = TypeVar("T")


class StageTimeout(TimeoutError):
    pass


@dataclass
class _Trace:
    """What one request did: per-stage times (ms), fallbacks taken, errors caught."""

    timings_ms: dict[str, float] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def fallback(self, kind: str) -> None:
        if kind not in self.fallbacks:
            self.fallbacks.append(kind)


class ScoringStage:
    """The model stage: one thread that batches ScoreRequests of concurrent feeds into one GR forward."""

    def __init__(self, ranker: Any, *, max_batch: int, wait_ms: float, metrics: ServiceMetrics) -> None:
        self.ranker = ranker
        self.max_batch, self.wait_s = max_batch, wait_ms / 1000.0
        self.metrics = metrics
        self._queue: queue.Queue[tuple[ScoreRequest, cf.Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gr-scoring", daemon=True)
        self._thread.start()

    def submit(self, request: ScoreRequest) -> cf.Future:
        fut: cf.Future = cf.Future()
        self._queue.put((request, fut))
        return fut

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    nxt = (
                        self._queue.get(timeout=max(timeout, 0)) if timeout > 0 else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            if not live:
                continue
            self.metrics.score_batch.observe(len(live))
            try:
                results = self.ranker.score([r for r, _ in live])
                for (_, fut), res in zip(live, results, strict=True):
                    fut.set_result(res)
            except BaseException as exc:  # handed to every waiting request
                for _, fut in live:
                    fut.set_exception(exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


class ErasureWatch:
    """Erasures done while the service runs (``feed erase`` writes a receipt to ``data/erasure/``): the
    erased posts and members are dropped from the caches loaded before (post features, popular list,
    cold-start vectors) without a restart; Milvus and Feast no longer hold them, so a re-read finds nothing
    and the post is not served."""

    def __init__(self, folder: Path, poll_s: float, on_erased: Callable[[set[int], set[int]], None]) -> None:
        self.folder, self.poll_s, self.on_erased = folder, poll_s, on_erased
        self.posts: set[int] = set()
        self.members: set[int] = set()
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self.scan()
        self._thread = threading.Thread(target=self._run, name="erasure-watch", daemon=True)
        self._thread.start()

    def scan(self) -> None:
        if not self.folder.is_dir():
            return
        posts: set[int] = set()
        members: set[int] = set()
        for f in sorted(self.folder.glob("*.json")):
            if f.name in self._seen:
                continue
            try:
                receipt = json.loads(f.read_text())
                kind, entity = receipt["kind"], int(receipt["id"])
                cascade = [int(p) for p in (receipt.get("cascade") or {}).get("post_ids", [])]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable erasure receipt %s: %s", f, exc)
                continue
            if receipt.get("status") == "running":
                continue  # read again when it is finished
            self._seen.add(f.name)
            if kind == "post":
                posts.add(entity)
            elif kind == "member":
                members.add(entity)
            posts.update(cascade)
        if posts or members:
            self.posts |= posts
            self.members |= members
            self.on_erased(posts, members)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.scan()

    def close(self) -> None:
        self._stop.set()


class FeedService:
    """Everything a request needs, loaded once. ``with FeedService.open(settings) as svc: svc.feed(req)``."""

    def __init__(self, settings: ServingSettings, metrics: ServiceMetrics | None = None) -> None:
        self.settings = settings
        self.paths = settings.paths()
        self.metrics = metrics or ServiceMetrics()
        self.load_errors: dict[str, str] = {}
        self._pool = cf.ThreadPoolExecutor(settings.feature_workers, thread_name_prefix="feed-stage")
        self._retry_lock = threading.Lock()
        self._last_retry: dict[str, float] = {}
        self.features = self._try("feature_store", self._open_features)
        self.encoder = self._try("retrieval_model", self._open_encoder)
        self.request_ts = self._request_clock()
        if self.features is not None and self.encoder is not None:
            self._try("post_vectors", self._open_vectors)
        self.retriever = self._try("retrieval", self._open_retriever)
        self.ranker = self._try("ranker", self._open_ranker)
        self.scoring = (
            ScoringStage(
                self.ranker,
                max_batch=settings.score_batch_max,
                wait_ms=settings.score_batch_wait_ms,
                metrics=self.metrics,
            )
            if self.ranker is not None
            else None
        )
        from serving.retrieve import PopularPosts

        self.popular = PopularPosts(
            self.paths,
            as_of=self.request_ts,
            window_days=settings.popular_window_days,
            size=settings.popular_fallback_size,
        )
        self.impressions = None
        if settings.log_impressions:
            from serving.impressions import ImpressionLogger

            self.impressions = ImpressionLogger(
                self.paths,
                flush_s=settings.impression_flush_s,
                flush_rows=settings.impression_flush_rows,
                on_logged=self.metrics.impressions_logged.inc,
                on_dropped=self.metrics.impressions_dropped.inc,
            )
        for model, version in self.model_versions.items():
            if version:
                self.metrics.model_info.labels(model=model, version=version).set(1)
        self.erasures = ErasureWatch(self.paths.data / "erasure", settings.erasure_poll_s, self._forget)

    def _forget(self, posts: set[int], members: set[int]) -> None:
        """Drop erased posts and members from the caches (the watch filters them from feeds too)."""
        if self.features is not None:
            self.features.forget_posts(posts)
        if self.encoder is not None:
            self.encoder.forget(members)
        self.popular.forget(posts, members)
        log.info("erasures applied: %d posts, %d members", len(posts), len(members))

    # --- loading

    def _try(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            value = fn()
            self.load_errors.pop(what, None)
            return value
        except Exception as exc:
            self.load_errors[what] = f"{type(exc).__name__}: {exc}"
            log.warning("%s unavailable at start-up: %s", what, self.load_errors[what])
            return None

    def _open_features(self) -> Any:
        import torch

        from serving.features import OnlineFeatures

        torch.set_num_threads(self.settings.torch_threads)
        return OnlineFeatures(
            self.paths,
            variant=self.settings.feast_variant,
            redis_connection=self.settings.redis_connection,
            post_cache_ttl_s=self.settings.post_cache_ttl_s,
            post_cache_size=self.settings.post_cache_size,
        )

    def _open_vectors(self) -> None:
        """The promoted encoder's post vectors for the ranker, then the post-feature cache warmed with the
        newest posts and one member read (the first Feast reads of a process pay for its lazy set-up)."""
        from serving.features import PostVectors

        vectors = PostVectors(self.paths, self.encoder.version)
        self.features.use_vectors(vectors)
        n = self.settings.prewarm_posts
        if n:
            t0 = time.perf_counter()
            self.features.prewarm(vectors.ids[-n:])
            log.info(
                "post features of %d posts cached in %.1f s", min(n, len(vectors)), time.perf_counter() - t0
            )
        self.features.member(1, self.request_ts)

    def _open_encoder(self) -> Any:
        from serving.retrieve import ColdStartEncoder

        return ColdStartEncoder(
            self.paths, device=self.settings.device, cache_size=self.settings.cold_start_cache_size
        )

    @property
    def retriever_kind(self) -> str:
        kind = self.settings.retriever
        if kind == "auto":
            kind = "milvus" if self.settings.milvus_uri else "replica"
        return kind

    def _open_retriever(self) -> Any:
        from serving.retrieve import ReplicaRetriever, Retriever

        if self.encoder is None:
            raise RuntimeError("no promoted retrieval model: the index cannot be queried")
        if self.retriever_kind == "replica":
            return ReplicaRetriever(self.paths, model_version=self.encoder.version)
        return Retriever(
            self.paths,
            uri=self.settings.milvus_uri,
            token=self.settings.milvus_token,
            start_server=self.settings.start_milvus,
            model_version=self.encoder.version,
        )

    def _open_ranker(self) -> Any:
        from serving.rank import Ranker

        return Ranker.load(
            self.paths,
            device=self.settings.device,
            kernel=self.settings.kernel,
            threads=self.settings.torch_threads,
        )

    def _request_clock(self) -> float:
        """Epoch seconds every request is served at: ``as_of``; else with ``clock=data`` the end of the
        newest materialized snapshot (the store unreadable: the newest feature row in the lake); else now."""
        s = self.settings
        if s.as_of is not None:
            return s.as_of.timestamp()
        if s.clock == "data":
            if self.features is not None and self.features.materialized_until is not None:
                return self.features.materialized_until.timestamp()
            newest = self._newest_feature_row()
            if newest is not None:
                return newest
        return time.time()

    def _newest_feature_row(self) -> float | None:
        import pyarrow.compute as pc

        from pipelines import delta_io

        try:
            stamps = delta_io.read(self.paths.table("post_engagement"), columns=["event_timestamp"]).column(0)
            newest = pc.max(stamps).as_py()
        except Exception as exc:
            log.warning("no data clock from the lake: %s", exc)
            return None
        return None if newest is None else newest.timestamp()

    def _reopen(self, what: str, every_s: float = 2.0) -> None:
        """Retry a dependency that failed at start-up (at most every ``every_s``): no restart needed."""
        now = time.monotonic()
        with self._retry_lock:
            if now - self._last_retry.get(what, 0.0) < every_s:
                return
            self._last_retry[what] = now
        if what == "feature_store" and self.features is None:
            self.features = self._try(what, self._open_features)
        elif what == "retrieval" and self.retriever is None and self.encoder is not None:
            self.retriever = self._try(what, self._open_retriever)

    @property
    def model_versions(self) -> dict[str, str | None]:
        return {
            "retrieval": self.encoder.version if self.encoder is not None else None,
            "ranking": self.ranker.version if self.ranker is not None else None,
        }

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: ServingSettings, metrics: ServiceMetrics | None = None) -> Iterator[FeedService]:
        svc = cls(settings, metrics)
        try:
            yield svc
        finally:
            svc.close()

    def close(self) -> None:
        self.erasures.close()
        if self.scoring is not None:
            self.scoring.close()
        if self.impressions is not None:
            self.impressions.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- stage plumbing

    def _stage(self, trace: _Trace, name: str, budget_ms: float, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the stage pool with a time budget; record its time. Raises what ``fn`` raised, or
        StageTimeout (the work finishes in the background; its result is dropped)."""
        t0 = time.perf_counter()
        fut = self._pool.submit(fn)
        try:
            return fut.result(timeout=budget_ms / 1000.0)
        except cf.TimeoutError as exc:
            # Still queued (every worker busy, e.g. on a hung store)? Drop it: run late, it would only delay
            # the requests queued behind it once the store is back.
            fut.cancel()
            raise StageTimeout(f"{name} over its {budget_ms:.0f} ms budget") from exc
        finally:
            self._time(trace, name, t0)

    def _time(self, trace: _Trace, name: str, t0: float) -> None:
        seconds = time.perf_counter() - t0
        trace.timings_ms[name] = round(trace.timings_ms.get(name, 0.0) + 1000.0 * seconds, 3)
        self.metrics.stage_seconds.labels(stage=name).observe(seconds)

    def _error(self, trace: _Trace, stage: str, exc: BaseException) -> None:
        trace.errors[stage] = f"{type(exc).__name__}: {exc}"
        self.metrics.errors.labels(stage=stage).inc()
        log.warning("stage %s failed: %s", stage, trace.errors[stage])

    # --- the request

    def feed(self, request: FeedRequest) -> FeedResponse:
        t_start = time.perf_counter()
        trace = _Trace()
        request_id = uuid.uuid4().hex
        k = min(request.k, self.settings.max_k)

        member = self._member(request.member_id, trace)
        vector, cold = self._query_vector(member, trace)

        flt = SearchFilter(
            exclude_post_ids=frozenset(self._seen(member)) | frozenset(request.exclude_post_ids),
            exclude_author_id=request.member_id,
        )
        cands = self._retrieve(vector, flt, trace)

        posts, hist_posts = self._post_features(cands.post_ids, self._history_ids(member), trace)
        retrieval_scores = cands.scores.astype(np.float64)
        post_ids = cands.post_ids
        authors = (
            self.popular.authors_of(post_ids)
            if cands.source == "popular"
            else np.zeros(len(post_ids), np.int64)
        )
        if posts is not None:
            # a post the store no longer knows (erased, expired) is not served
            keep = np.flatnonzero(posts.found)
            posts, post_ids, retrieval_scores = posts.take(keep), post_ids[keep], retrieval_scores[keep]
            authors = posts.author_id

        result: ScoreResult | None = None
        if posts is not None and hist_posts is not None and len(post_ids):
            result = self._rank(member, posts, hist_posts, request.device_type, trace)
        t_asm = time.perf_counter()
        if result is not None:
            from serving.rank import blend

            scores = blend(result.probs, self.settings.blend)
        else:
            scores = retrieval_scores
        from serving.rank import diversify

        order = diversify(scores, authors, k, self.settings.max_per_author)
        if len(order) < k:
            trace.fallback("short_feed")
        items = self._items(
            order,
            post_ids,
            authors,
            scores,
            retrieval_scores,
            posts,
            result,
            member,
            cands.source == "popular",
        )
        self._time(trace, "assemble", t_asm)
        total_ms = 1000.0 * (time.perf_counter() - t_start)
        trace.timings_ms["total"] = round(total_ms, 3)
        self.metrics.stage_seconds.labels(stage="total").observe(total_ms / 1000.0)
        self.metrics.candidates.observe(len(cands.post_ids))
        for kind in trace.fallbacks:
            self.metrics.fallbacks.labels(kind=kind).inc()
        self.metrics.requests.labels(outcome="served").inc()
        versions = self.model_versions
        if self.impressions is not None and items:
            from serving.impressions import ServedFeed

            self.impressions.log(
                ServedFeed(
                    request_id=request_id,
                    member_id=request.member_id,
                    request_ts=self.request_ts,
                    device_type=request.device_type,
                    k=k,
                    post_ids=[it.post_id for it in items],
                    candidates=len(cands.post_ids),
                    retrieval_version=versions["retrieval"],
                    ranking_version=versions["ranking"],
                    collection=self.retriever.collection if self.retriever is not None else None,
                    fallbacks=list(trace.fallbacks),
                    cold_start=cold,
                    total_ms=total_ms,
                )
            )
        return FeedResponse(
            request_id=request_id,
            member_id=request.member_id,
            items=items,
            fallbacks=list(trace.fallbacks),
            cold_start=cold,
            model_versions=versions,
            candidates=len(cands.post_ids),
            timings_ms=trace.timings_ms,
        )

    def _post_features(
        self, cand_ids: np.ndarray, history_ids: np.ndarray, trace: _Trace
    ) -> tuple[PostTable | None, PostTable | None]:
        """Candidate and history post rows, read in one call; (None, None) when the store cannot answer."""
        if not len(cand_ids):
            return None, None
        if self.features is None:
            trace.fallback("post_features_unavailable")
            return None, None
        ids = np.concatenate([cand_ids, history_ids])
        try:
            table = self._stage(
                trace,
                "post_features",
                self.settings.timeouts_ms.post_features,
                lambda: self.features.posts(ids, request_ts=self.request_ts),
            )
        except Exception as exc:
            self._error(trace, "post_features", exc)
            trace.fallback("post_features_unavailable")
            return None, None
        n = len(cand_ids)
        return table.take(np.arange(n)), table.take(np.arange(n, len(ids)))

    def _member(self, member_id: int, trace: _Trace) -> MemberOnline:
        if self.features is None:
            self._reopen("feature_store")
        if self.features is None:
            trace.fallback("feature_store_unavailable")
            return MemberOnline(member_id=member_id, found=False)
        try:
            member, stale = self._stage(
                trace,
                "member_features",
                self.settings.timeouts_ms.member_features,
                lambda: self.features.member(member_id, self.request_ts),
            )
        except Exception as exc:
            self._error(trace, "member_features", exc)
            trace.fallback("feature_store_unavailable")
            return MemberOnline(member_id=member_id, found=False)
        if stale:
            trace.fallback("member_features_stale")
        if not member.found and not stale:
            trace.fallback("member_unknown")
        return member

    def _query_vector(self, member: MemberOnline, trace: _Trace) -> tuple[np.ndarray | None, bool]:
        """The member's vector for retrieval, and whether it was encoded now (cold start)."""
        if self.encoder is None:
            return None, False
        if member.embedding is not None and member.embedding_version == self.encoder.version:
            return member.embedding, False
        has_profile = bool(member.headline or member.current_role or member.industry or member.skills)
        if not has_profile and not member.work_history and not member.education:
            if member.found:  # rows, but neither an embedding nor a profile to encode
                trace.fallback("no_member_vector")
            return None, False  # nothing to encode: popular candidates
        try:
            vec, _ = self._stage(
                trace, "cold_start", self.settings.timeouts_ms.cold_start, lambda: self.encoder.encode(member)
            )
        except Exception as exc:
            self._error(trace, "cold_start", exc)
            return None, False
        trace.fallback("cold_start")
        return vec, True

    def _seen(self, member: MemberOnline) -> np.ndarray:
        seen = [member.engaged_post_ids]
        if member.sequence_post_ids is not None:
            seen.append(member.sequence_post_ids)
        return np.unique(np.concatenate(seen))

    def _history_ids(self, member: MemberOnline) -> np.ndarray:
        ids = member.sequence_post_ids if member.sequence_post_ids is not None else member.engaged_post_ids
        cap = self.ranker.config.max_history if self.ranker is not None else 1024
        return np.asarray(ids[-cap:] if cap else ids[:0], np.int64)

    def _retrieve(self, vector: np.ndarray | None, flt: SearchFilter, trace: _Trace) -> Any:
        n = self.settings.top_n
        if vector is not None:
            if self.retriever is None:
                self._reopen("retrieval")
            if self.retriever is not None:
                try:
                    return self._stage(
                        trace,
                        "retrieval",
                        self.settings.timeouts_ms.retrieval,
                        lambda: self.retriever.search(vector, n, flt),
                    )
                except Exception as exc:
                    self._error(trace, "retrieval", exc)
            trace.fallback("retrieval_unavailable")
        t0 = time.perf_counter()
        cands = self.popular.candidates(n, flt)
        self._time(trace, "retrieval", t0)
        return cands

    def _rank(
        self, member: MemberOnline, posts: PostTable, hist: PostTable, device_type: str, trace: _Trace
    ) -> ScoreResult | None:
        if self.scoring is None:
            trace.fallback("ranker_unavailable")
            return None
        req = ScoreRequest(
            member=member,
            candidates=posts,
            history_posts=hist,
            device_type=device_type,
            request_ts=self.request_ts,
        )
        t0 = time.perf_counter()
        fut = self.scoring.submit(req)
        try:
            return fut.result(timeout=self.settings.timeouts_ms.ranking / 1000.0)
        except Exception as exc:
            fut.cancel()
            self._error(
                trace, "ranking", exc if not isinstance(exc, cf.TimeoutError) else StageTimeout("ranking")
            )
            trace.fallback("ranker_unavailable")
            return None
        finally:
            self._time(trace, "ranking", t0)

    def _items(
        self,
        order: np.ndarray,
        post_ids: np.ndarray,
        authors: np.ndarray,
        scores: np.ndarray,
        retrieval_scores: np.ndarray,
        posts: PostTable | None,
        result: ScoreResult | None,
        member: MemberOnline,
        popular: bool,
    ) -> list[FeedItem]:
        from serving.explain import why_text

        items: list[FeedItem] = []
        # A history post is named only when the candidate attended to it clearly more than to an average
        # item (1.5 × the uniform share over the history and the candidate's own key): a flat attention
        # (an untrained or uncertain model) explains nothing.
        floor = 1.0
        if result is not None and self.ranker is not None:
            floor = 1.5 / (result.history_used / self.ranker.per_item + 1)
        for position, i in enumerate(order.tolist(), start=1):
            probs = result.probs[i] if result is not None else None
            topic = str(posts.topic[i]) if posts is not None and posts.topic[i] else None
            attended = result is not None and float(result.why_weight[i]) >= floor
            why = why_text(
                member,
                topic=topic,
                author_id=int(authors[i]),
                history_post_id=int(result.why_post_id[i]) if attended else -1,
                attention=float(result.why_weight[i]) if attended else None,
            )
            if why.history_post_id is None and not why.topic and not why.followed_author:
                text = (
                    "popular in the last days"
                    if popular
                    else f"close to your {'profile' if member.embedding is None else 'interests'} "
                    f"(similarity {retrieval_scores[i]:.2f})"
                )
                why = why.model_copy(update={"text": text})
            items.append(
                FeedItem(
                    position=position,
                    post_id=int(post_ids[i]),
                    author_id=int(authors[i]),
                    score=float(scores[i]),
                    retrieval_score=float(retrieval_scores[i]),
                    tasks=TaskProbabilities(
                        **dict(zip(TaskProbabilities.model_fields, map(float, probs), strict=True))
                    )
                    if probs is not None
                    else None,
                    topic=topic,
                    format=str(posts.format[i]) if posts is not None and posts.format[i] else None,
                    text=str(posts.text[i])[:280] if posts is not None and posts.text[i] else None,
                    why=why,
                )
            )
        return items

    # --- inspection

    def member_view(self, member_id: int, history_items: int = 50) -> MemberView:
        if self.features is None:
            self._reopen("feature_store")
        if self.features is None:
            raise RuntimeError("the feature store is unavailable")
        member, _ = self.features.member(member_id, self.request_ts)
        ids = member.engaged_post_ids[-history_items:][::-1]  # newest first
        table = self.features.posts(ids) if len(ids) else None
        history = [
            HistoryItem(
                post_id=int(p),
                author_id=int(table.author_id[j]) if table is not None and table.found[j] else None,
                topic=str(table.topic[j]) or None if table is not None else None,
                text=str(table.text[j])[:200] or None if table is not None else None,
            )
            for j, p in enumerate(ids.tolist())
        ]
        return MemberView(
            member_id=member_id,
            found=member.found,
            headline=member.headline,
            current_role=member.current_role,
            industry=member.industry,
            skills=member.skills,
            has_embedding=member.embedding is not None,
            embedding_version=member.embedding_version,
            history_length=max(member.history_length, len(member.engaged_post_ids)),
            history=history,
            top_topics=member.top_topics,
        )

    def member_ids(self, limit: int) -> list[int]:
        """Members with a profile row (a sample for the inspection page), lowest ids first."""
        from pipelines import delta_io

        table = delta_io.read(self.paths.table("raw_members"), columns=["member_id"])
        return sorted(int(m) for m in table["member_id"].to_numpy())[:limit]

    def ready(self) -> dict[str, str]:
        """Per dependency: "ok" or the reason it is not; the service answers (degraded) either way."""
        checks: dict[str, str] = {}
        for name, obj in (("feature_store", self.features), ("retrieval", self.retriever)):
            if obj is None:
                self._reopen(name)
                checks[name] = self.load_errors.get(name, "not loaded")
                continue
            try:
                obj.check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"{type(exc).__name__}: {exc}"
        checks["retrieval_model"] = (
            "ok" if self.encoder is not None else self.load_errors.get("retrieval_model", "")
        )
        checks["ranker"] = "ok" if self.ranker is not None else self.load_errors.get("ranker", "")
        return checks
