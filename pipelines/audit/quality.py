"""Model quality per member group: does the feed work as well for every group of members?

Primary (``source: training_sets``): the promoted models on the **test split** of the training sets they were
trained from (``data/training/{retrieval,ranking}/<CURRENT version>``), with the project's own evaluation
code, split by the anchor's / target's member group:

- retrieval: Recall@k of the promoted dual encoder — exact cosine search of each test anchor's member prompt
  against every post live on its day, the member's engaged posts excluded, pessimistic ties
  (``training.retrieval.evaluate``: the same corpus and ranks as the retrieval gate);
- ranking: per-task AUC (and NDCG@10) of the promoted GR on the ranking set's test targets
  (``training.ranking.train.predict`` + ``training.ranking.metrics.summarize``).

Fallback (``source: served_feeds``, only when a set or a promoted model is missing): Recall@k of the audited
served feeds against each sampled member's engagements in the last ``holdout_days`` of the lake. The service
never returns what the member already engaged with as far as its online features know, so this is a lower
bound (0 when the online snapshot covers the hold-out window); the notes say so, and AUC is null (served
items carry no labels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.audit.exposure import group_of

if TYPE_CHECKING:
    from feed.config import FeedPaths

TRAINING_DIR = "training"  # <data>/training/{retrieval,ranking}/<version>: where the set builders write


class QualityUnavailable(RuntimeError):
    """A training set or a promoted model the primary quality measure needs is missing."""


@dataclass(frozen=True)
class QualityConfig:
    ks: tuple[int, ...] = (10, 50)  # Recall@k cut-offs
    max_anchors: int | None = 500  # retrieval test anchors sampled by seed (the retrieval DAG's default)
    max_eval_days: int | None = None  # only the last n test days (one candidate pool each); None = all
    seed: int = 0
    token_budget: int = 16_384  # GR scoring batch size in tokens
    device: str = "auto"
    holdout_days: int = 7  # fallback: the last days of the lake whose engagements are held out

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive, got {self.ks}")


def _none_if_nan(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _promoted(paths: FeedPaths, model: str) -> tuple[str, Path]:
    from training.versions import current_version

    version = current_version(paths.artifacts / model)
    if version is None:
        raise QualityUnavailable(f"no promoted {model} model (artifacts/{model}/CURRENT)")
    set_path = paths.data / TRAINING_DIR / model / version  # the DAGs name a set after the version it trains
    if not set_path.is_dir():
        raise QualityUnavailable(f"the {model} set {set_path} of the promoted {version} is missing")
    return version, set_path


# --- retrieval


def retrieval_ranks(paths: FeedPaths, cfg: QualityConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rank of each sampled test anchor's positive under the promoted encoder (−1: not evaluated)."""
    import torch

    from training.data.retrieval_set import RetrievalSet
    from training.retrieval.evaluate import embedding_scorer, encode_texts, rank_task
    from training.retrieval.export import load_model, model_dir, prompt_config
    from training.retrieval.pipeline import RetrievalRunConfig, build_eval_corpus, eval_anchors

    version, set_path = _promoted(paths, "retrieval")
    rset = RetrievalSet.load(set_path)
    run = RetrievalRunConfig(
        max_eval_anchors=cfg.max_anchors,
        max_eval_days=cfg.max_eval_days,
        seed=cfg.seed,
        progress=False,
        baselines=(),
    )
    anchors = eval_anchors(rset, run)
    folder = model_dir(paths, version)
    model = load_model(folder, cfg.device)
    corpus = build_eval_corpus(
        rset, anchors, model.tokenizer, prompt_config(folder, model.config), run.history, progress=False
    )
    members = encode_texts(lambda t: model.embed(t, "member"), corpus.member_texts, progress=False)
    flat = [t for texts in corpus.pool_texts for t in texts]
    posts = encode_texts(lambda t: model.embed(t, "post"), flat, progress=False)
    pools = list(torch.split(posts, [len(t) for t in corpus.pool_texts]))
    result = rank_task(corpus.task, embedding_scorer(members, pools))
    frame = pd.DataFrame({"member_id": anchors["member_id"].to_numpy(np.int64), "rank": result.ranks})
    meta = {
        "model_version": version,
        "set": str(set_path),
        "split": run.eval_split,
        "skipped": result.skipped,
    }
    return frame, meta


