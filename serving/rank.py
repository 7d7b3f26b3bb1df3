"""The ranking stage of the feed service: the promoted GR scores every candidate of a request in one
shared-context pass, the task probabilities are blended into one score, and a creator diversity guard picks
the final order.

Online/offline parity — the model must see what it was trained on (``pipelines/ranking_set.py``,
``training/data/ranking_data.py``, ``RankerInputs.from_batch``):

* **Context** per candidate, :data:`~training.ranking.features.CONTEXT_FEATURES` by the rules of
  ``pipelines.ranking_set.target_context`` (:func:`candidate_context`; a test compares the two on the same
  rows): author/topic affinity = the score when the author/topic is in the member's top list, 0 when it is
  not, NaN when the member has no affinity row; percentiles / 100; log1p(hours since created_at) clipped at 0,
  NaN when created_at is unknown. The lookup time is the request time (training: the impression time).
* **Profile**: ``hash_strings`` over PROFILE_FEATURES; **device**: ``device_codes``.
* **Member embedding** only when the model has one (``member_emb_dim > 0``) and the member's embedding comes
  from the retrieval model the ranker's post vectors came from (:attr:`Ranker.retrieval_version`) — the
  set builder drops other versions the same way. When that version is not recorded, no embedding is used.
* **Post vectors**: ``PostTable.embedding`` where ``has_embedding``, else zeros; a history post missing from
  ``history_posts`` also gets author 0 — exactly the set's rows for a known post without a vector (zeros) and
  an unknown post (row 0: zeros, author 0). A width other than ``item_emb_dim`` raises
  :class:`PostVectorMismatch` (a :class:`RankerUnavailable`) instead of scoring garbage. A model trained
  without post vectors (``item_emb_dim == 0``) ignores them.
* **History**: the member_sequence view (every impression with its action code and time, oldest → newest),
  newest ``max_history`` kept, ages = request_ts − ts clipped at 0 (a NaN time → age 0). When the store has no
  sequence row, the engaged-post ids stand in, each with the action code of a plain click
  (:data:`FALLBACK_ACTION`) and age 0. That is a **known skew**: training sequences also hold the skipped and
  ignored impressions, their real action codes and ages (training never lacks a time, so there is no training
  rule to copy; age 0 is the "just now" bucket). It lasts only until the member_sequence view is
  materialised for the member.

"Why": the last block's attention of every candidate over its member's history (``serving/explain.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from serving.explain import BlockInputCapture, history_attention, why_text
from serving.types import MemberOnline, PostTable, ScoreRequest, ScoreResult
from training.ranking.features import (
    CONTEXT_FEATURES,
    DEVICES,
    N_ACTIONS,
    PROFILE_FEATURES,
    TASKS,
    device_codes,
    encode_actions,
    hash_strings,
)
from training.ranking.model import GenerativeRanker, GRConfig, RankerInputs, jagged_layout
from training.versions import current_version

if TYPE_CHECKING:
    from feed.config import FeedPaths

__all__ = [
    "FALLBACK_ACTION",
    "PostVectorMismatch",
    "Ranker",
    "RankerUnavailable",
    "blend",
    "candidate_context",
    "diversify",
    "member_history",
    "why_text",
]

log = logging.getLogger(__name__)

RANKING_DIR = "ranking"  # artifacts/ranking/<version>, CURRENT names the served one
# The action code given to engaged-history items when no sequence row exists: an engaged click.
FALLBACK_ACTION = int(encode_actions(np.array([[1, 0, 0, 0, 0, 0]]))[0])
PERCENTILES: tuple[tuple[str, str], ...] = (  # context feature → PostTable column (Feast's 1..100 bucket)
    ("view_percentile", "view_percentile"),
    ("like_percentile", "like_percentile"),
    ("comment_percentile", "comment_percentile"),
    ("share_percentile", "share_percentile"),
    ("follower_percentile", "follower_percentile"),
)


class RankerUnavailable(RuntimeError):
    """No promoted ranker, or its files cannot be used; the message says which and how to fix it."""


class PostVectorMismatch(RankerUnavailable):
    """The served post vectors do not have the width the ranker was trained on."""


# --- parity: the model's inputs from online features


def candidate_context(member: MemberOnline, posts: PostTable, request_ts: float) -> np.ndarray:
    """(N, C) float32 CONTEXT_FEATURES of ``posts`` for ``member`` at ``request_ts`` (NaN = missing), by the
    rules of ``pipelines.ranking_set.target_context``."""
    n = len(posts)
    columns: dict[str, np.ndarray] = {}
    topics = [("" if t is None else str(t)) for t in posts.topic]
    if member.has_affinity:
        columns["author_affinity"] = _lookup(member.top_author_ids, member.top_author_scores, posts.author_id)
        columns["topic_affinity"] = _lookup(member.top_topics, member.top_topic_scores, topics)
    else:
        columns["author_affinity"] = np.full(n, np.nan, np.float32)
        columns["topic_affinity"] = np.full(n, np.nan, np.float32)
    for name, column in PERCENTILES:
        columns[name] = (np.asarray(getattr(posts, column), dtype=np.float64) / 100.0).astype(np.float32)
    hours = (float(request_ts) - np.asarray(posts.created_at, dtype=np.float64)) / 3600.0
    columns["post_age_hours_log1p"] = np.log1p(np.clip(hours, 0.0, None)).astype(np.float32)
    return np.stack([columns[name] for name in CONTEXT_FEATURES], axis=1).reshape(n, len(CONTEXT_FEATURES))


def _lookup(keys: Any, scores: Any, wanted: Any) -> np.ndarray:
    """The score of each wanted key in the member's top list, 0 when absent (a repeated key: its last
    score, as the set's vectorised lookup leaves it)."""
    keys = np.asarray(keys).tolist()
    table = dict(zip(keys, np.asarray(scores, dtype=np.float64).tolist(), strict=True))
    values = np.asarray(wanted).tolist()
    return np.fromiter((table.get(v, 0.0) for v in values), dtype=np.float64, count=len(values)).astype(
        np.float32
    )


