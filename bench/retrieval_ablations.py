"""Benchmark: the seed's three retrieval claims, measured on our data in one run.

``feed bench retrieval-ablations --profile cpu|gpu`` trains the dual encoder once per (arm, seed) on the same
retrieval set with the same budget (steps × batch of the profile) and evaluates each model on the same test
anchors (exact search over the posts live at each anchor's time). Five arms cover the three ablations; the
shared configuration (percentile tokens, engaged-only history, one hard negative) runs once and is reused:

* counts: raw counts vs percentile tokens → Recall@10 and the popularity–similarity correlation (Pearson and
  Spearman of a candidate's ``view_percentile`` vs its cosine with the member vector);
* hard negatives: 0 vs 1 vs 2 per member → Recall@10;
* history: all impressions vs engaged only → memory per sequence, sequences per batch at fixed memory,
  seconds per training iteration, Recall@10.

Seeds change the model's random parts (new token embeddings, dropout, negative draws, example order), the
train subsample and the eval-anchor sample — the same seed samples the same eval anchors in every arm, so
per-seed differences between arms are paired. Every figure is a mean over seeds with its sample sd; a
difference of means inside one pooled sd is flagged "within noise".

History cost, how it is measured (the same process, before the arms train):

* Memory per sequence = the activation memory one member prompt keeps for backward: the bytes of every tensor
  autograd saves during a training-mode forward (``torch.autograd.graph.saved_tensors_hooks``; storages
  counted once; weights excluded), then backward. That is the part of training memory that grows with the
  batch — weights, gradients and optimizer state do not — and it is exact, so it needs no repeats and is the
  same figure on CPU and GPU (allocator caching and other processes cannot blur it, unlike peak RSS).
* The prompt library fills the member budget with the newest whole items, so the all-impressions prompt is
  about as long as the engaged one whenever the budget binds. So memory and time are measured at three
  lengths: the profile's budget (what the benchmark's models see), a long budget (the backbone's position
  limit, 512 for MiniLM: what the GPU profile sees), and uncapped (the whole history the set holds — engaged
  posts as Feast's member_history keeps them, every impression up to the set's ``all_history_cap``). Uncapped
  prompts are longer than the backbone accepts, so their memory is a quadratic fit ``a + bL + cL²`` of the
  measured (length, bytes) points — the form transformer activations take (linear per token, attention
  scores quadratic) — and is marked as extrapolated.
* Sequences per batch at fixed memory = ``memory_budget_mb`` of activations / memory per sequence.
* Seconds per iteration = one optimizer step of a profile-sized batch, the two variants' member prompts over
  the same anchors and the same post prompts, measured interleaved (A, B, B, A, …) in one process so machine
  load hits both alike; median of the timed steps after a warm-up round.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from feed.config import REPORTS_DIR, FeedSettings

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from training.data.retrieval_set import RetrievalSet
    from training.retrieval.model import DualEncoder
    from training.retrieval.pipeline import RetrievalRunConfig, RunPlan

REPORT_NAME = "retrieval_ablations"
MB = 1e6  # report megabytes are 10^6 bytes
UNCAPPED_TOKENS = 1_000_000  # "no budget": larger than any history the set keeps
GRID_MAX_TOKENS = 2048  # longest sequence measured for the fit (decoder LLMs allow far more positions)
RUN_METRICS: tuple[str, ...] = (
    "recall_at_10",
    "recall_at_50",
    "recall_at_100",
    "ndcg_at_10",
    "cold_start_recall_at_10",
    "warm_recall_at_10",
    "corr_pearson",
    "corr_spearman",
)

# What LinkedIn reported (the seed claims), beside our numbers in every report.
LINKEDIN_CLAIMS: Mapping[str, str] = MappingProxyType(
    {
        "counts_correlation": "popularity–similarity correlation −0.004 with raw counts, ≈30× that with "
        "percentile tokens",
        "counts_recall_at_10": "+15% Recall@10 with percentile tokens over raw counts",
        "hardneg_1_recall_at_10": "+2.0% Recall@10 with 1 hard negative per member over 0",
        "hardneg_2_recall_at_10": "+3.6% Recall@10 with 2 hard negatives per member over 0",
        "history_memory": "−37% memory per sequence with engaged-only histories",
        "history_sequences_per_batch": "+40% sequences per batch at fixed memory",
        "history_iteration_time": "2.6× faster per training iteration",
        "history_recall_at_10": "quality not worse with engaged-only histories",
    }
)


@dataclass(frozen=True)
class Arm:
    """One training configuration; every arm trains with the same profile, steps and batch."""

    name: str
    counts: Literal["percentile", "raw"]
    history: Literal["engaged", "all"]
    n_hard: int


BASE_ARM = "percentile_engaged_hard1"  # shared by all three ablations, trained once per seed
ARMS: tuple[Arm, ...] = (
    Arm(BASE_ARM, "percentile", "engaged", 1),
    Arm("raw_counts", "raw", "engaged", 1),
    Arm("hardneg_0", "percentile", "engaged", 0),
    Arm("hardneg_2", "percentile", "engaged", 2),
    Arm("all_history", "percentile", "all", 1),
)


@dataclass(frozen=True)
class BenchConfig:
    """Budget of one benchmark run. ``steps`` × the profile's batch is the same for every arm."""

    profile: str  # training profile of training/retrieval/profiles.py
    seeds: tuple[int, ...]
    steps: int
    max_train_anchors: int | None  # train subsample per seed (None = all)
    max_eval_anchors: int | None  # test anchors sampled per seed (the same sample in every arm)
    max_eval_days: int | None  # the last n test days (None = the whole test window)
    long_member_tokens: int  # the long budget of the history-cost measurement (backbone position limit)
    cost_anchors: int = 64  # train anchors whose member prompts are measured for memory and tokens
    timing_steps: int = 5  # timed optimizer steps per variant and budget, after one warm-up round
    memory_budget_mb: float = 1024.0  # fixed activation memory for "sequences per batch"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.steps < 1 or self.cost_anchors < 1 or self.timing_steps < 1:
            raise ValueError("steps, cost_anchors and timing_steps must be >= 1")


