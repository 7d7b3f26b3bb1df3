"""Task bodies of ``dags/feed_retrieval_training.py``: retrieval set → candidate encoder → Recall@10 on the
set's test window (candidate, CURRENT, untrained encoder) → gate → promote → embeddings → new Milvus
collection + alias swap → member embeddings pushed to Feast. And ``feed model rollback retrieval``.

Idempotent per data interval: the model version is named after the interval (``r<YYYYMMDD>`` of its end), the
retrieval set, the candidate folder, the embedding rows (one Delta commit per version), the Milvus collection
(``posts_<version>``; the same version's previous build is dropped once the alias moved) and the Feast online
rows (overwritten per member) are all keyed by that name, so re-running an interval replaces, never adds.

Candidates train in ``artifacts/retrieval/.candidates/<version>/`` and move to
``artifacts/retrieval/<version>/`` only when the gate passed: a re-run of the served interval never
overwrites the served model's files before its replacement is known to be good.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feed.config import FeedPaths
    from training.data.retrieval_set import RetrievalSet
    from training.retrieval.pipeline import RetrievalRunConfig

log = logging.getLogger(__name__)

RETRIEVAL_DIR = "retrieval"  # artifacts/retrieval/<version>/
CANDIDATES_DIR = ".candidates"  # artifacts/retrieval/.candidates/<version>/: trained, not yet gated
GATE_EVAL_FILE = "gate_eval.json"  # the evaluation the gate read, kept next to the candidate
METRIC = "recall_at_10"
MEMBER_PUSH_SOURCE = "member_embedding_push"  # feature_repo: member_embedding_fv's push source
POST_PUSH_SOURCE = "post_embedding_push"  # feature_repo: post_embedding_fv's push source
PUSH_BATCH = 5000  # rows per Feast push call


class RetrievalGateFailed(RuntimeError):
    """The candidate encoder is worse than the served one (or than the untrained encoder); not promoted."""


@dataclass(frozen=True)
class RetrievalGateConfig:
    """When a candidate may replace the served encoder."""

    # Recall@10 the candidate may lose against CURRENT (absolute). On ≈500 test anchors one anchor is 0.002,
    # and two runs of the same recipe differ by ≈0.005–0.01 (seed, sampled negatives): a stricter gate would
    # refuse equally good models by chance, a looser one would let real regressions through.
    tolerance: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class RetrievalTrainingConfig:
    """The DAG run's conf (``airflow dags test ... --conf '{"profile": "tiny", "steps": 4}'``); the defaults
    are the demo's CPU run."""

    profile: str = "cpu"
    steps: int = 150  # the demo's fine-tuning length (cpu profile: ≈2 min on 2 cores)
    seed: int = 0
    max_train_anchors: int | None = None  # None = every train anchor
    max_eval_anchors: int | None = 500  # sampled by seed; the same anchors for every model compared
    tolerance: float = RetrievalGateConfig.tolerance

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any] | None) -> RetrievalTrainingConfig:
        """Parse a DAG run conf; unknown keys are an error (a typo must not silently train the default)."""
        from feed.flows import config_from_conf

        return config_from_conf(cls, conf, "feed_retrieval_training")

    def run_config(self) -> RetrievalRunConfig:
        from training.retrieval.pipeline import RetrievalRunConfig

        return RetrievalRunConfig(
            profile=self.profile,
            steps=self.steps,
            seed=self.seed,
            max_train_anchors=self.max_train_anchors,
            max_eval_anchors=self.max_eval_anchors,
            baselines=(),  # the gate compares encoders; `feed train eval-retrieval` reports the baselines
            progress=False,
        )

    @property
    def gate(self) -> RetrievalGateConfig:
        return RetrievalGateConfig(tolerance=self.tolerance)


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def plain(summary: Mapping[str, Any]) -> dict[str, Any]:
    """``summary`` as plain JSON types (numpy scalars → Python numbers): what XCom serializes."""
    return json.loads(json.dumps(summary, default=_scalar))


# --- naming and paths


def version_for(interval_end: dt.datetime) -> str:
    """The model version an interval trains: ``r<YYYYMMDD>`` of the interval's end (UTC)."""
    return f"r{interval_end.astimezone(dt.UTC):%Y%m%d}"


def retrieval_root(paths: FeedPaths) -> Path:
    return paths.artifacts / RETRIEVAL_DIR