def member_history(
    member: MemberOnline, request_ts: float, max_history: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The member's newest ``max_history`` interactions, oldest → newest: (post ids int64, action codes
    int64, ages in seconds float32). From the member_sequence view when served, else the engaged-post ids
    with :data:`FALLBACK_ACTION` and age 0 (the skew in the module doc)."""
    if member.sequence_post_ids is not None:
        ids = np.asarray(member.sequence_post_ids, dtype=np.int64)
        n = len(ids)
        actions = (
            np.asarray(member.sequence_actions, dtype=np.int64)
            if member.sequence_actions is not None
            else np.full(n, FALLBACK_ACTION, np.int64)
        )
        ts = (
            np.asarray(member.sequence_ts, dtype=np.float64)
            if member.sequence_ts is not None
            else np.full(n, np.nan)
        )
        if len(actions) != n or len(ts) != n:
            raise ValueError(
                f"member {member.member_id}: member_sequence lists differ in length "
                f"(post_ids {n}, actions {len(actions)}, timestamps {len(ts)})"
            )
        if n and np.isfinite(ts).all() and (np.diff(ts) < 0).any():
            order = np.argsort(ts, kind="stable")  # the view is oldest → newest; make sure of it
            ids, actions, ts = ids[order], actions[order], ts[order]
        ages = np.nan_to_num(np.clip(float(request_ts) - ts, 0.0, None), nan=0.0)
    else:
        ids = np.asarray(member.engaged_post_ids, dtype=np.int64)
        actions = np.full(len(ids), FALLBACK_ACTION, np.int64)
        ages = np.zeros(len(ids))
    if actions.size and (actions.min() < 0 or actions.max() >= N_ACTIONS):
        raise ValueError(
            f"member {member.member_id}: action codes must lie in [0, {N_ACTIONS}), "
            f"got [{actions.min()}, {actions.max()}]"
        )
    keep = min(len(ids), max(max_history, 0))
    start = len(ids) - keep
    return ids[start:], actions[start:], ages[start:].astype(np.float32)


@dataclass
class _MemberRows:
    """One member's part of the jagged batch, as numpy."""

    hist_post_id: np.ndarray
    hist_item: np.ndarray
    hist_author_id: np.ndarray
    hist_action: np.ndarray
    hist_age_s: np.ndarray
    cand_post_id: np.ndarray
    cand_item: np.ndarray
    cand_author_id: np.ndarray
    cand_device: np.ndarray
    cand_context: np.ndarray
    profile: np.ndarray
    member_emb: np.ndarray
    member_emb_present: bool


def _vectors(posts: PostTable, rows: np.ndarray, hit: np.ndarray, dim: int) -> np.ndarray:
    """(len(rows), dim) float32: the posts' vectors where known and embedded, zeros elsewhere (the set's
    zero row for a post without a vector and for an unknown post)."""
    out = np.zeros((len(rows), dim), np.float32)
    if dim == 0 or not len(rows) or not len(posts):
        return out
    use = hit & np.asarray(posts.has_embedding, dtype=bool)[rows]
    out[use] = np.asarray(posts.embedding, dtype=np.float32)[rows[use]]
    return out


