"""Task bodies of ``dags/feed_ranking_training.py``: build the ranking set → train a GR candidate → evaluate
it on validation and test → gate on per-task validation AUC against the served ranker → promote.

Every function takes and returns paths, versions and small dicts (what XCom may carry). The version is named
after the data interval (``g<YYYYMMDD>`` of its end), so re-running an interval replaces that version's set,
candidate and published folder instead of adding new ones. The candidate trains under
``artifacts/ranking/candidates/<version>/`` and is copied to ``artifacts/ranking/<version>/`` only after the
gate passed: a re-run of an interval whose version is already serving never overwrites the served files
before its own gate.

The gate (:class:`RankingGateConfig`): on the same validation split, the candidate's AUC on each gated task
must not be below the current ranker's (``artifacts/ranking/CURRENT``) by more than ``tolerance``. With no
current ranker yet — or one the new set cannot feed because the promoted retrieval model, hence the post or
member embedding width, changed — the candidate must beat the non-sequential baseline (trained here on the
same batches for the same steps, :func:`training.ranking.evaluate.gate`) or, if so configured, chance
(AUC 0.5) on click. A failed gate raises :class:`RankingGateFailed` naming the tasks that regressed, and
``CURRENT`` stays as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from feed.config import FeedPaths, FeedSettings, SparkConfig
    from training.data.ranking_data import RankingArrays
    from training.ranking.model import GRConfig
    from training.ranking.train import RankingTrainConfig

log = logging.getLogger(__name__)

RANKING_DIR = "ranking"  # artifacts/ranking/
CANDIDATES_DIR = "candidates"  # artifacts/ranking/candidates/<version>/: trained, not yet gated
BASELINE_DIR = "baseline"  # .../candidates/<version>/baseline/: the non-sequential baseline of a first gate
REPORTED_METRICS = ("ndcg_at_10",)  # besides every auc_<task>: what XCom and the logs carry


class RankingGateFailed(RuntimeError):
    """The candidate ranker did not pass the quality gate; nothing was promoted."""


@dataclass(frozen=True)
class RankingRunConfig:
    """What a DAG run's conf may set (``--conf '{"steps": 40}'``). Defaults are a small CPU run; a GPU
    worker takes the CLI's sizes (``feed train ranking``: 300 steps, 16k-token batches)."""

    steps: int = 100
    token_budget: int = 8_192  # tokens per packed batch (history + candidates)
    lr: float = 2e-3
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_history: int = 256  # newest interactions the model sees per member; the set keeps them all
    max_targets: int = 64  # targets per example block of the ranking set
    seed: int = 0
    device: str = "auto"
    # Negative control: permute the train split's target labels, so the candidate learns nothing the
    # validation labels can confirm. The gate must refuse it (tests; a manual fire drill of the gate).
    shuffle_labels: bool = False
    # Rule when there is no comparable current ranker: "chance" asks for validation click AUC above 0.5;
    # "baseline" also trains the non-sequential baseline (same batches and steps) and asks the GR to beat it.
    # Default chance: at these small step counts the baseline still wins on tiny (measured on a tiny set
    # without retrieval embeddings, validation click AUC GR vs baseline: 0.62 vs 0.68 at 60 steps, 0.76 vs
    # 0.80 at 150), so "baseline" would refuse every first small run; use it with production-size runs.
    first_gate: Literal["baseline", "chance"] = "chance"

    def __post_init__(self) -> None:
        for name in ("steps", "token_budget", "d_model", "n_layers", "n_heads", "max_targets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.first_gate not in ("baseline", "chance"):
            raise ValueError(f"first_gate must be baseline or chance, got {self.first_gate!r}")

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any] | None) -> RankingRunConfig:
        """Parse a DAG run conf; unknown keys are an error (a typo must not silently train the default)."""
        from feed.flows import config_from_conf

        return config_from_conf(cls, conf, "feed_ranking_training")

    def train_config(self) -> RankingTrainConfig:
        from training.ranking.train import RankingTrainConfig

        return RankingTrainConfig(
            steps=self.steps,
            token_budget=self.token_budget,
            lr=self.lr,
            warmup_steps=max(1, self.steps // 10),
            seed=self.seed,
            device=self.device,
            checkpoint="none",  # a retried task retrains from scratch: checkpoints would only cost time
        )

    def model_config(self) -> GRConfig:
        from training.ranking.model import GRConfig

        return GRConfig(
            d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, max_history=self.max_history
        )


@dataclass(frozen=True)
class RankingGateConfig:
    """Which tasks the promotion gate compares, and how much worse the candidate may be on each."""

    # None: click plus every engagement task (training.ranking.features.ENGAGED_TASKS) whose validation
    # labels have at least ``min_positives`` positives and as many negatives.
    tasks: tuple[str, ...] | None = None
    # AUC the candidate may lose per task against the current ranker: retraining on a week more data moves
    # AUC by a few thousandths; more than this is a regression.
    tolerance: float = 0.01
    # Below ~30 positives the AUC's standard error (≈ 0.05) dwarfs the tolerance: such a task cannot be gated.
    min_positives: int = 30

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if self.tasks is not None and "click" not in self.tasks:
            raise ValueError("the gate always compares click")


def version_for(data_interval_end: dt.datetime) -> str:
    """The ranker version a run of this data interval produces: ``g<YYYYMMDD>`` of its end (UTC)."""
    return data_interval_end.astimezone(dt.UTC).strftime("g%Y%m%d")


def _settings(settings: FeedSettings | None) -> FeedSettings:
    from feed.config import FeedSettings

    return settings if settings is not None else FeedSettings()


def ranking_dir(paths: FeedPaths) -> Path:
    return paths.artifacts / RANKING_DIR


def candidate_dir(paths: FeedPaths, version: str) -> Path:
    return ranking_dir(paths) / CANDIDATES_DIR / version


# --- build_ranking_set


def build_set(
    data_interval_start: dt.datetime,
    data_interval_end: dt.datetime,
    conf: Mapping[str, Any] | None = None,
    *,
    settings: FeedSettings | None = None,
    spark: SparkConfig | None = None,
) -> dict[str, Any]:
    """Build the ranking set ``data/training/ranking/<version>`` from the lake as ``feed_features`` left it
    (every valid impression up to its last ingest; the last days are validation and test) with the promoted
    retrieval model's post/member embeddings when one is promoted, none otherwise. Replaces the set of a
    previous run of the same interval."""
    from pipelines.ranking_set import REPORT_FILE, RankingSetConfig, build_ranking_set

    run = RankingRunConfig.from_conf(conf)
    settings = _settings(settings)
    paths = settings.paths()
    version = version_for(data_interval_end)
    cfg = RankingSetConfig(name=version, max_history=run.max_history, max_targets=run.max_targets, shards=2)
    path = build_ranking_set(paths, cfg, spark or settings.spark())
    report = json.loads((path / REPORT_FILE).read_text())
    out = {
        "version": version,
        "set_path": str(path),
        "data_interval": [data_interval_start.isoformat(), data_interval_end.isoformat()],
        "windows": report["windows"],
        "examples_per_split": report["examples_per_split"],
        "member_embedding": report["member_embedding"],
        "retrieval_version": _promoted_retrieval(paths),
    }
    log.info("ranking set %s: %s", path, out["examples_per_split"])
    return out


def _promoted_retrieval(paths: FeedPaths) -> str | None:
    from pipelines.ranking_set import promoted_retrieval_version

    return promoted_retrieval_version(paths)


# --- train_ranker


def shuffled_labels(arrays: RankingArrays, seed: int) -> RankingArrays:
    """``arrays`` with its target labels (the six-task action codes) permuted across targets: inputs intact,
    labels unrelated to them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return dataclasses.replace(arrays, tgt_action=rng.permutation(np.asarray(arrays.tgt_action)))


def train_candidate(
    set_path: str | Path,
    version: str,
    conf: Mapping[str, Any] | None = None,
    *,
    settings: FeedSettings | None = None,
) -> dict[str, Any]:
    """Train the GR on the set's train split into ``artifacts/ranking/candidates/<version>/`` (replacing a
    previous candidate of that version). Not served until :func:`promote_candidate`."""
    import torch

    from training.data.ranking_data import load_ranking_arrays
    from training.ranking.evaluate import fit_to_data
    from training.ranking.model import GenerativeRanker
    from training.ranking.train import train_ranker

    run = RankingRunConfig.from_conf(conf)
    paths = _settings(settings).paths()
    train = load_ranking_arrays(set_path, "train")
    if run.shuffle_labels:
        train = shuffled_labels(train, run.seed)
    model_cfg = fit_to_data(run.model_config(), train)
    out = candidate_dir(paths, version)
    if out.exists():
        shutil.rmtree(out)  # a re-run of the interval: the old candidate must not mix into this one
    torch.manual_seed(run.seed)
    result = train_ranker(
        GenerativeRanker(model_cfg), train, run.train_config(), out, model_cfg=model_cfg, progress=False
    )
    return {
        "version": version,
        "candidate": str(out),
        "steps": result.steps,
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "seconds": result.seconds,
        "shuffled_labels": run.shuffle_labels,
    }


# --- evaluate


def _small(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The metrics XCom carries: per-task AUC and NDCG@10, NaN (a one-class task) as None (JSON-safe)."""
    keep = {k: v for k, v in metrics.items() if k.startswith("auc_") or k in REPORTED_METRICS}
    return {k: None if v is None or math.isnan(float(v)) else float(v) for k, v in keep.items()}


