"""The retrieval stage end to end: training set → prompts → examples → fine-tuning → evaluation → report.

Glue over four independent parts (the training set in ``training/data``, the prompt library in
``training/prompts``, the dual encoder in ``training/retrieval/{model,train}``, the evaluation in
``training/retrieval/evaluate``). Prompt budgets always follow the encoder's token limits, so the prompt
library's "keep the newest whole history items" truncation is the only truncation a member prompt ever sees.

Evaluation candidates: for an anchor on day D, every post live at some moment of D (created in the 28 days
before, up to the end of D) rendered as of D's snapshot; the member's already engaged posts are excluded
(a feed never retrieves what a member already engaged with); exact search.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from training.prompts import PromptConfig, render_member, render_post
from training.retrieval.evaluate import (
    CandidatePool,
    EvalConfig,
    EvalCorpus,
    RankingTask,
    TextEncoder,
    run_evaluation,
    write_eval_report,
)
from training.retrieval.model import DualEncoder, EncoderConfig
from training.retrieval.profiles import get_profile
from training.retrieval.train import RetrievalExample, TrainConfig, TrainResult, train

if TYPE_CHECKING:
    import pandas as pd

    from training.data.retrieval_set import RetrievalSet

log = logging.getLogger(__name__)

History = Literal["engaged", "all"]


@dataclass(frozen=True)
class RetrievalRunConfig:
    """One retrieval experiment: which data, which prompts, which training profile, how to evaluate."""

    profile: str = "cpu"
    counts: Literal["percentile", "raw"] = "percentile"  # prompt ablation: percentile tokens vs raw counts
    history: History = "engaged"  # ablation: engaged-only histories vs every impression
    n_hard: int | None = None  # hard negatives per member (None = the profile's)
    steps: int | None = None  # optimizer steps (None = the profile's)
    seed: int = 0
    max_train_anchors: int | None = None  # None = every train anchor
    eval_split: Literal["validation", "test"] = "test"
    max_eval_anchors: int | None = 1500  # sampled (by seed) to bound CPU encoding time; None = all
    max_eval_days: int | None = None  # the LAST n days of the split (each day is its own candidate pool)
    # The untrained baseline: the shipped MiniLM with all its layers ("full") or the very stack we fine-tune
    # before any step ("same_stack", e.g. MiniLM cut to 4 layers).
    pretrained_baseline: Literal["full", "same_stack"] = "full"
    baselines: tuple[str, ...] = ("popularity", "tfidf", "bm25")
    progress: bool = True

    def __post_init__(self) -> None:
        get_profile(self.profile)  # raises on an unknown profile
        if self.counts not in ("percentile", "raw") or self.history not in ("engaged", "all"):
            raise ValueError(f"counts={self.counts!r} / history={self.history!r} not supported")


@dataclass(frozen=True)
class RunPlan:
    """The concrete configs a run resolves to (logged in metrics/report config)."""

    encoder: EncoderConfig
    train: TrainConfig
    prompt: PromptConfig

    @classmethod
    def of(cls, cfg: RetrievalRunConfig) -> RunPlan:
        preset = get_profile(cfg.profile)
        train_cfg = dataclasses.replace(
            preset.train,
            seed=cfg.seed,
            **({"steps": cfg.steps} if cfg.steps is not None else {}),
            **({"n_hard": cfg.n_hard} if cfg.n_hard is not None else {}),
        )
        prompt = PromptConfig(
            counts=cfg.counts,
            member_max_tokens=preset.encoder.max_len_member,
            post_max_tokens=preset.encoder.max_len_post,
        )
        return cls(encoder=preset.encoder, train=train_cfg, prompt=prompt)


@dataclass
class RunOutcome:
    version: str
    out_dir: Path
    train: TrainResult
    results: dict[str, dict[str, Any]]
    report: Path | None = None
    n_examples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _sample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    return frame.sample(n=limit, random_state=seed).sort_values("anchor_time")


def _renderer(rset: RetrievalSet, tokenizer: Any, prompt: PromptConfig) -> Callable[[int, Any], str]:
    """render(post_id, as_of) with a cache: the same post as of the same snapshot renders once."""
    cache: dict[tuple[int, Any], str] = {}

    def render(post_id: int, as_of: Any) -> str:
        key = (int(post_id), as_of)
        if key not in cache:
            cache[key] = render_post(rset.post(post_id, as_of), prompt, tokenizer=tokenizer)
        return cache[key]

    return render


def member_text(
    rset: RetrievalSet, row: dict[str, Any], tokenizer: Any, prompt: PromptConfig, history: History
) -> str:
    return render_member(rset.member(row), rset.history(row, history), tokenizer, prompt)


def build_examples(
    rset: RetrievalSet,
    anchors: pd.DataFrame,
    tokenizer: Any,
    prompt: PromptConfig,
    history: History,
    *,
    progress: bool = True,
) -> list[RetrievalExample]:
    """One RetrievalExample per anchor: member prompt as of the anchor, positive, hard and easy negatives as
    of the anchor's snapshot."""
    render = _renderer(rset, tokenizer, prompt)
    out = []
    for row in tqdm(anchors.to_dict("records"), desc="prompts", unit="anchor", disable=not progress):
        as_of = row["as_of"]
        out.append(
            RetrievalExample(
                member_text=member_text(rset, row, tokenizer, prompt, history),
                positive_text=render(row["positive_post_id"], as_of),
                hard_negative_texts=[render(p, as_of) for p in row["hard_negative_post_ids"]],
                easy_negative_texts=[render(p, as_of) for p in row["easy_negative_post_ids"]],
            )
        )
    return out