def _find(posts: PostTable, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``ids`` in ``posts`` (any order) and whether each was there."""
    if not len(posts) or not len(ids):
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    order = np.argsort(posts.post_id, kind="stable")
    sorted_ids = np.asarray(posts.post_id, dtype=np.int64)[order]
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return order[pos], sorted_ids[pos] == ids


# --- the ranker


@dataclass
class Ranker:
    """The promoted GR, ready to score requests (eval mode, on ``device``)."""

    version: str
    config: GRConfig
    model: GenerativeRanker
    device: torch.device
    retrieval_version: str | None  # the retrieval model whose post vectors it trained on, if recorded

    @classmethod
    def load(
        cls, paths: FeedPaths, *, device: str = "cpu", kernel: str = "auto", threads: int | None = None
    ) -> Ranker:
        """``artifacts/ranking/CURRENT`` → a Ranker. ``kernel`` overrides the attention kernel the model was
        saved with (auto: Triton on CUDA, PyTorch elsewhere); ``threads`` sets torch's CPU threads.
        Raises :class:`RankerUnavailable` when nothing usable is promoted."""
        from training.ranking.train import CONFIG_FILE, MODEL_FILE

        ranking_dir = paths.artifacts / RANKING_DIR
        version = current_version(ranking_dir)
        fix = "train and promote a ranker (`feed train eval-ranking --promote`, or the feed_ranking DAG)"
        if version is None:
            raise RankerUnavailable(
                f"no promoted ranker: {ranking_dir / 'CURRENT'} is missing or empty; {fix}"
            )
        folder = ranking_dir / version
        try:
            configs = json.loads((folder / CONFIG_FILE).read_text())
            config = GRConfig.from_dict(configs["model"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RankerUnavailable(
                f"ranker {version}: cannot read {folder / CONFIG_FILE} ({e}); "
                f"promote a complete version or roll back (`feed model rollback ranking`)"
            ) from e
        _check_vocabulary(version, configs, config)
        config = replace(config, kernel=kernel)  # GRConfig validates the choice (ValueError)
        torch_device = _device(device)
        if threads:
            torch.set_num_threads(threads)
        model = GenerativeRanker(config)
        try:
            state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as e:  # a missing, truncated or foreign file: all mean "not servable"
            raise RankerUnavailable(
                f"ranker {version}: cannot load the weights {folder / MODEL_FILE} ({type(e).__name__}: "
                f"{str(e)[:300]}); re-promote the version or roll back (`feed model rollback ranking`)"
            ) from e
        model.to(torch_device).eval()
        retrieval = _recorded_retrieval(paths, version, configs)
        _warn_retrieval(paths, version, retrieval, config)
        return cls(version, config, model, torch_device, retrieval)

    @property
    def per_item(self) -> int:
        return 2 if self.config.action_encoding == "interleave" else 1

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Task probabilities and the most attended history post of every candidate of every request: ONE
        jagged shared-context forward for all members (a member's scores do not depend on the others)."""
        parts = [self._member_rows(r) for r in requests]
        results: list[ScoreResult] = []
        live = [p for p in parts if len(p.cand_post_id)]
        if not live:
            return [self._empty_result(p) for p in parts]
        inputs = _batch(live, self.config).to(self.device)
        blocks = self.model.backbone.blocks
        with torch.inference_mode():
            if len(blocks):
                capture = BlockInputCapture(blocks[-1])
                with capture.active():
                    logits = self.model(inputs)
                assert capture.x is not None, "the last block did not run"
                layout = jagged_layout(inputs.hist_offsets, inputs.cand_offsets, self.per_item)
                att = history_attention(
                    blocks[-1], capture.x, layout, inputs.hist_offsets, inputs.cand_offsets, self.per_item
                )
                why_idx, why_w = att.index.cpu().numpy(), att.weight.cpu().numpy()
            else:
                logits = self.model(inputs)
                why_idx = np.full(len(inputs.cand_post_id), -1, np.int64)
                why_w = np.zeros(len(inputs.cand_post_id), np.float32)
            probs = torch.sigmoid(logits.float()).cpu().numpy()
        lo = 0
        for p in parts:
            n = len(p.cand_post_id)
            if not n:
                results.append(self._empty_result(p))
                continue
            idx = why_idx[lo : lo + n]
            known = idx >= 0
            post = np.full(n, -1, np.int64)
            post[known] = p.hist_post_id[idx[known]]
            results.append(
                ScoreResult(
                    probs=probs[lo : lo + n].astype(np.float32),
                    why_post_id=post,
                    why_weight=np.where(known, why_w[lo : lo + n], 0.0).astype(np.float32),
                    history_used=len(p.hist_post_id) * self.per_item,
                )
            )
            lo += n
        return results

    def _empty_result(self, part: _MemberRows) -> ScoreResult:
        return ScoreResult(
            probs=np.zeros((0, len(TASKS)), np.float32),
            why_post_id=np.zeros(0, np.int64),
            why_weight=np.zeros(0, np.float32),
            history_used=len(part.hist_post_id) * self.per_item,
        )

    def _member_rows(self, request: ScoreRequest) -> _MemberRows:
        cfg, member = self.config, request.member
        dim = cfg.item_emb_dim
        for name, table in (("candidate", request.candidates), ("history", request.history_posts)):
            width = table.embedding.shape[1] if table.embedding.ndim == 2 else -1
            if dim and len(table) and width != dim:
                raise PostVectorMismatch(
                    f"ranker {self.version} was trained on {dim}-d post vectors (retrieval "
                    f"{self.retrieval_version or 'unrecorded'}), but the {name} posts have {width}-d "
                    "vectors; serve the matching retrieval model's embeddings or promote a ranker trained "
                    "on these"
                )
        ids, actions, ages = member_history(member, request.request_ts, cfg.max_history)
        rows, hit = _find(request.history_posts, ids)
        hist_author = (
            np.where(hit, np.asarray(request.history_posts.author_id, dtype=np.int64)[rows], 0)
            if len(request.history_posts)
            else np.zeros(len(ids), np.int64)
        )
        cands = request.candidates
        n = len(cands)
        everything = np.ones(n, bool)
        emb, present = self._member_embedding(member)
        device = int(device_codes([request.device_type])[0])
        return _MemberRows(
            hist_post_id=ids,
            hist_item=_vectors(request.history_posts, rows, hit, dim),
            hist_author_id=hist_author.astype(np.int64),
            hist_action=actions,
            hist_age_s=ages,
            cand_post_id=np.asarray(cands.post_id, dtype=np.int64),
            cand_item=_vectors(cands, np.arange(n), everything, dim),
            cand_author_id=np.asarray(cands.author_id, dtype=np.int64),
            cand_device=np.full(n, device, np.int64),
            cand_context=candidate_context(member, cands, request.request_ts),
            profile=hash_strings([getattr(member, f) for f in PROFILE_FEATURES]),
            member_emb=emb,
            member_emb_present=present,
        )

    def _member_embedding(self, member: MemberOnline) -> tuple[np.ndarray, bool]:
        dim = self.config.member_emb_dim
        absent = np.zeros(dim, np.float32)
        if (
            dim == 0
            or member.embedding is None
            or self.retrieval_version is None
            or member.embedding_version != self.retrieval_version
        ):
            return absent, False
        emb = np.asarray(member.embedding, dtype=np.float32).reshape(-1)
        if emb.shape[0] != dim:
            log.warning(
                "member %d: %d-d embedding of %s, ranker %s expects %d-d; scored without it",
                member.member_id,
                emb.shape[0],
                member.embedding_version,
                self.version,
                dim,
            )
            return absent, False
        return emb, True


def _batch(parts: list[_MemberRows], cfg: GRConfig) -> RankerInputs:
    """The members' rows as one jagged :class:`RankerInputs` (CPU tensors)."""

    def cat(name: str, dtype: Any) -> torch.Tensor:
        arrays = [np.asarray(getattr(p, name), dtype=dtype) for p in parts]  # (rows,) or (rows, width)
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(arrays)))

    def offsets(name: str) -> torch.Tensor:
        lengths = [len(getattr(p, name)) for p in parts]
        return torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    return RankerInputs(
        hist_item=cat("hist_item", np.float32),
        hist_post_id=cat("hist_post_id", np.int64),
        hist_author_id=cat("hist_author_id", np.int64),
        hist_action=cat("hist_action", np.int64),
        hist_age_s=cat("hist_age_s", np.float32),
        hist_offsets=offsets("hist_post_id"),
        cand_item=cat("cand_item", np.float32),
        cand_post_id=cat("cand_post_id", np.int64),
        cand_author_id=cat("cand_author_id", np.int64),
        cand_device=cat("cand_device", np.int64),
        cand_context=cat("cand_context", np.float32),
        cand_offsets=offsets("cand_post_id"),
        profile=torch.from_numpy(np.stack([p.profile for p in parts]).astype(np.int64)),
        member_emb=torch.from_numpy(np.stack([p.member_emb for p in parts]).astype(np.float32)),  # (B, Em)
        member_emb_present=torch.tensor([p.member_emb_present for p in parts], dtype=torch.bool),
    )


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = torch.device(device)
    if out.type == "cuda" and not torch.cuda.is_available():
        raise RankerUnavailable(f"ranker device {device!r} asked for, but CUDA is not available here")
    return out