# Per-profile budgets (docs/retrieval.md has the measurements). cpu: 150 steps × 16 — measured ≈ 5 s per
# step on the 2 shared cores (load ≈ 4) — ≈ 12 min of training plus ≈ 3 min of prompt rendering and
# evaluation per (arm, seed): the issue's ≈ 15-min arm budget; on quiet cores about half. gpu: the full
# backbone at 512/128 tokens, batch 64×4, every test anchor (not run here: no GPU in this session).
BENCH_PRESETS: Mapping[str, BenchConfig] = MappingProxyType(
    {
        "cpu": BenchConfig(
            profile="cpu",
            seeds=(0, 1, 2),
            steps=150,
            max_train_anchors=2400,  # = steps × batch: every sampled anchor is seen about once
            max_eval_anchors=500,
            max_eval_days=3,  # ≈ 5.6k candidate posts on tiny to render and encode per arm, not 13k
            long_member_tokens=512,
            cost_anchors=32,
            timing_steps=3,
        ),
        "gpu": BenchConfig(
            profile="gpu",
            seeds=(0, 1, 2),
            steps=300,
            max_train_anchors=None,
            max_eval_anchors=None,
            max_eval_days=None,
            long_member_tokens=512,
        ),
    }
)


def bench_config(profile: str = "cpu", seeds: int = 3, *, quick: bool = False) -> BenchConfig:
    """The preset of ``profile`` with ``seeds`` seeds; ``quick`` is the test-size micro run (profile tiny,
    3 steps, 1 seed, 50 eval anchors)."""
    if quick:
        return BenchConfig(
            profile="tiny",
            seeds=(0,),
            steps=3,
            max_train_anchors=64,
            max_eval_anchors=50,
            max_eval_days=1,
            long_member_tokens=64,
            cost_anchors=8,
            timing_steps=1,
        )
    if profile not in BENCH_PRESETS:
        raise ValueError(f"unknown bench profile {profile!r}; choose one of {sorted(BENCH_PRESETS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    return dataclasses.replace(BENCH_PRESETS[profile], seeds=tuple(range(seeds)))


def run_config(cfg: BenchConfig, arm: Arm, seed: int, *, progress: bool) -> RetrievalRunConfig:
    """The pipeline config of one (arm, seed): baselines and the pretrained encoder are not re-evaluated
    per arm (retrieval_eval.json has them); the arms differ only in the arm's three fields."""
    from training.retrieval.pipeline import RetrievalRunConfig

    return RetrievalRunConfig(
        profile=cfg.profile,
        counts=arm.counts,
        history=arm.history,
        n_hard=arm.n_hard,
        steps=cfg.steps,
        seed=seed,
        max_train_anchors=cfg.max_train_anchors,
        eval_split="test",
        max_eval_anchors=cfg.max_eval_anchors,
        max_eval_days=cfg.max_eval_days,
        baselines=(),
        progress=progress,
    )


# --- history cost: memory per sequence, tokens, time per iteration -----------------------------------------


def activation_bytes(model: DualEncoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one training-mode forward of ``input_ids``
    (B, T); each storage counted once, the model's weights excluded. Runs the backward too."""
    import torch

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in weights:
            seen[ptr] = storage.nbytes()
        return t

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            emb = model(input_ids.to(model.device), attention_mask.to(model.device))  # (B, D)
        emb.sum().backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return sum(seen.values())


def _sequence_bytes(model: DualEncoder, texts: Sequence[str]) -> list[tuple[int, int]]:
    """(tokens, activation bytes) of each member prompt, one sequence at a time (no padding)."""
    out = []
    for text in texts:
        batch = model.tokenize([text], "member")
        out.append(
            (
                int(batch["input_ids"].shape[1]),
                activation_bytes(model, batch["input_ids"], batch["attention_mask"]),
            )
        )
    return out


def _time_steps(
    model: DualEncoder, examples: Mapping[str, Sequence[Any]], batch_size: int, rounds: int, train_cfg: Any
) -> dict[str, list[float]]:
    """Seconds per optimizer step of each variant's examples, interleaved; the first round is a warm-up."""
    import torch

    from training.retrieval.train import batch_loss, make_batch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train_cfg.lr)
    model.train()
    names = list(examples)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):
        order = names if r % 2 == 0 else names[::-1]  # A B, B A, …: neither variant always runs first
        for name in order:
            chunk = examples[name][(r * batch_size) % len(examples[name]) :][:batch_size]
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            batch_loss(model, make_batch(chunk, train_cfg, gen), train_cfg).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if r:
                seconds[name].append(time.perf_counter() - t0)
    return seconds