def recall_by_group(ranks: pd.DataFrame, groups: pd.Series, ks: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Recall@k per member group (and ``all``) from anchor ranks (``training.retrieval.evaluate``)."""
    from training.retrieval.evaluate import recall_at_k

    member_group = group_of(ranks["member_id"], groups)
    out: dict[str, dict[str, Any]] = {}
    for name in ["all", *sorted(set(member_group))]:
        r = ranks["rank"].to_numpy() if name == "all" else ranks["rank"].to_numpy()[member_group == name]
        metrics: dict[str, Any] = {f"recall_at_{k}": _none_if_nan(recall_at_k(r, k)) for k in ks}
        metrics |= {"n_anchors": len(r), "n_evaluated": int((r >= 0).sum())}
        out[name] = metrics
    return out


# --- ranking


def ranking_predictions(paths: FeedPaths, cfg: QualityConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The promoted GR's logits on every test target of its ranking set, with each target's member."""
    from training.data.ranking_data import load_ranking_arrays
    from training.ranking.train import load_ranker, predict

    version, set_path = _promoted(paths, "ranking")
    arrays = load_ranking_arrays(set_path, "test")
    model, model_cfg = load_ranker(paths.artifacts / "ranking" / version)
    logits, labels, sessions = predict(
        model, arrays, model_cfg, token_budget=cfg.token_budget, device=cfg.device
    )
    per_example = np.diff(np.asarray(arrays.ex_target_offsets))
    example_member = np.asarray(arrays.seq_member)[np.asarray(arrays.ex_seq)]
    member = np.repeat(example_member, per_example)
    out = {"logits": logits, "labels": labels, "sessions": sessions, "member_id": member}
    return out, {"model_version": version, "set": str(set_path), "split": "test"}


def auc_by_group(pred: dict[str, np.ndarray], groups: pd.Series) -> dict[str, dict[str, Any]]:
    """Per-task AUC and NDCG@10 per member group (and ``all``), with target and positive counts."""
    from training.ranking.features import TASKS
    from training.ranking.metrics import summarize

    member_group = group_of(pred["member_id"], groups)
    out: dict[str, dict[str, Any]] = {}
    for name in ["all", *sorted(set(member_group))]:
        sel = np.ones(len(member_group), bool) if name == "all" else member_group == name
        labels = pred["labels"][sel]
        metrics: dict[str, Any] = {"n_targets": int(sel.sum())}
        if sel.any():
            full = summarize(pred["logits"][sel], labels, pred["sessions"][sel], kernel="pytorch")
            metrics |= {f"auc_{t}": _none_if_nan(full[f"auc_{t}"]) for t in TASKS}
            metrics["ndcg_at_10"] = _none_if_nan(full["ndcg_at_10"])
        metrics["positives"] = {t: int(labels[:, j].sum()) for j, t in enumerate(TASKS)}
        out[name] = metrics
    return out


# --- fallback: served feeds vs held-out engagements


def feed_recall_by_group(
    paths: FeedPaths, items: pd.DataFrame, groups: pd.Series, cfg: QualityConfig
) -> dict[str, dict[str, Any]]:
    """Mean over sampled members with held-out engagements of |top-k feed ∩ held-out engaged posts| /
    |held-out engaged posts|, per member group."""
    from pipelines import delta_io
    from training.ranking.features import ENGAGED_TASKS

    imp = delta_io.read(
        paths.table("raw_impressions"),
        columns=["member_id", "post_id", "event_timestamp", "request_id", *ENGAGED_TASKS],
    ).to_pandas()
    imp = imp[imp["request_id"].isna()]
    start = imp["event_timestamp"].max() - pd.Timedelta(days=cfg.holdout_days)
    held = imp[(imp["event_timestamp"] > start) & imp[list(ENGAGED_TASKS)].to_numpy().any(axis=1)]
    held = held[held["member_id"].isin(items["member_id"].unique())]
    truth = held.groupby("member_id")["post_id"].agg(lambda s: set(s.tolist()))
    rows = []
    for member_id, engaged in truth.items():
        feed = items[items["member_id"] == member_id].sort_values("position")["post_id"].tolist()
        rows.append(
            {"member_id": member_id, **{k: len(set(feed[:k]) & engaged) / len(engaged) for k in cfg.ks}}
        )
    frame = pd.DataFrame(rows, columns=["member_id", *cfg.ks])
    member_group = group_of(frame["member_id"], groups)
    out: dict[str, dict[str, Any]] = {}
    for name in ["all", *sorted(set(member_group))]:
        part = frame if name == "all" else frame[member_group == name]
        metrics: dict[str, Any] = {
            f"recall_at_{k}": _none_if_nan(float(part[k].mean())) if len(part) else None for k in cfg.ks
        }
        metrics["n_members"] = len(part)
        out[name] = metrics
    return out


# --- together


def quality_by_group(
    paths: FeedPaths, groups: pd.Series, cfg: QualityConfig, *, feeds: pd.DataFrame | None = None
) -> dict[str, Any]:
    """``{"source", "retrieval", "ranking", "by_group", "notes"}``; ``by_group[g]`` merges the retrieval
    Recall@k and the ranking AUCs of group g (the report summary's ``quality_by_member_group``)."""
    notes: list[str] = []
    out: dict[str, Any] = {"source": "training_sets", "retrieval": None, "ranking": None}
    try:
        ranks, meta = retrieval_ranks(paths, cfg)
        out["retrieval"] = {**meta, "by_group": recall_by_group(ranks, groups, cfg.ks)}
        notes.append(
            f"retrieval Recall@k: promoted encoder {meta['model_version']} on {len(ranks)} test anchors of "
            f"{meta['set']} (sampled by seed {cfg.seed}, at most {cfg.max_anchors}); engaged posts excluded"
        )
    except QualityUnavailable as exc:
        notes.append(f"retrieval quality from the training set unavailable: {exc}")
    try:
        pred, meta = ranking_predictions(paths, cfg)
        out["ranking"] = {**meta, "by_group": auc_by_group(pred, groups)}
        notes.append(
            f"ranking AUC: promoted GR {meta['model_version']} on the {len(pred['member_id'])} test "
            f"targets of {meta['set']}"
        )
    except QualityUnavailable as exc:
        notes.append(f"ranking quality from the training set unavailable: {exc}")
    if out["retrieval"] is None and feeds is not None and len(feeds):
        out["source"] = "served_feeds" if out["ranking"] is None else "mixed"
        out["retrieval"] = {
            "source": "served_feeds",
            "by_group": feed_recall_by_group(paths, feeds, groups, cfg),
        }
        notes.append(
            f"retrieval Recall@k from the audited served feeds vs each member's engagements in the last "
            f"{cfg.holdout_days} days: a lower bound — the service excludes posts the member already engaged "
            "with as far as the online features know (0 when the online snapshot covers the hold-out window)"
        )
    if out["ranking"] is None:
        notes.append("ranking AUC per member group: null (served feeds carry no engagement labels)")
    out["by_group"] = merge_by_group(out)
    out["gaps"] = gaps(out["by_group"])
    notes += recall_gap_notes(out["by_group"], cfg.ks)
    out["notes"] = notes
    return out


def recall_gap_notes(by_group: dict[str, dict[str, Any]], ks: Sequence[int]) -> list[str]:
    """For each Recall@k: the best-minus-worst group gap against its binomial standard error
    sqrt(p₁(1−p₁)/n₁ + p₂(1−p₂)/n₂) — a gap under two standard errors is within sampling noise."""
    notes = []
    groups = {g: m for g, m in by_group.items() if g != "all" and m.get("n_evaluated")}
    for k in ks:
        key = f"recall_at_{k}"
        have = {g: m for g, m in groups.items() if m.get(key) is not None}
        if len(have) < 2:
            continue
        best = max(have, key=lambda g: have[g][key])
        worst = min(have, key=lambda g: have[g][key])
        p1, n1, p2, n2 = (
            have[best][key],
            have[best]["n_evaluated"],
            have[worst][key],
            have[worst]["n_evaluated"],
        )
        se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        gap = p1 - p2
        verdict = "within sampling noise" if gap < 2 * se else "larger than sampling noise"
        notes.append(
            f"{key} gap {best} − {worst} = {gap:.3f} (binomial SE {se:.3f}, {n1} and {n2} anchors): {verdict}"
        )
    return notes


def gaps(by_group: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per metric (recall_at_k, auc_<task>, ndcg_at_10): best group minus worst group (``all`` excluded;
    only metrics that at least two groups have)."""
    out: dict[str, float] = {}
    groups = {g: m for g, m in by_group.items() if g != "all"}
    names = sorted({k for m in groups.values() for k in m if k.startswith(("recall_at_", "auc_", "ndcg_"))})
    for name in names:
        values = [m[name] for m in groups.values() if m.get(name) is not None]
        if len(values) >= 2:
            out[name] = float(max(values) - min(values))
    return out


def merge_by_group(quality: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per group: the retrieval recall_at_k and ranking auc_<task> side by side (with their counts)."""
    merged: dict[str, dict[str, Any]] = {}
    for part in ("retrieval", "ranking"):
        section = quality.get(part) or {}
        for group, metrics in (section.get("by_group") or {}).items():
            keep = {k: v for k, v in metrics.items() if k != "positives"}
            merged.setdefault(group, {}).update(keep)
    return dict(sorted(merged.items()))