def _check_vocabulary(version: str, configs: Mapping[str, Any], config: GRConfig) -> None:
    """The model's input vocabulary must be this code's: same tasks, context features, devices, profile."""
    problems = []
    if configs.get("kind", "gr") != "gr":
        problems.append(f"its kind is {configs.get('kind')!r}, the service serves the GR only")
    if tuple(configs.get("tasks", TASKS)) != TASKS:
        problems.append(f"tasks {configs.get('tasks')} ≠ {list(TASKS)}")
    if config.context_dim != len(CONTEXT_FEATURES):
        problems.append(f"context_dim {config.context_dim} ≠ {len(CONTEXT_FEATURES)} context features")
    if config.n_devices != len(DEVICES):
        problems.append(f"n_devices {config.n_devices} ≠ {len(DEVICES)} device codes")
    if config.profile_fields != len(PROFILE_FEATURES):
        problems.append(f"profile_fields {config.profile_fields} ≠ {len(PROFILE_FEATURES)} profile features")
    if problems:
        raise RankerUnavailable(
            f"ranker {version} does not match this service's inputs: {'; '.join(problems)}; "
            "retrain it with this code or roll back (`feed model rollback ranking`)"
        )


def _recorded_retrieval(paths: FeedPaths, version: str, configs: Mapping[str, Any]) -> str | None:
    """The retrieval model the ranker's post vectors came from: ``retrieval_version`` in its config.json
    when recorded there, else the build report of the ranking set of the same name (the scheduled flow
    names the set after the version), else None."""
    if configs.get("retrieval_version"):
        return str(configs["retrieval_version"])
    from pipelines.ranking_set import REPORT_FILE, set_dir

    report = set_dir(paths, version) / REPORT_FILE
    try:
        value = json.loads(report.read_text()).get("posts", {}).get("promoted_retrieval_version")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def _warn_retrieval(paths: FeedPaths, version: str, retrieval: str | None, config: GRConfig) -> None:
    from pipelines.ranking_set import promoted_retrieval_version

    promoted = promoted_retrieval_version(paths)
    if retrieval is None:
        log.warning(
            "ranker %s: the retrieval model of its post vectors is not recorded%s",
            version,
            "; member embeddings will not be used" if config.member_emb_dim else "",
        )
    elif promoted is not None and promoted != retrieval:
        log.warning(
            "ranker %s was trained on post vectors of retrieval %s but %s is promoted: its vectors differ "
            "from what the ranker learned (retrain the ranker)",
            version,
            retrieval,
            promoted,
        )