def _fit_bytes(
    points: Sequence[tuple[int, int]],
) -> tuple[Callable[[float], float], Callable[[float], float], float]:
    """Least-squares ``a + bL + cL²`` through (tokens, bytes) points → (predict, its linear part ``a + bL``,
    max relative residual). The quadratic term is the attention scores an eager attention keeps; a
    memory-efficient kernel (flash / SDPA on GPU) keeps only about the linear part."""
    import numpy as np

    lengths = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    degree = min(2, len(set(lengths.tolist())) - 1)
    coef = np.polyfit(lengths, values, degree)
    residual = float(np.max(np.abs(np.polyval(coef, lengths) - values) / values))
    linear = coef[-2:] if degree == 2 else coef
    return (lambda n: float(np.polyval(coef, n))), (lambda n: float(np.polyval(linear, n))), residual


def _distribution(values: Sequence[float]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return {
        "mean": round(float(arr.mean()), 1),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "max": float(arr.max()),
    }


def _cost_anchors(rset: RetrievalSet, cfg: BenchConfig, batch_size: int) -> pd.DataFrame:
    """Train anchors for the cost measurement: enough for the timed batches, sampled with seed 0."""
    anchors = rset.anchors("train")
    n = min(len(anchors), max(cfg.cost_anchors, batch_size * (cfg.timing_steps + 1)))
    return anchors.sample(n=n, random_state=0).sort_values("anchor_time")


def _budget_costs(
    rset: RetrievalSet, anchors: pd.DataFrame, cfg: BenchConfig, model: DualEncoder, plan: RunPlan
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """At ``model``'s member budget: tokens and activation bytes per member prompt (``cost_anchors`` of
    them) and side-by-side seconds per optimizer step, engaged vs all-impression histories. Also returns the
    measured (tokens, bytes) points and times prompt rendering (for the run-time estimate)."""
    from training.retrieval.pipeline import build_examples

    member_tokens = model.config.max_len_member
    prompt = dataclasses.replace(plan.prompt, member_max_tokens=member_tokens)
    t0 = time.perf_counter()
    examples = {
        h: build_examples(rset, anchors, model.tokenizer, prompt, h, progress=False)
        for h in ("engaged", "all")
    }
    out: dict[str, Any] = {
        "member_tokens": member_tokens,
        "render_seconds_per_anchor": (time.perf_counter() - t0) / (2 * len(anchors)),
        "variants": {},
    }
    points: list[tuple[int, int]] = []
    for history, rows in examples.items():
        measured = _sequence_bytes(model, [ex.member_text for ex in rows[: cfg.cost_anchors]])
        points += measured
        out["variants"][history] = {
            "tokens": _distribution([t for t, _ in measured]),
            "memory_per_seq_mb": statistics.fmean(b for _, b in measured) / MB,
        }
    seconds = _time_steps(model, examples, plan.train.batch_size, cfg.timing_steps, plan.train)
    for history, values in seconds.items():
        out["variants"][history]["iter_seconds"] = statistics.median(values)
        out["variants"][history]["iter_seconds_all_steps"] = [round(v, 4) for v in values]
    posts = [ex.positive_text for ex in examples["engaged"]]
    t0 = time.perf_counter()
    model.embed(posts, "post")
    out["encode_posts_per_second"] = len(posts) / (time.perf_counter() - t0)
    return out, points


def _uncapped_prompts(
    rset: RetrievalSet, anchors: pd.DataFrame, cfg: BenchConfig, tokenizer: Any, plan: RunPlan
) -> dict[str, list[str]]:
    """Member prompts with no token budget and no item cap: the whole history the set keeps."""
    from training.retrieval.pipeline import member_text

    prompt = dataclasses.replace(
        plan.prompt, member_max_tokens=UNCAPPED_TOKENS, history_max_items=UNCAPPED_TOKENS
    )
    rows = anchors.head(cfg.cost_anchors).to_dict("records")
    return {h: [member_text(rset, row, tokenizer, prompt, h) for row in rows] for h in ("engaged", "all")}


def _grid_points(model: DualEncoder, text: str) -> list[tuple[int, int]]:
    """(tokens, activation bytes) of ``text`` cut to 16, 32, … tokens up to the backbone's position limit:
    the range the uncapped extrapolation is fitted on."""
    limit = min(int(getattr(model.backbone.config, "max_position_embeddings", 512)), GRID_MAX_TOKENS)
    points = []
    for length in sorted({*(2**i for i in range(4, 12) if 2**i < limit), limit}):
        batch = model.tokenizer([text], truncation=True, max_length=length, return_tensors="pt")
        n = int(batch["input_ids"].shape[1])
        points.append((n, activation_bytes(model, batch["input_ids"], batch["attention_mask"])))
    return points


def measure_history_costs(rset: RetrievalSet, cfg: BenchConfig) -> dict[str, Any]:
    """Engaged vs all-impression member histories: tokens, activation MB per sequence and sequences per batch
    at ``memory_budget_mb`` (profile budget, long budget, uncapped), seconds per iteration (profile and long
    budget). See the module docstring for the method."""
    from training.prompts import count_tokens
    from training.retrieval.model import DualEncoder
    from training.retrieval.pipeline import RunPlan

    plan = RunPlan.of(run_config(cfg, ARMS[0], 0, progress=False))
    anchors = _cost_anchors(rset, cfg, plan.train.batch_size)
    budgets = {"profile": plan.prompt.member_max_tokens}
    if cfg.long_member_tokens > budgets["profile"]:
        budgets["long"] = cfg.long_member_tokens
    costs: dict[str, Any] = {}
    points: list[tuple[int, int]] = []
    for name, tokens in budgets.items():
        model = DualEncoder(dataclasses.replace(plan.encoder, max_len_member=tokens))
        costs[name], measured = _budget_costs(rset, anchors, cfg, model, plan)
        points += measured
    prompts = _uncapped_prompts(rset, anchors, cfg, model.tokenizer, plan)
    points += _grid_points(model, max(prompts["all"], key=len))
    predict, linear, residual = _fit_bytes(points)
    uncapped: dict[str, Any] = {"member_tokens": None, "extrapolated": True, "variants": {}}
    for history, texts in prompts.items():
        lengths = [count_tokens(model.tokenizer, t) for t in texts]
        uncapped["variants"][history] = {
            "tokens": _distribution(lengths),
            "memory_per_seq_mb": statistics.fmean(predict(n) for n in lengths) / MB,
            "memory_per_seq_linear_attention_mb": statistics.fmean(linear(n) for n in lengths) / MB,
        }
    costs["uncapped"] = uncapped
    for budget in costs.values():
        for v in budget["variants"].values():
            v["sequences_per_batch"] = round(cfg.memory_budget_mb / v["memory_per_seq_mb"], 2)
    return {
        "budgets": costs,
        "fit": {"points": sorted(set(points)), "max_relative_residual": residual},
        "anchors": len(anchors),
        "memory_budget_mb": cfg.memory_budget_mb,
    }


# --- arms ---------------------------------------------------------------------------------------------------


def _set_fingerprint(rset: RetrievalSet) -> str:
    return hashlib.sha256((rset.path / "build_report.json").read_bytes()).hexdigest()[:16]


def _run_arm(rset: RetrievalSet, run_cfg: RetrievalRunConfig, work: Path) -> dict[str, Any]:
    """Train and evaluate one (arm, seed); the model version is written to a temporary folder and dropped
    (only its metrics are kept: 15 MiniLM versions would cost gigabytes)."""
    from training.retrieval.pipeline import train_and_evaluate

    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        outcome = train_and_evaluate(rset, run_cfg, Path(tmp) / "model", evaluate_pretrained=False)
    metrics = outcome.results["fine_tuned"]
    result = {k: metrics.get(k) for k in RUN_METRICS}
    train = outcome.train
    result |= {
        "n_evaluated": metrics.get("n_evaluated"),
        "first_loss": train.first_loss,
        "final_loss": train.final_loss,
        "train_seconds": round(train.seconds, 2),
        "iter_seconds": train.seconds / max(1, train.step),
        "examples_per_second": train.examples_per_second,
        "seconds": round(time.perf_counter() - began, 2),
    }
    del outcome
    gc.collect()
    return result


def run_arms(
    rset: RetrievalSet, cfg: BenchConfig, work: Path, *, reuse_runs: bool, progress: bool
) -> dict[str, list[dict[str, Any]]]:
    """Every arm × seed → ``{arm: [metrics per seed]}``. A finished (arm, seed) is cached under ``work``
    with its config and the set's fingerprint, so an interrupted multi-hour run continues where it
    stopped (``reuse_runs=False`` retrains everything)."""
    fingerprint = _set_fingerprint(rset)
    out: dict[str, list[dict[str, Any]]] = {}
    for arm in ARMS:
        out[arm.name] = []
        for seed in cfg.seeds:
            run_cfg = run_config(cfg, arm, seed, progress=progress)
            key = {"run": dataclasses.asdict(run_cfg) | {"progress": None}, "set": fingerprint}
            cache = work / "runs" / f"{cfg.profile}-{arm.name}-seed{seed}.json"
            cached = json.loads(cache.read_text()) if reuse_runs and cache.is_file() else None
            if cached is not None and cached.get("key") == json.loads(json.dumps(key, default=str)):
                metrics = cached["metrics"]
            else:
                print(f"[{arm.name} seed {seed}] training {cfg.steps} steps ({cfg.profile} profile)")
                metrics = _run_arm(rset, run_cfg, work)
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"key": key, "metrics": metrics}, default=str, indent=1))
            print(f"[{arm.name} seed {seed}] Recall@10 {_fmt(metrics['recall_at_10'])}")
            out[arm.name].append({"seed": seed, **metrics})
    return out