def candidate_dir(paths: FeedPaths, version: str) -> Path:
    return retrieval_root(paths) / CANDIDATES_DIR / version


def export_time(paths: FeedPaths, interval_end: dt.datetime) -> dt.datetime:
    """As-of time of the embeddings: the interval's end, clipped to the newest published feature snapshot
    (synthetic data ends in the past; a scheduled run's interval end is usually after the last snapshot)."""
    from training.retrieval.export import latest_snapshot

    # a plain datetime: Airflow passes a pendulum DateTime, which pandas will not compare with its timestamps
    end = dt.datetime.fromtimestamp(interval_end.timestamp(), tz=dt.UTC)
    return min(end, latest_snapshot(paths))


# --- tasks


def build_training_set(paths: FeedPaths, version: str, cfg: RetrievalTrainingConfig) -> dict[str, Any]:
    """The retrieval set ``data/training/retrieval/<version>`` from the published features (replaced on a
    re-run). Returns its path and anchors per split."""
    from training.data.retrieval_set import RetrievalSet, RetrievalSetConfig, build_retrieval_set

    path = build_retrieval_set(paths, RetrievalSetConfig(name=version, seed=cfg.seed))
    rset = RetrievalSet.load(path)
    anchors = {split: len(rset.anchors(split)) for split in ("train", "validation", "test")}
    return plain({"version": version, "set": str(path), "anchors": anchors})


def train_candidate(
    paths: FeedPaths, set_path: Path, version: str, cfg: RetrievalTrainingConfig
) -> dict[str, Any]:
    """Fine-tune the encoder on the set's train split into ``.candidates/<version>`` (emptied first)."""
    from training.data.retrieval_set import RetrievalSet
    from training.retrieval.pipeline import train_and_evaluate

    out = candidate_dir(paths, version)
    shutil.rmtree(out, ignore_errors=True)
    outcome = train_and_evaluate(RetrievalSet.load(set_path), cfg.run_config(), out, train_only=True)
    if not outcome.train.completed:
        raise RuntimeError(f"training of {version} stopped at step {outcome.train.step}; nothing to gate")
    return plain(
        {
            "version": version,
            "candidate": str(out),
            "steps": outcome.train.step,
            "final_loss": outcome.train.final_loss,
        }
    )


def evaluate_candidate(
    paths: FeedPaths, set_path: Path, candidate: Path, cfg: RetrievalTrainingConfig
) -> dict[str, Any]:
    """Recall@10 of the candidate, the served (CURRENT) encoder and the untrained encoder on the same test
    anchors and candidate pools. Each saved model reads prompts rendered the way it was trained (its token
    limits), so a profile change between versions is compared fairly. Written to ``gate_eval.json``."""
    from training.data.retrieval_set import RetrievalSet
    from training.retrieval.export import model_dir
    from training.retrieval.pipeline import RunPlan, evaluate_models, pretrained_encoder
    from training.versions import current_version

    rset = RetrievalSet.load(set_path)
    run = cfg.run_config()
    results: dict[str, Any] = {}
    results.update(_evaluate_saved(rset, run, "candidate", candidate))
    served = current_version(retrieval_root(paths))
    if served is not None:
        results.update(_evaluate_saved(rset, run, "current", model_dir(paths, served)))
    else:
        untrained = pretrained_encoder(RunPlan.of(run), run.pretrained_baseline)
        results.update(evaluate_models(rset, run, {"pretrained": untrained}))
    summary = {
        "version": candidate.name,
        "current_version": served,
        "metric": METRIC,
        **{f"{name}_{METRIC}": metrics.get(METRIC) for name, metrics in results.items()},
        "n_evaluated": results["candidate"].get("n_evaluated"),
    }
    (candidate / GATE_EVAL_FILE).write_text(
        json.dumps({"summary": summary, "results": results}, indent=2, default=_scalar) + "\n"
    )
    return plain(summary)


def _evaluate_saved(
    rset: RetrievalSet, run: RetrievalRunConfig, name: str, folder: Path
) -> dict[str, dict[str, Any]]:
    from training.retrieval.evaluate import EvalConfig, TextEncoder, run_evaluation
    from training.retrieval.export import load_model, prompt_config
    from training.retrieval.pipeline import build_eval_corpus, eval_anchors

    model = load_model(folder, "auto")
    prompt = prompt_config(folder, model.config)
    anchors = eval_anchors(rset, run)  # sampled by seed: the same anchors for every model
    corpus = build_eval_corpus(rset, anchors, model.tokenizer, prompt, run.history, progress=False)
    encoder = TextEncoder(
        name=name,
        member=lambda texts: model.embed(texts, "member"),
        post=lambda texts: model.embed(texts, "post"),
    )
    return run_evaluation(corpus, [encoder], EvalConfig(seed=run.seed, baselines=(), progress=False))