def build_eval_corpus(
    rset: RetrievalSet,
    anchors: pd.DataFrame,
    tokenizer: Any,
    prompt: PromptConfig,
    history: History,
    *,
    progress: bool = True,
) -> EvalCorpus:
    """Anchors grouped by snapshot day; each day's candidate pool = posts live at some moment of that day."""
    import pandas as pd

    render = _renderer(rset, tokenizer, prompt)
    days = sorted(anchors["as_of"].unique())
    pools, pool_texts = [], []
    for day in tqdm(days, desc="candidate pools", unit="day", disable=not progress):
        start = pd.Timestamp(day)
        ids = sorted(set(rset.live_posts(start)) | set(rset.live_posts(start + pd.Timedelta(days=1))))
        feats = [rset.post(p, start) for p in ids]
        pools.append(
            CandidatePool(
                post_ids=np.asarray(ids, dtype=np.int64),
                view_percentile=np.array(
                    [np.nan if f.view_percentile is None else f.view_percentile for f in feats]
                ),
                views=np.array([np.nan if f.views is None else f.views for f in feats]),
                label=f"{start:%Y-%m-%d}",
            )
        )
        pool_texts.append([render(p, start) for p in ids])
    day_index = {d: i for i, d in enumerate(days)}
    rows = anchors.to_dict("records")
    task = RankingTask(
        pools=pools,
        pool_index=np.array([day_index[r["as_of"]] for r in rows], dtype=np.int64),
        positives=anchors["positive_post_id"].to_numpy(np.int64),
        cold_start=anchors["is_cold_start"].to_numpy(bool),
        exclude=[[int(p) for p in r["engaged_history_post_ids"]] for r in rows],
    )
    texts = [
        member_text(rset, r, tokenizer, prompt, history)
        for r in tqdm(rows, desc="member prompts", unit="anchor", disable=not progress)
    ]
    return EvalCorpus(task=task, member_texts=texts, pool_texts=pool_texts)


def eval_anchors(rset: RetrievalSet, cfg: RetrievalRunConfig) -> pd.DataFrame:
    anchors = rset.anchors(cfg.eval_split)
    if cfg.max_eval_days is not None:
        days = sorted(anchors["as_of"].unique())[-cfg.max_eval_days :]
        anchors = anchors[anchors["as_of"].isin(days)]
    return _sample(anchors, cfg.max_eval_anchors, cfg.seed)


def _text_encoder(name: str, model: DualEncoder) -> TextEncoder:
    return TextEncoder(
        name=name,
        member=lambda texts: model.embed(texts, "member"),
        post=lambda texts: model.embed(texts, "post"),
    )


def pretrained_encoder(plan: RunPlan, kind: Literal["full", "same_stack"]) -> DualEncoder:
    """The encoder before any fine-tuning step (same token limits as the fine-tuned one)."""
    enc = plan.encoder if kind == "same_stack" else dataclasses.replace(plan.encoder, num_layers=None)
    return DualEncoder(dataclasses.replace(enc, freeze_layers=0))


