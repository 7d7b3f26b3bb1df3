"""Train the retrieval dual encoder: AdamW, warmup + cosine decay, gradient accumulation, bf16 on CUDA,
DDP-ready (``torchrun``), checkpoints with resume, tqdm progress, ``metrics.json``.

Layout of one model version (DESIGN.md "Models"), ``out_dir = artifacts/retrieval/<version>/``::

    backbone/         HF weights (safetensors) + HF config + tokenizer files (special tokens included)
    config.json       our EncoderConfig + TrainConfig
    metrics.json      loss curve, throughput, eval metrics
    checkpoints/      step_XXXXXXX.pt: model + optimizer + scheduler + step + RNG (for resume; last few kept)

``artifacts/retrieval/CURRENT`` is written only by :func:`promote`, after a quality gate — never by training.

Determinism (what makes resume exact): the example order of micro-batch u is a function of (seed, epoch(u))
via ``DistributedSampler``; the negatives drawn for it use a generator seeded with (seed, u, rank); dropout
uses the global torch RNG, which the checkpoint saves and restores. So 4 steps + resume to 8 equals 8 steps
straight.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.retrieval.loss import info_nce
from training.retrieval.model import BACKBONE_DIR, CONFIG_FILE, DualEncoder, EncoderConfig
from training.versions import write_current

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class RetrievalExample:
    """One training anchor rendered to text: the member prompt, its engaged post, and negatives."""

    member_text: str
    positive_text: str
    hard_negative_texts: list[str] = field(default_factory=list)
    easy_negative_texts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600  # optimizer steps
    batch_size: int = 16  # examples per micro-batch per process (= the in-batch negative pool)
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 30  # linear warmup, then cosine decay to min_lr_ratio × lr
    min_lr_ratio: float = 0.1
    temperature: float = (
        0.05  # τ of InfoNCE; 0.05 is the usual value for cosine-similarity contrastive models
    )
    n_hard: int = 1  # hard negatives per member (fewer when an anchor has fewer; masked out)
    n_easy: int = 1  # random easy negatives per member
    share_negatives: bool = True  # every member also scores the other members' explicit negatives
    max_grad_norm: float = 1.0
    bf16: bool = False  # autocast to bfloat16; only takes effect on CUDA
    checkpoint_every: int = 100  # 0 = only at the end (and when stopped)
    keep_checkpoints: int = 2
    eval_every: int = 0  # 0 = eval_fn only at the end
    seed: int = 0
    device: str = "auto"  # "auto" = cuda:<local rank> when available, else cpu

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be ≥ 1")
        if self.n_hard < 0 or self.n_easy < 0 or self.temperature <= 0:
            raise ValueError("n_hard and n_easy must be ≥ 0 and temperature > 0")


@dataclass
class TrainResult:
    out_dir: Path
    step: int  # optimizer steps done
    completed: bool  # False when stopped early (stop_after); the model version is written only when True
    loss_history: list[float]
    seconds: float
    examples_per_second: float
    eval_metrics: dict[str, Any]
    model: DualEncoder = field(repr=False)

    @property
    def first_loss(self) -> float:
        return self.loss_history[0] if self.loss_history else math.nan

    @property
    def final_loss(self) -> float:
        return self.loss_history[-1] if self.loss_history else math.nan


# --------------------------------------------------------------------------------------------------- input


class ExampleError(ValueError):
    """A malformed line in an examples JSONL file (names the file and line)."""


def load_examples(path: Path) -> tuple[list[RetrievalExample], dict[str, int]]:
    """Read a JSONL file of RetrievalExample dicts → (examples, skipped counts by reason).

    Malformed lines (not UTF-8, not JSON, missing or mistyped fields) raise :class:`ExampleError` naming the
    line; examples with an empty member or positive text are skipped and counted (an empty profile with no
    history has nothing to learn from)."""
    examples: list[RetrievalExample] = []
    skipped = {"empty_member_text": 0, "empty_positive_text": 0}
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            ex = _parse_example(raw, f"{path}:{lineno}")
            if not ex.member_text.strip():
                skipped["empty_member_text"] += 1
            elif not ex.positive_text.strip():
                skipped["empty_positive_text"] += 1
            else:
                examples.append(ex)
    return examples, skipped


def _parse_example(raw: bytes, where: str) -> RetrievalExample:
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ExampleError(f"{where}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ExampleError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ExampleError(f"{where}: expected a JSON object")
    for key in ("member_text", "positive_text"):
        if not isinstance(row.get(key), str):
            raise ExampleError(f"{where}: field {key!r} must be a string")
    for key in ("hard_negative_texts", "easy_negative_texts"):
        value = row.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ExampleError(f"{where}: field {key!r} must be a list of strings")
    return RetrievalExample(
        member_text=row["member_text"],
        positive_text=row["positive_text"],
        hard_negative_texts=list(row.get("hard_negative_texts", [])),
        easy_negative_texts=list(row.get("easy_negative_texts", [])),
    )


@dataclass(frozen=True)
class Batch:
    """Texts of one micro-batch plus the layout of its explicit negatives."""

    member_texts: list[str]  # (B,)
    positive_texts: list[str]  # (B,)
    negative_texts: list[str]  # the existing negatives, flattened
    negative_slots: torch.Tensor  # (N,) flat index b*K + k of each negative text
    negative_mask: torch.Tensor  # (B, K) bool
    post_ids: torch.Tensor  # (B, 1+K) identity of each post by text (false-negative masking)


def make_batch(examples: Sequence[RetrievalExample], cfg: TrainConfig, generator: torch.Generator) -> Batch:
    """Draw ``n_hard`` hard and ``n_easy`` easy negatives per example (fewer if it has fewer; masked)."""
    k = cfg.n_hard + cfg.n_easy
    b = len(examples)
    ids: dict[str, int] = {}
    post_ids = torch.full((b, 1 + k), -1, dtype=torch.long)  # -1 never equals a real id
    mask = torch.zeros(b, k, dtype=torch.bool)
    neg_texts: list[str] = []
    slots: list[int] = []
    for i, ex in enumerate(examples):
        post_ids[i, 0] = ids.setdefault(ex.positive_text, len(ids))
        chosen = _pick(ex.hard_negative_texts, cfg.n_hard, generator)
        chosen_easy = _pick(ex.easy_negative_texts, cfg.n_easy, generator)
        for j, text in [*enumerate(chosen), *((cfg.n_hard + e, t) for e, t in enumerate(chosen_easy))]:
            mask[i, j] = True
            post_ids[i, 1 + j] = ids.setdefault(text, len(ids))
            neg_texts.append(text)
            slots.append(i * k + j)
    return Batch(
        member_texts=[ex.member_text for ex in examples],
        positive_texts=[ex.positive_text for ex in examples],
        negative_texts=neg_texts,
        negative_slots=torch.tensor(slots, dtype=torch.long),
        negative_mask=mask,
        post_ids=post_ids,
    )


def _pick(texts: Sequence[str], n: int, generator: torch.Generator) -> list[str]:
    if n == 0 or not texts:
        return []
    order = torch.randperm(len(texts), generator=generator)[:n]
    return [texts[i] for i in order.tolist()]


def batch_loss(model: DualEncoder, batch: Batch, cfg: TrainConfig) -> torch.Tensor:
    """Encode one micro-batch and return its InfoNCE loss."""
    b, k = batch.negative_mask.shape
    device = model.device
    member = model.encode(batch.member_texts, "member")  # (B, D)
    posts = model.encode(batch.positive_texts + batch.negative_texts, "post")  # (B + N, D)
    positive = posts[:b]
    negatives = None
    if k:
        flat = torch.zeros(b * k, posts.shape[1], dtype=posts.dtype, device=device)
        flat = flat.index_copy(0, batch.negative_slots.to(device), posts[b:])
        negatives = flat.view(b, k, -1)  # (B, K, D); absent slots are zero and masked
    return info_nce(
        member,
        positive,
        negatives,
        cfg.temperature,
        negative_mask=batch.negative_mask.to(device),
        post_ids=batch.post_ids.to(device),
        share_negatives=cfg.share_negatives,
    )


# --------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistContext:
    """Rank/world of this process. ``torchrun`` sets the env:// rendezvous variables that
    ``init_process_group`` reads; a plain ``python`` run is rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls) -> DistContext:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_torchelastic_launched()):
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(rank=dist.get_rank(), world=dist.get_world_size())

    def device(self, requested: str) -> torch.device:
        if requested != "auto":
            return torch.device(requested)
        if torch.cuda.is_available():
            return torch.device("cuda", self.rank % torch.cuda.device_count())  # one GPU per local rank
        return torch.device("cpu")

    def all_reduce_grads(self, params: Sequence[nn.Parameter]) -> None:
        """Average gradients over ranks once per optimizer step (what DDP does, without its hooks: the
        dual encoder runs the backbone twice per step, which DDP's reducer does not allow without
        static-graph tricks, and accumulation wants one reduction per step anyway)."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad.div_(self.world)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


# ---------------------------------------------------------------------------------------------- training


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class _Order:
    """Example indices of micro-batch u for this rank: DistributedSampler's permutation of epoch(u)."""

    def __init__(self, n: int, cfg: TrainConfig, ctx: DistContext) -> None:
        from torch.utils.data import DistributedSampler

        self._sampler = DistributedSampler(
            range(n), num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        self._batch = cfg.batch_size
        self.per_epoch = len(self._sampler) // cfg.batch_size
        if self.per_epoch == 0:
            raise ValueError(
                f"{n} examples are too few for batch_size={cfg.batch_size} × {ctx.world} process(es)"
            )
        self._epoch = -1
        self._indices: list[int] = []

    def micro_batch(self, u: int) -> list[int]:
        epoch, offset = divmod(u, self.per_epoch)
        if epoch != self._epoch:
            self._sampler.set_epoch(epoch)
            self._indices = list(self._sampler)
            self._epoch = epoch
        return self._indices[offset * self._batch : (offset + 1) * self._batch]


@dataclass
class _State:
    step: int = 0
    loss_history: list[float] = field(default_factory=list)
    eval_metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # training time over all runs (resume adds to it)


def train(
    examples: Sequence[RetrievalExample] | Iterable[RetrievalExample],
    enc_cfg: EncoderConfig,
    train_cfg: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    eval_fn: Callable[[DualEncoder], dict[str, Any]] | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a :class:`DualEncoder` on ``examples``; write checkpoints and, when all ``train_cfg.steps``
    are done, the model version in ``out_dir``.

    ``resume=True`` continues from the newest checkpoint in ``out_dir/checkpoints`` (same configs required).
    ``stop_after`` ends the run after that many optimizer steps with a checkpoint (a planned stop — time
    slots, tests — that a later ``resume=True`` continues bit-for-bit on CPU)."""
    data = list(examples)
    ctx = DistContext.start()
    device = ctx.device(train_cfg.device)
    torch.manual_seed(train_cfg.seed)
    model = DualEncoder(enc_cfg).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, train_cfg))
    state = _State()
    if resume:
        _load_checkpoint(out_dir, model, opt, sched, state, enc_cfg, train_cfg)
    order = _Order(len(data), train_cfg, ctx)
    last = train_cfg.steps if stop_after is None else min(train_cfg.steps, stop_after)

    start = time.perf_counter()
    trained = 0
    from tqdm.auto import tqdm

    show = ctx.is_main and progress
    bar = tqdm(total=train_cfg.steps, initial=state.step, desc="train retrieval", disable=not show)
    while state.step < last:
        loss = _optimizer_step(model, params, opt, sched, data, order, state.step, train_cfg, ctx)
        state.step += 1
        state.loss_history.append(loss)
        trained += train_cfg.batch_size * train_cfg.grad_accum * ctx.world
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        _maybe_eval(model, eval_fn, state, train_cfg, ctx)
        if train_cfg.checkpoint_every and state.step % train_cfg.checkpoint_every == 0:
            _save_checkpoint(out_dir, model, opt, sched, state, enc_cfg, train_cfg, ctx)
    bar.close()
    elapsed = time.perf_counter() - start
    state.seconds += elapsed
    completed = state.step >= train_cfg.steps
    if eval_fn is not None and completed and ctx.is_main and "final" not in state.eval_metrics:
        state.eval_metrics["final"] = _run_eval(model, eval_fn)
    _save_checkpoint(out_dir, model, opt, sched, state, enc_cfg, train_cfg, ctx)
    result = TrainResult(
        out_dir=out_dir,
        step=state.step,
        completed=completed,
        loss_history=state.loss_history,
        seconds=state.seconds,
        examples_per_second=trained / elapsed if elapsed > 0 else math.nan,
        eval_metrics=state.eval_metrics,
        model=model,
    )
    if ctx.is_main:
        _write_version(result, enc_cfg, train_cfg, len(data), device)
    ctx.barrier()
    return result


def _optimizer_step(
    model: DualEncoder,
    params: Sequence[nn.Parameter],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    data: Sequence[RetrievalExample],
    order: _Order,
    step: int,
    cfg: TrainConfig,
    ctx: DistContext,
) -> float:
    """One optimizer step over ``grad_accum`` micro-batches → the mean micro-batch loss (this rank)."""
    device = model.device
    total = 0.0
    for a in range(cfg.grad_accum):
        u = step * cfg.grad_accum + a  # micro-batch number, the same on every rank
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + u * 65_537 + ctx.rank)
        batch = make_batch([data[i] for i in order.micro_batch(u)], cfg, gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda"):
            loss = batch_loss(model, batch, cfg)
        (loss / cfg.grad_accum).backward()
        total += float(loss.detach())
    ctx.all_reduce_grads(params)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return total / cfg.grad_accum


def _run_eval(model: DualEncoder, eval_fn: Callable[[DualEncoder], dict[str, Any]]) -> dict[str, Any]:
    model.eval()
    try:
        with torch.no_grad():
            return dict(eval_fn(model))
    finally:
        model.train()


def _maybe_eval(
    model: DualEncoder,
    eval_fn: Callable[[DualEncoder], dict[str, Any]] | None,
    state: _State,
    cfg: TrainConfig,
    ctx: DistContext,
) -> None:
    if eval_fn is None or not ctx.is_main or not cfg.eval_every or state.step % cfg.eval_every:
        return
    metrics = _run_eval(model, eval_fn)
    state.eval_metrics[f"step_{state.step}"] = metrics
    if state.step == cfg.steps:
        state.eval_metrics["final"] = metrics


# ------------------------------------------------------------------------------------------- checkpoints


def _configs(enc_cfg: EncoderConfig, train_cfg: TrainConfig) -> dict[str, Any]:
    return {"encoder": dataclasses.asdict(enc_cfg), "train": dataclasses.asdict(train_cfg)}


def _save_checkpoint(
    out_dir: Path,
    model: DualEncoder,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    state: _State,
    enc_cfg: EncoderConfig,
    train_cfg: TrainConfig,
    ctx: DistContext,
) -> None:
    if not ctx.is_main:
        return
    ckpt_dir = out_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{state.step:07d}.pt"
    payload = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": state.step,
        "loss_history": state.loss_history,
        "eval_metrics": json.dumps(state.eval_metrics, default=str),
        "seconds": state.seconds,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "configs": json.dumps(_configs(enc_cfg, train_cfg)),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind a kill
    for old in sorted(ckpt_dir.glob("step_*.pt"))[: -train_cfg.keep_checkpoints]:
        old.unlink()


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = sorted((out_dir / CHECKPOINT_DIR).glob("step_*.pt"))
    return found[-1] if found else None


def _load_checkpoint(
    out_dir: Path,
    model: DualEncoder,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    state: _State,
    enc_cfg: EncoderConfig,
    train_cfg: TrainConfig,
) -> None:
    path = latest_checkpoint(out_dir)
    if path is None:
        log.warning("resume requested but %s has no checkpoint; starting from step 0", out_dir)
        return
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved = json.loads(payload["configs"])
    now = json.loads(json.dumps(_configs(enc_cfg, train_cfg)))
    if saved != now:
        raise ValueError(f"cannot resume from {path}: it was trained with other configs ({saved} vs {now})")
    model.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    state.step = int(payload["step"])
    state.loss_history = list(payload["loss_history"])
    state.eval_metrics = json.loads(payload["eval_metrics"])
    state.seconds = float(payload["seconds"])
    torch.set_rng_state(payload["rng_cpu"])
    if payload["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    log.info("resumed from %s at step %d", path, state.step)


def _write_version(
    result: TrainResult, enc_cfg: EncoderConfig, train_cfg: TrainConfig, n_examples: int, device: torch.device
) -> None:
    """metrics.json always (progress so far); weights + config.json only for a completed run."""
    out_dir = result.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if result.completed:
        result.model.save(out_dir, extra={"version": out_dir.name, "train": dataclasses.asdict(train_cfg)})
    metrics = {
        "version": out_dir.name,
        "completed": result.completed,
        "step": result.step,
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "loss_history": result.loss_history,
        "seconds": result.seconds,
        "examples_per_second": result.examples_per_second,
        "n_examples": n_examples,
        "eval": result.eval_metrics,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        **_configs(enc_cfg, train_cfg),
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str) + "\n")


def promote(retrieval_dir: Path, version: str) -> Path:
    """Make ``version`` the served model: write ``retrieval_dir/CURRENT`` (the old value goes to ``PREVIOUS``
    for rollback). Call it only after a quality gate passed; training never promotes."""
    version_dir = retrieval_dir / version
    for needed in (CONFIG_FILE, METRICS_FILE, f"{BACKBONE_DIR}/config.json"):
        if not (version_dir / needed).is_file():
            raise FileNotFoundError(f"cannot promote {version!r}: {version_dir / needed} is missing")
    if not json.loads((version_dir / METRICS_FILE).read_text()).get("completed"):
        raise ValueError(f"cannot promote {version!r}: its training run did not complete")
    return write_current(retrieval_dir, version)