def score(
    version_dir: Path, arrays: RankingArrays, token_budget: int = 16_384, device: str = "auto"
) -> dict[str, Any]:
    """Evaluation summary (training.ranking.metrics.summarize) of a saved ranker on one split."""
    from training.ranking.metrics import summarize
    from training.ranking.train import load_ranker, predict

    model, model_cfg = load_ranker(version_dir)
    logits, labels, sessions = predict(model, arrays, model_cfg, token_budget=token_budget, device=device)
    return summarize(logits, labels, sessions)


def evaluate_candidate(
    set_path: str | Path, candidate: str | Path, conf: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Per-task AUC (and NDCG@10) of the candidate on the validation and test splits; the full summaries go
    into the candidate's metrics.json under ``eval``."""
    from training.data.ranking_data import load_ranking_arrays
    from training.ranking.train import METRICS_FILE

    run = RankingRunConfig.from_conf(conf)
    candidate = Path(candidate)
    full = {
        split: score(candidate, load_ranking_arrays(set_path, split), run.token_budget, run.device)
        for split in ("validation", "test")
    }
    doc = json.loads((candidate / METRICS_FILE).read_text())
    doc["eval"] = full
    (candidate / METRICS_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    out = {split: _small(metrics) for split, metrics in full.items()}
    log.info("candidate %s validation %s", candidate.name, out["validation"])
    return out


# --- gate


def gated_tasks(validation: RankingArrays, cfg: RankingGateConfig) -> tuple[str, ...]:
    """The tasks the gate compares on this validation split (see :class:`RankingGateConfig`)."""
    import numpy as np

    from training.ranking.features import ENGAGED_TASKS, TASKS

    tasks = cfg.tasks if cfg.tasks is not None else ("click", *(t for t in ENGAGED_TASKS if t != "click"))
    action = np.asarray(validation.tgt_action)
    chosen = []
    for task in tasks:
        positives = int(((action >> TASKS.index(task)) & 1).sum())
        enough = min(positives, len(action) - positives) >= cfg.min_positives
        if task == "click" and not enough:
            raise RankingGateFailed(
                f"cannot gate: the validation split has {positives} click positives of {len(action)} "
                f"targets (needs >= {cfg.min_positives} of each class)"
            )
        if enough or cfg.tasks is not None:
            chosen.append(task)
    return tuple(chosen)


def compare_to_current(
    candidate: Mapping[str, float | None],
    current: Mapping[str, float | None],
    tasks: tuple[str, ...],
    tolerance: float,
) -> tuple[bool, list[str], str]:
    """(passed, regressed tasks, reason): a task regresses when the candidate's validation AUC is below the
    current ranker's by more than ``tolerance`` (or is undefined where the current one's is not)."""
    regressed, parts = [], []
    for task in tasks:
        cand, cur = candidate.get(f"auc_{task}"), current.get(f"auc_{task}")
        if cur is None:
            parts.append(f"{task} {_fmt(cand)} (current undefined: not compared)")
            continue
        bad = cand is None or cand < cur - tolerance
        if bad:
            regressed.append(task)
        parts.append(f"{task} {_fmt(cand)} vs {cur:.4f}{' REGRESSED' if bad else ''}")
    ok = not regressed
    return ok, regressed, f"validation AUC (tolerance {tolerance}): " + ", ".join(parts)


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _compatible(current_cfg: GRConfig, set_cfg: GRConfig) -> str | None:
    """Why the current ranker cannot score the new set (None when it can)."""
    for name in ("item_emb_dim", "member_emb_dim"):
        old, new = getattr(current_cfg, name), getattr(set_cfg, name)
        if old != new:
            return f"{name} {old} in the current ranker vs {new} in this set (the retrieval model changed)"
    return None


def gate_candidate(
    set_path: str | Path,
    candidate: str | Path,
    evaluation: Mapping[str, Mapping[str, float | None]],
    conf: Mapping[str, Any] | None = None,
    gate: RankingGateConfig | None = None,
    *,
    settings: FeedSettings | None = None,
) -> dict[str, Any]:
    """Decide whether the candidate may replace the served ranker (module docstring). Returns the decision
    as a small dict; raises :class:`RankingGateFailed` when it may not."""
    from training.data.ranking_data import load_ranking_arrays
    from training.ranking.evaluate import fit_to_data
    from training.ranking.train import load_ranker
    from training.versions import current_version

    run = RankingRunConfig.from_conf(conf)
    gate = gate or RankingGateConfig()
    paths = _settings(settings).paths()
    validation = load_ranking_arrays(set_path, "validation")
    cand = evaluation["validation"]
    current = current_version(ranking_dir(paths))
    fallback = "no current ranker"
    if current is not None:
        current_dir = ranking_dir(paths) / current
        if not current_dir.is_dir():
            raise RankingGateFailed(f"CURRENT names {current!r} but {current_dir} does not exist")
        _, current_cfg = load_ranker(current_dir)
        why = _compatible(current_cfg, fit_to_data(run.model_config(), validation))
        if why is None:
            tasks = gated_tasks(validation, gate)
            reference = _small(score(current_dir, validation, run.token_budget, run.device))
            ok, regressed, reason = compare_to_current(cand, reference, tasks, gate.tolerance)
            decision = {"against": f"current:{current}", "tasks": list(tasks), "current": reference}
            return _decide(ok, regressed, reason, decision)
        fallback = f"current ranker {current} cannot score this set: {why}"
    return _first_gate(paths, set_path, candidate, cand, run, fallback)


def _first_gate(
    paths: FeedPaths,
    set_path: str | Path,
    candidate: str | Path,
    cand: Mapping[str, float | None],
    run: RankingRunConfig,
    fallback: str,
) -> dict[str, Any]:
    """Gate without a comparable current ranker: beat the non-sequential baseline (or chance) on click."""
    click = cand.get("auc_click")
    if run.first_gate == "chance":
        ok = click is not None and click > 0.5
        reason = f"{fallback}: validation auc_click {_fmt(click)} vs chance 0.5 → {'pass' if ok else 'fail'}"
        return _decide(ok, [] if ok else ["click"], reason, {"against": "chance", "tasks": ["click"]})
    from training.ranking.evaluate import gate

    baseline = _small(_train_baseline(set_path, Path(candidate) / BASELINE_DIR, run))
    results = {
        "gr_arm": "gr",
        "arms": {"gr": {"validation": {"auc_click": click if click is not None else float("nan")}},
                 "baseline": {"validation": baseline}},
    }  # fmt: skip
    ok, reason = gate(results, "click")  # the GR must beat the baseline (feed train eval-ranking's rule)
    decision = {"against": "baseline", "tasks": ["click"], "baseline": baseline}
    return _decide(ok, [] if ok else ["click"], f"{fallback}: {reason}", decision)


def _train_baseline(set_path: str | Path, out: Path, run: RankingRunConfig) -> dict[str, Any]:
    """The non-sequential baseline on the same train split, batches and steps; its validation summary."""
    import torch

    from training.data.ranking_data import load_ranking_arrays
    from training.ranking.evaluate import fit_to_data
    from training.ranking.train import build_model, train_ranker

    train = load_ranking_arrays(set_path, "train")
    model_cfg = fit_to_data(run.model_config(), train)
    torch.manual_seed(run.seed)
    model = build_model("AggregatedHistoryRanker", model_cfg)
    train_ranker(model, train, run.train_config(), out, model_cfg=model_cfg, progress=False)
    return score(out, load_ranking_arrays(set_path, "validation"), run.token_budget, run.device)


def _decide(ok: bool, regressed: list[str], reason: str, decision: dict[str, Any]) -> dict[str, Any]:
    if not ok:
        raise RankingGateFailed(
            f"ranking gate refused the candidate; regressed: {', '.join(regressed) or 'none'}. {reason}. "
            "CURRENT is unchanged."
        )
    log.info("ranking gate passed: %s", reason)
    return {"passed": True, "reason": reason, **decision}


# --- promote


def promote_candidate(
    candidate: str | Path, version: str, *, settings: FeedSettings | None = None
) -> dict[str, Any]:
    """Publish the gated candidate as ``artifacts/ranking/<version>`` (swapped in whole, so a served folder
    of the same version is never half-written) and point ``CURRENT`` at it (``PREVIOUS`` keeps the old)."""
    from training.ranking.evaluate import promote, publish_version
    from training.versions import current_version

    paths = _settings(settings).paths()
    root = ranking_dir(paths)
    previous = current_version(root)
    staging = f".{version}.tmp-{uuid.uuid4().hex[:8]}"
    publish_version(Path(candidate), root, staging)
    dest, old = root / version, root / f".{version}.old-{uuid.uuid4().hex[:8]}"
    if dest.exists():
        dest.rename(old)
    (root / staging).rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    promote(root, version)
    log.info("promoted ranking version %s (was %s)", version, previous)
    return {"version": version, "path": str(dest), "previous": previous}