def evaluate_models(
    rset: RetrievalSet,
    cfg: RetrievalRunConfig,
    models: dict[str, DualEncoder],
    *,
    corpus: EvalCorpus | None = None,
) -> dict[str, dict[str, Any]]:
    """Every model in ``models`` plus the baselines on the same anchors and candidate pools."""
    plan = RunPlan.of(cfg)
    if corpus is None:
        tokenizer = next(iter(models.values())).tokenizer
        corpus = build_eval_corpus(
            rset, eval_anchors(rset, cfg), tokenizer, plan.prompt, cfg.history, progress=cfg.progress
        )
    eval_cfg = EvalConfig(seed=cfg.seed, baselines=cfg.baselines, progress=cfg.progress)
    return run_evaluation(corpus, [_text_encoder(name, m) for name, m in models.items()], eval_cfg)


def write_run_report(
    rset: RetrievalSet,
    cfg: RetrievalRunConfig,
    results: dict[str, dict[str, Any]],
    *,
    model_version: str,
    extra: dict[str, Any] | None = None,
    reports_dir: Path | None = None,
) -> Path:
    """reports/retrieval_eval.{json,md}: a fine-tuned version vs the pretrained encoder and the baselines."""
    plan = RunPlan.of(cfg)
    config = {
        "run": dataclasses.asdict(cfg),
        "encoder": dataclasses.asdict(plan.encoder),
        "train": dataclasses.asdict(plan.train),
        "prompt": dataclasses.asdict(plan.prompt),
        "set": str(rset.path),
        "model_version": model_version,
        **(extra or {}),
    }
    path, _ = write_eval_report(
        results,
        config,
        notes=[
            f"eval split {cfg.eval_split}: at most {cfg.max_eval_anchors} anchors sampled (seed {cfg.seed})",
            f"pretrained baseline = shipped MiniLM, {cfg.pretrained_baseline} stack, no fine-tuning",
        ],
        reports_dir=reports_dir,
    )
    return path


def train_and_evaluate(
    rset: RetrievalSet,
    cfg: RetrievalRunConfig,
    out_dir: Path,
    *,
    evaluate_pretrained: bool = True,
    write_report: bool = False,
    reports_dir: Path | None = None,
    train_only: bool = False,
) -> RunOutcome:
    """Fine-tune one model version on the set's train split and evaluate it (and the baselines) on
    ``cfg.eval_split``. ``write_report`` writes reports/retrieval_eval.{json,md}; ``train_only`` skips the
    evaluation."""
    plan = RunPlan.of(cfg)
    # the tokenizer with the special tokens: the prompt budgets count them
    tokenizer = DualEncoder(plan.encoder).tokenizer
    train_anchors = _sample(rset.anchors("train"), cfg.max_train_anchors, cfg.seed)
    examples = build_examples(rset, train_anchors, tokenizer, plan.prompt, cfg.history, progress=cfg.progress)
    if train_only:
        result = train(examples, plan.encoder, plan.train, out_dir, progress=cfg.progress)
        return RunOutcome(out_dir.name, out_dir, result, {}, n_examples=len(examples))
    corpus = build_eval_corpus(
        rset, eval_anchors(rset, cfg), tokenizer, plan.prompt, cfg.history, progress=cfg.progress
    )
    result = train(examples, plan.encoder, plan.train, out_dir, progress=cfg.progress)
    models = {"fine_tuned": result.model}
    if evaluate_pretrained:
        models["pretrained"] = pretrained_encoder(plan, cfg.pretrained_baseline)
    results = evaluate_models(rset, cfg, models, corpus=corpus)
    outcome = RunOutcome(out_dir.name, out_dir, result, results, n_examples=len(examples))
    if write_report:
        outcome.report = write_run_report(
            rset,
            cfg,
            results,
            model_version=out_dir.name,
            extra={
                "train_examples": len(examples),
                "train_seconds": round(result.seconds, 1),
                "first_loss": result.first_loss,
                "final_loss": result.final_loss,
            },
            reports_dir=reports_dir,
        )
    return outcome


def default_version(prefix: str = "v") -> str:
    return dt.datetime.now(dt.UTC).strftime(f"{prefix}%Y%m%d-%H%M%S")


def summarize_line(results: dict[str, dict[str, Any]], names: Sequence[str]) -> str:
    """``fine_tuned 0.123 | pretrained 0.045 | …`` for Recall@10."""
    parts = []
    for name in names:
        value = results.get(name, {}).get("recall_at_10")
        parts.append(f"{name} {'–' if value is None else f'{value:.3f}'}")
    return " | ".join(parts)