# --- statistics ---------------------------------------------------------------------------------------------


def mean_sd(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample sd (None with fewer than two values) of the measured values (None = not measured)."""
    got = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {
        "mean": statistics.fmean(got) if got else None,
        "sd": statistics.stdev(got) if len(got) > 1 else None,
        "n": len(got),
        "values": [None if v is None else float(v) for v in values],
    }


def compare(baseline: Sequence[float | None], treatment: Sequence[float | None]) -> dict[str, Any]:
    """Treatment vs baseline over seeds: difference of means, relative change, the sd of the paired per-seed
    differences, and ``within_noise`` = |difference| ≤ the pooled sd of the two arms (None when either arm
    has fewer than two seeds: no noise estimate)."""
    a, b = mean_sd(baseline), mean_sd(treatment)
    if a["mean"] is None or b["mean"] is None:
        return {"delta": None, "relative": None, "paired_sd": None, "within_noise": None}
    delta = b["mean"] - a["mean"]
    pairs = [y - x for x, y in zip(baseline, treatment, strict=True) if x is not None and y is not None]
    pooled = (
        math.sqrt((a["sd"] ** 2 + b["sd"] ** 2) / 2) if a["sd"] is not None and b["sd"] is not None else None
    )
    return {
        "delta": delta,
        "relative": delta / abs(a["mean"]) if a["mean"] else None,
        "paired_sd": statistics.stdev(pairs) if len(pairs) > 1 else None,
        "within_noise": None if pooled is None else abs(delta) <= pooled,
    }


def verdict(comparison: Mapping[str, Any], expected_sign: int) -> str:
    """ "agrees" / "disagrees" with the seed's direction, "within noise", or "no noise estimate" (1 seed)."""
    if comparison["delta"] is None:
        return "not measured"
    if comparison["within_noise"] is None:
        return "no noise estimate (1 seed)"
    if comparison["within_noise"]:
        return "within noise"
    return "agrees" if comparison["delta"] * expected_sign > 0 else "disagrees"


def _column(runs: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    return [r.get(key) for r in runs]


def _comparisons(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The seed claims as (baseline arm, treatment arm, metric, expected sign)."""
    plan = {
        "counts_correlation_pearson": ("raw_counts", BASE_ARM, "corr_pearson", +1),
        "counts_correlation_spearman": ("raw_counts", BASE_ARM, "corr_spearman", +1),
        "counts_recall_at_10": ("raw_counts", BASE_ARM, "recall_at_10", +1),
        "hardneg_1_recall_at_10": ("hardneg_0", BASE_ARM, "recall_at_10", +1),
        "hardneg_2_recall_at_10": ("hardneg_0", "hardneg_2", "recall_at_10", +1),
        "hardneg_2_vs_1_recall_at_10": (BASE_ARM, "hardneg_2", "recall_at_10", +1),
        # "not worse": engaged-only must not lose to all impressions
        "history_recall_at_10": ("all_history", BASE_ARM, "recall_at_10", +1),
    }
    out = {}
    for name, (base, treat, metric, sign) in plan.items():
        c = compare(_column(runs[base], metric), _column(runs[treat], metric))
        out[name] = {"baseline": base, "treatment": treat, "metric": metric, **c, "verdict": verdict(c, sign)}
    # "not worse" holds unless engaged is worse outside the noise
    hist = out["history_recall_at_10"]
    if hist["verdict"] == "disagrees":
        hist["verdict"] = "disagrees (engaged-only worse)"
    elif hist["verdict"] in ("agrees", "within noise"):
        hist["verdict"] = f"agrees (not worse; {hist['verdict']})"
    return out


def _history_claims(costs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Engaged vs all ratios per budget (deterministic memory; median step times)."""
    out: dict[str, dict[str, Any]] = {}
    for budget, c in costs["budgets"].items():
        e, a = c["variants"]["engaged"], c["variants"]["all"]
        row = {
            "memory_change": e["memory_per_seq_mb"] / a["memory_per_seq_mb"] - 1,
            "sequences_per_batch_change": e["sequences_per_batch"] / a["sequences_per_batch"] - 1,
        }
        if "memory_per_seq_linear_attention_mb" in e:
            row["memory_change_linear_attention"] = (
                e["memory_per_seq_linear_attention_mb"] / a["memory_per_seq_linear_attention_mb"] - 1
            )
        if "iter_seconds" in e:
            row["speedup"] = a["iter_seconds"] / e["iter_seconds"]
        out[budget] = row
    return out


# --- report -------------------------------------------------------------------------------------------------


def _mean(runs: Mapping[str, Sequence[Mapping[str, Any]]], arm: str, key: str) -> float | None:
    return mean_sd(_column(runs[arm], key))["mean"]


def build_summary(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], costs: Mapping[str, Any]
) -> dict[str, Any]:
    """The contract keys (means over seeds; memory and iteration time at the profile's budget, the one the
    arms trained with) plus the long-budget and uncapped history costs."""
    budgets = costs["budgets"]
    prof = budgets["profile"]["variants"]
    summary: dict[str, Any] = {
        "corr_raw": _mean(runs, "raw_counts", "corr_pearson"),
        "corr_percentile": _mean(runs, BASE_ARM, "corr_pearson"),
        "recall_at_10_raw": _mean(runs, "raw_counts", "recall_at_10"),
        "recall_at_10_percentile": _mean(runs, BASE_ARM, "recall_at_10"),
        "recall_at_10_hardneg_0": _mean(runs, "hardneg_0", "recall_at_10"),
        "recall_at_10_hardneg_1": _mean(runs, BASE_ARM, "recall_at_10"),
        "recall_at_10_hardneg_2": _mean(runs, "hardneg_2", "recall_at_10"),
        "memory_per_seq_all_mb": prof["all"]["memory_per_seq_mb"],
        "memory_per_seq_engaged_mb": prof["engaged"]["memory_per_seq_mb"],
        "iter_seconds_all": prof["all"]["iter_seconds"],
        "iter_seconds_engaged": prof["engaged"]["iter_seconds"],
        "recall_at_10_all_history": _mean(runs, "all_history", "recall_at_10"),
        "recall_at_10_engaged_history": _mean(runs, BASE_ARM, "recall_at_10"),
        "corr_raw_spearman": _mean(runs, "raw_counts", "corr_spearman"),
        "corr_percentile_spearman": _mean(runs, BASE_ARM, "corr_spearman"),
        "sequences_per_batch_all": prof["all"]["sequences_per_batch"],
        "sequences_per_batch_engaged": prof["engaged"]["sequences_per_batch"],
    }
    for budget in ("long", "uncapped"):
        if budget not in budgets:
            continue
        for history in ("all", "engaged"):
            v = budgets[budget]["variants"][history]
            summary[f"memory_per_seq_{history}_{budget}_mb"] = v["memory_per_seq_mb"]
            if "iter_seconds" in v:
                summary[f"iter_seconds_{history}_{budget}"] = v["iter_seconds"]
    summary["seeds"] = len(next(iter(runs.values())))
    return summary


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pm(stats: Mapping[str, Any], digits: int = 4) -> str:
    if stats["mean"] is None:
        return "–"
    sd = "" if stats["sd"] is None else f" ± {stats['sd']:.{digits}f}"
    return f"{stats['mean']:.{digits}f}{sd}"


# comparison name → the LinkedIn claim it tests (LINKEDIN_CLAIMS key)
CLAIM_OF: Mapping[str, str] = MappingProxyType(
    {
        "counts_correlation_pearson": "counts_correlation",
        "counts_correlation_spearman": "counts_correlation",
        "counts_recall_at_10": "counts_recall_at_10",
        "hardneg_1_recall_at_10": "hardneg_1_recall_at_10",
        "hardneg_2_recall_at_10": "hardneg_2_recall_at_10",
        "history_recall_at_10": "history_recall_at_10",
    }
)


def _arms_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    lines = [
        "| arm | counts | history | hard neg. | Recall@10 | NDCG@10 | pop–sim Pearson | pop–sim Spearman "
        "| per-seed Recall@10 |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for arm in ARMS:
        r = runs[arm.name]
        per_seed = ", ".join(_fmt(v) for v in _column(r, "recall_at_10"))
        keys = ("recall_at_10", "ndcg_at_10", "corr_pearson", "corr_spearman")
        cells = " | ".join(_pm(mean_sd(_column(r, k))) for k in keys)
        lines.append(f"| {arm.name} | {arm.counts} | {arm.history} | {arm.n_hard} | {cells} | {per_seed} |")
    return lines


def _claims_table(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], comparisons: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    lines = [
        "| treatment vs baseline | metric | baseline | treatment | Δ (relative) | LinkedIn | verdict |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name, c in comparisons.items():
        base = _pm(mean_sd(_column(runs[c["baseline"]], c["metric"])))
        treat = _pm(mean_sd(_column(runs[c["treatment"]], c["metric"])))
        rel = "" if c["relative"] is None else f" ({c['relative']:+.1%})"
        delta = "–" if c["delta"] is None else f"{c['delta']:+.4f}{rel}"
        claim = LINKEDIN_CLAIMS.get(CLAIM_OF.get(name, ""), "–")
        lines.append(
            f"| {c['treatment']} vs {c['baseline']} | {c['metric']} | {base} | {treat} | {delta} | {claim} "
            f"| {c['verdict']} |"
        )
    return lines


def _costs_table(costs: Mapping[str, Any], history: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "| budget (tokens) | history | tokens mean / p90 | MB per seq | seqs per batch | s per iter |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for budget, c in costs["budgets"].items():
        for h in ("engaged", "all"):
            v = c["variants"][h]
            mem = f"{v['memory_per_seq_mb']:.3f}"
            if "memory_per_seq_linear_attention_mb" in v:
                mem += f" (linear-attention {v['memory_per_seq_linear_attention_mb']:.3f})"
            lines.append(
                f"| {budget} ({c['member_tokens'] or 'none'}) | {h} | {v['tokens']['mean']:.0f} / "
                f"{v['tokens']['p90']:.0f} | {mem} | {v['sequences_per_batch']:.1f} | "
                f"{_fmt(v.get('iter_seconds'), 3)} |"
            )
        r = history[budget]
        speed = f"{r['speedup']:.2f}× faster (LinkedIn 2.6×)" if "speedup" in r else ""
        mem = f"{r['memory_change']:+.1%}"
        if "memory_change_linear_attention" in r:
            mem += f" ({r['memory_change_linear_attention']:+.1%})"
        lines.append(
            f"| **{budget}: engaged vs all** | | | {mem} (LinkedIn −37%) | "
            f"{r['sequences_per_batch_change']:+.1%} (LinkedIn +40%) | {speed} |"
        )
    return lines


def markdown(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    comparisons: Mapping[str, Mapping[str, Any]],
    costs: Mapping[str, Any],
    history: Mapping[str, Mapping[str, Any]],
    header: Mapping[str, Any],
) -> str:
    """Three tables: per-arm quality (mean ± sd and per-seed), the claims vs ours with a verdict, and the
    history costs per budget."""
    lines = [
        "# Retrieval ablations: the seed's claims on our data",
        "",
        f"Device: {header['device']} · profile `{header['profile']}` · {header['seeds']} seed(s) · "
        f"{header['steps']} steps per arm · set `{header['set']}`. Mean ± sample sd over seeds; a "
        "difference inside one pooled sd is *within noise*. Test split, exact search over the posts live at "
        "each anchor's time.",
        "",
        *_arms_table(runs),
        "",
        *_claims_table(runs, comparisons),
        "",
        "History cost, engaged vs all impressions (activation memory per member sequence, exact; "
        f"sequences per {costs['memory_budget_mb']:.0f} MB of activations; seconds per optimizer step, the "
        "two variants interleaved in one process, median; uncapped memory extrapolated by a quadratic fit, "
        "with its linear part — what a memory-efficient attention kernel would keep — in brackets):",
        "",
        *_costs_table(costs, history),
    ]
    return "\n".join(lines) + "\n"


def _cost_panels(mem_ax: Any, time_ax: Any, costs: Mapping[str, Any]) -> None:
    """Memory per sequence at every budget (log scale) and step time at the timed budgets (± spread)."""
    budgets = costs["budgets"]
    names = list(budgets)
    timed = [b for b in names if "iter_seconds" in budgets[b]["variants"]["engaged"]]
    width = 0.38
    for i, h in enumerate(("engaged", "all")):
        shift = (i - 0.5) * width
        mem = [budgets[b]["variants"][h]["memory_per_seq_mb"] for b in names]
        mem_ax.bar([j + shift for j in range(len(names))], mem, width, label=h)
        steps = [budgets[b]["variants"][h]["iter_seconds_all_steps"] for b in timed]
        time_ax.bar(
            [j + shift for j in range(len(timed))],
            [statistics.median(s) for s in steps],
            width,
            yerr=[statistics.pstdev(s) for s in steps],
            capsize=4,
            label=h,
        )
    mem_ax.set_yscale("log")  # uncapped histories are orders of magnitude above the budgets
    for ax, shown, ylabel, name in (
        (mem_ax, names, "MB per member sequence (log)", "activation memory (uncapped: extrapolated)"),
        (time_ax, timed, "seconds per optimizer step", "training iteration time (median ± sd)"),
    ):
        ax.set_xticks(
            range(len(shown)), [f"{b} ({budgets[b]['member_tokens'] or '∞'} tokens)" for b in shown]
        )
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=8)


def plot(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], costs: Mapping[str, Any], out: Path, title: str
) -> None:
    """Four panels with sd error bars over seeds (memory is exact, step times show their spread)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def bars(ax: Any, labels: list[str], stats: list[dict[str, Any]], ylabel: str, name: str) -> None:
        means = [s["mean"] if s["mean"] is not None else 0.0 for s in stats]
        errs = [s["sd"] or 0.0 for s in stats]
        ax.bar(labels, means, yerr=errs, capsize=4, color="#4c72b0")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=20)

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    recall = {a.name: mean_sd(_column(runs[a.name], "recall_at_10")) for a in ARMS}
    corr = [mean_sd(_column(runs[a], "corr_pearson")) for a in ("raw_counts", BASE_ARM)]
    bars(axes[0, 0], ["raw counts", "percentile"], corr, "Pearson(view pct, cosine)", "popularity–similarity")
    order = ["raw_counts", BASE_ARM, "hardneg_0", "hardneg_2", "all_history"]
    labels = ["raw", "pct·eng·hn1", "hn0", "hn2", "all hist."]
    bars(axes[0, 1], labels, [recall[a] for a in order], "Recall@10", "Recall@10 per arm (test)")
    _cost_panels(axes[1, 0], axes[1, 1], costs)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _estimate(rset: RetrievalSet, cfg: BenchConfig, costs: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per (arm, seed) and in total, from the rates the cost phase measured: optimizer steps +
    prompt rendering (train anchors, eval anchors, candidate pools) + encoding the eval texts + ≈ 10 s of
    model loading. Machine load moves every term alike; on a shared 2-core machine expect ±50%."""
    import pandas as pd

    from training.retrieval.pipeline import eval_anchors

    prof = costs["budgets"]["profile"]
    step = statistics.fmean(v["iter_seconds"] for v in prof["variants"].values())
    n_train = len(rset.anchors("train"))
    if cfg.max_train_anchors is not None:
        n_train = min(n_train, cfg.max_train_anchors)
    evaluated = eval_anchors(rset, run_config(cfg, ARMS[0], cfg.seeds[0], progress=False))
    pool_posts = 0
    for day in evaluated["as_of"].unique():
        start = pd.Timestamp(day)
        pool_posts += len(set(rset.live_posts(start)) | set(rset.live_posts(start + pd.Timedelta(days=1))))
    render = prof["render_seconds_per_anchor"] * (n_train + len(evaluated) + pool_posts / 4)
    encode = (len(evaluated) + pool_posts) / prof["encode_posts_per_second"]
    per_run = step * cfg.steps + render + encode + 10.0
    return {
        "per_run_seconds": round(per_run, 1),
        "train_seconds": round(step * cfg.steps, 1),
        "render_seconds": round(render, 1),
        "encode_seconds": round(encode, 1),
        "eval_anchors": len(evaluated),
        "eval_pool_posts": pool_posts,
        "total_seconds": round(per_run * len(ARMS) * len(cfg.seeds), 1),
    }


def run(
    settings: FeedSettings,
    profile: str = "cpu",
    seeds: int = 3,
    set_name: str = "default",
    quick: bool = False,
    *,
    reports_dir: Path = REPORTS_DIR,
    reuse_runs: bool = True,
) -> Path:
    """Run the three ablations on the retrieval set ``set_name`` (build it first with
    ``feed train build-retrieval-set``) and write reports/bench/retrieval_ablations.{json,md,png}.
    ``quick`` is the test-size micro run."""
    from feed.reports import device_name, write_report
    from training.data.retrieval_set import RetrievalSet, RetrievalSetError, set_dir

    cfg = bench_config(profile, seeds, quick=quick)
    paths = settings.paths()
    where = set_dir(paths, set_name)
    if not where.is_dir():
        raise RetrievalSetError(
            f"no retrieval set {set_name!r} at {where}: build it first "
            f"(feed train build-retrieval-set --name {set_name})"
        )
    rset = RetrievalSet.load(where)
    work = paths.artifacts / "bench" / REPORT_NAME
    began = time.perf_counter()
    costs = measure_history_costs(rset, cfg)
    estimate = _estimate(rset, cfg, costs)
    print(
        f"retrieval ablations: {len(ARMS)} arms × {len(cfg.seeds)} seeds, {cfg.steps} steps each "
        f"({cfg.profile} profile); estimated ≈ {estimate['per_run_seconds'] / 60:.1f} min per arm and seed, "
        f"≈ {estimate['total_seconds'] / 60:.0f} min in total (history costs took "
        f"{time.perf_counter() - began:.0f} s)"
    )
    runs = run_arms(rset, cfg, work, reuse_runs=reuse_runs, progress=not quick)
    comparisons = _comparisons(runs)
    history = _history_claims(costs)
    device = device_name()
    config = dataclasses.asdict(cfg) | {"set": str(rset.path), "arms": [dataclasses.asdict(a) for a in ARMS]}
    details = {
        "arms": {
            name: {"per_seed": r, **{k: mean_sd(_column(r, k)) for k in (*RUN_METRICS, "iter_seconds")}}
            for name, r in runs.items()
        },
        "comparisons": comparisons,
        "history_costs": costs,
        "history_claims": history,
        "linkedin_claims": dict(LINKEDIN_CLAIMS),
        "estimate": estimate,
        "seconds": round(time.perf_counter() - began, 1),
        "figures_device": device,
    }
    notes = [
        f"all figures measured on {device}",
        "memory_per_seq_*_mb and iter_seconds_* are at the profile's member budget "
        f"({costs['budgets']['profile']['member_tokens']} tokens), where the prompt library fills the budget "
        "with the newest whole items for both variants; *_long_* and *_uncapped_* show the cost when the "
        "budget does not bind (uncapped memory extrapolated by a quadratic fit, see details.history_costs)",
        "recall/correlation summary values are means over seeds; sd and per-seed values under details.arms; "
        "a difference inside one pooled sd is flagged within noise in details.comparisons",
        "LinkedIn's percentages are read as relative changes; details.comparisons has absolute and relative",
    ]
    if len(cfg.seeds) < 2:
        notes.append("one seed only: no noise estimate, verdicts say so")
    summary = build_summary(runs, costs)
    out = write_report(REPORT_NAME, summary, config, notes=notes, details=details, reports_dir=reports_dir)
    header = {"device": device, "profile": cfg.profile, "seeds": len(cfg.seeds), "steps": cfg.steps}
    out.with_suffix(".md").write_text(
        markdown(runs, comparisons, costs, history, header | {"set": rset.path.name})
    )
    title = f"Retrieval ablations ({cfg.profile} profile, {len(cfg.seeds)} seed(s)) — {device}"
    plot(runs, costs, out.with_suffix(".png"), title)
    return out