def gate(evaluation: Mapping[str, Any], cfg: RetrievalGateConfig = RetrievalGateConfig()) -> dict[str, Any]:
    """Pass when the candidate's Recall@10 is not worse than CURRENT's beyond ``cfg.tolerance`` (or, with
    nothing served yet, strictly better than the untrained encoder's, the demo's rule). Raises
    :class:`RetrievalGateFailed` with both numbers otherwise."""
    version = evaluation["version"]
    candidate = evaluation.get(f"candidate_{METRIC}")
    if candidate is None:
        raise RetrievalGateFailed(f"gate: candidate {version} has no {METRIC} (no test anchors evaluated?)")
    served = evaluation.get("current_version")
    if served is not None:
        current = evaluation.get(f"current_{METRIC}")
        if current is None:
            raise RetrievalGateFailed(f"gate: served model {served} has no {METRIC} on the test window")
        if candidate < current - cfg.tolerance:
            raise RetrievalGateFailed(
                f"gate FAILED: candidate {version} Recall@10 {candidate:.4f} is worse than the served "
                f"{served} ({current:.4f}) by {current - candidate:.4f} > tolerance {cfg.tolerance}; "
                f"CURRENT stays {served}"
            )
        reason = f"Recall@10 {candidate:.4f} vs served {served} {current:.4f} (tolerance {cfg.tolerance})"
    else:
        untrained = evaluation.get(f"pretrained_{METRIC}")
        if untrained is None or not candidate > untrained:
            raise RetrievalGateFailed(
                f"gate FAILED: nothing is served yet and candidate {version} Recall@10 {candidate:.4f} does "
                f"not beat the untrained encoder ({untrained}); nothing promoted"
            )
        reason = f"Recall@10 {candidate:.4f} > untrained {untrained:.4f} (nothing served before)"
    return {"version": version, "passed": True, "reason": reason}


def promote(paths: FeedPaths, version: str) -> dict[str, Any]:
    """Move the gated candidate to ``artifacts/retrieval/<version>`` (replacing that version's folder on a
    re-run) and point CURRENT at it (the replaced value goes to PREVIOUS)."""
    from training.retrieval.train import promote as write_promoted
    from training.versions import current_version

    root = retrieval_root(paths)
    source = candidate_dir(paths, version)
    if not source.is_dir():
        raise FileNotFoundError(f"no gated candidate at {source}; run the training and gate tasks first")
    before = current_version(root)
    dest = root / version
    old = root / CANDIDATES_DIR / f"{version}.replaced"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)  # same file system: a rename, then the swap below is a second rename
    source.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    write_promoted(root, version)
    return {"version": version, "previous": before}


def export_embeddings(paths: FeedPaths, version: str, at: dt.datetime) -> dict[str, Any]:
    """Embed every post live at ``at`` and every member with a profile at ``at`` with ``version`` (replacing
    that version's rows in post_embeddings / member_embeddings)."""
    from training.retrieval.export import ExportConfig, export_members, export_posts

    cfg = ExportConfig(version=version, at=at, progress=False)
    posts, members = export_posts(paths, cfg), export_members(paths, cfg)
    return plain(
        {
            "version": version,
            "at": at.isoformat(),
            "posts": posts.rows,
            "members": members.rows,
            "skipped": {**posts.skipped, **members.skipped},
        }
    )


def backfill_index(paths: FeedPaths, version: str) -> dict[str, Any]:
    """A new ``posts_<version>`` collection from post_embeddings, then the alias swap. A previous build of the
    SAME version (a re-run of the interval) is dropped after the swap; other versions' collections stay for
    rollback. Starts this home's Milvus Lite server when none runs, and stops it again afterwards."""
    from serving.index import lite
    from serving.index.backfill import backfill
    from serving.index.milvus import IndexConfig, connect, describe_posts, resolve_uri

    config = IndexConfig()
    started = config.uri is None and lite.running_server(paths) is None
    try:
        built = backfill(paths, config, model_version=version)
        dropped = None
        if built.previous and built.previous != built.collection:
            client = connect(resolve_uri(config, paths), token=config.token, timeout_s=config.timeout_s)
            if describe_posts(client, built.previous)["model_version"] == version:
                client.drop_collection(built.previous)
                dropped = built.previous
    finally:
        if started:
            lite.stop_server(paths)
    return plain(
        {
            "version": version,
            "collection": built.collection,
            "alias": built.alias,
            "previous": built.previous,
            "dropped": dropped,
            "rows": built.rows,
        }
    )