# --- blending and the diversity guard


def blend(probs: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """(N, 6) task probabilities in TASKS order → (N,) float64 weighted sum; tasks not named weigh 0."""
    unknown = sorted(set(weights) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} in the blend weights; expected names from {list(TASKS)}")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(TASKS):
        raise ValueError(f"probs must have shape (N, {len(TASKS)}), got {probs.shape}")
    w = np.array([float(weights.get(t, 0.0)) for t in TASKS])
    if not np.isfinite(w).all():
        raise ValueError(f"blend weights must be finite, got {dict(weights)}")
    return probs @ w


def diversify(scores: np.ndarray, author_ids: np.ndarray, k: int, max_per_author: int) -> np.ndarray:
    """Indices of the final order: highest score first (ties: lower index first; NaN last), at most
    ``max_per_author`` posts per author. Author 0 (unknown) counts as its own author per post. Returns fewer
    than ``k`` when the cap leaves too few."""
    if max_per_author < 1:
        raise ValueError(f"max_per_author must be ≥ 1, got {max_per_author}")
    scores = np.asarray(scores, dtype=np.float64)
    authors = np.asarray(author_ids, dtype=np.int64)
    if scores.shape != authors.shape or scores.ndim != 1:
        raise ValueError(
            f"scores and author_ids must be 1-D of one length, got {scores.shape}, {authors.shape}"
        )
    order = np.argsort(-scores, kind="stable")  # NaN sorts last
    taken: list[int] = []
    per_author: dict[int, int] = {}
    for i, author in zip(order.tolist(), authors[order].tolist(), strict=True):
        if len(taken) >= k:
            break
        if author != 0:
            if per_author.get(author, 0) >= max_per_author:
                continue
            per_author[author] = per_author.get(author, 0) + 1
        taken.append(i)
    return np.asarray(taken, dtype=np.int64)