def push_embeddings(paths: FeedPaths, version: str) -> dict[str, Any]:
    """Write ``version``'s member_embeddings and post_embeddings rows to the Feast online store through the
    push sources ``member_embedding_push`` / ``post_embedding_push`` (PushMode.ONLINE: overwrites each row).

    Why a push and not ``materialize``: the embedding tables hold every version's rows, and materializing a
    view would serve each entity's newest row of *any* version. The online rows are stamped with the push time
    — when this version started serving — so the views' TTLs count from promotion, not from the data's
    (possibly past, synthetic) clock. The serving ranker reads post vectors of exactly this version; without
    the post push the online store had none (found by ``feed parity``)."""
    import pandas as pd
    from feast.data_source import PushMode

    from pipelines.feature_store import applied_store
    from training.retrieval.embed import read_embeddings

    store = applied_store(paths)
    now = pd.Timestamp.now(tz="UTC")
    counts: dict[str, Any] = {"version": version, "pushed_at": now.isoformat()}
    for kind, key, source in (
        ("member", "member_id", MEMBER_PUSH_SOURCE),
        ("post", "post_id", POST_PUSH_SOURCE),
    ):
        ids, vectors = read_embeddings(paths, kind, version)
        for s in range(0, len(ids), PUSH_BATCH):
            frame = pd.DataFrame(
                {
                    key: ids[s : s + PUSH_BATCH],
                    "embedding": [row.tolist() for row in vectors[s : s + PUSH_BATCH]],
                    "model_version": version,
                    "event_timestamp": now,
                    "created": now,
                }
            )
            store.push(source, frame, to=PushMode.ONLINE)
        counts[f"{kind}s"] = len(ids)
    return counts


# --- rollback (feed model rollback retrieval)


def rollback_retrieval(paths: FeedPaths) -> dict[str, Any]:
    """CURRENT ← PREVIOUS, the Milvus alias back to the restored version's collection, and the restored
    version's member embeddings (still in member_embeddings) pushed to the Feast online store again.

    The model pointer moves first (it is what serving loads); then the index and Feast follow it. When the
    restored version has no collection left, or no member_embeddings rows, that part is reported as
    ``None`` with the command that rebuilds it — the pointer is not moved back."""
    from training.retrieval.embed import model_versions
    from training.versions import rollback

    restored, rolled_back = rollback(retrieval_root(paths))
    out: dict[str, Any] = {"model": {"current": restored, "previous": rolled_back}}
    out["index"] = _alias_to_version(paths, restored)
    if out["index"] is None:
        out["index_fix"] = f"feed index backfill --version {restored} --allow-non-current"
    if restored in model_versions(paths, "member"):
        out["feast"] = push_embeddings(paths, restored)
    else:
        out["feast"] = None
        out["feast_fix"] = f"feed embed members --version {restored}, then push (the DAG's last task)"
    return out


def _alias_to_version(paths: FeedPaths, version: str) -> dict[str, Any] | None:
    from serving.index import lite
    from serving.index.backfill import use_collection
    from serving.index.milvus import IndexConfig, collection_for, connect, resolve_uri

    config = IndexConfig()
    started = config.uri is None and lite.running_server(paths) is None
    try:
        client = connect(resolve_uri(config, paths, start=True), token=config.token)
        name = collection_for(client, version, config.alias)
        if name is None:
            return None
        previous = use_collection(client, name, config.alias)
        return {"alias": config.alias, "collection": name, "was": previous}
    finally:
        if started:
            lite.stop_server(paths)


def rollback_ranking(paths: FeedPaths) -> dict[str, Any]:
    """CURRENT ← PREVIOUS under artifacts/ranking; serving picks CURRENT up on its next model load."""
    from training.versions import rollback

    restored, rolled_back = rollback(paths.artifacts / "ranking")
    return {"model": {"current": restored, "previous": rolled_back}}
