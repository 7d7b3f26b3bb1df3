"""Training loop of the GR ranker (``feed train ranking``): packed jagged batches, AdamW with warmup + cosine,
bf16 autocast on CUDA, DDP when launched by ``torchrun`` (one process per GPU; each rank takes every
world-th batch of the same seeded plan), progress bars, and asynchronous checkpoints that do not stall the
step loop (``training/checkpoint.py``).

The loop takes any ranker whose ``forward(RankerInputs) -> (N, 6) logits`` and ``loss(logits, labels)`` match
:class:`~training.ranking.model.GenerativeRanker` — the non-sequential baseline trains through the same code,
on the same batches, for the same steps.

Artifacts: ``<out_dir>/model.pt`` (weights), ``config.json`` (model kind + configs), ``metrics.json``, and
``checkpoints/step_*.pt`` while training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from training.ranking.features import TASKS
from training.ranking.model import GenerativeRanker, GRConfig, RankerInputs
from training.retrieval.train import DistContext, lr_factor

if TYPE_CHECKING:
    from training.data.packing import PackedBatch, PackedLoader
    from training.data.ranking_data import RankingArrays

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True)
class RankingTrainConfig:
    steps: int = 300
    token_budget: int = 16_384  # tokens per packed batch (history + candidates), the same for every step
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    checkpoint: Literal["async", "sync", "none"] = "async"
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10


@dataclass
class RankingTrainResult:
    model: nn.Module
    out_dir: Path
    steps: int
    loss_history: list[float] = field(default_factory=list)
    task_loss_history: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    checkpoint_stall_s: float = 0.0

    @property
    def first_loss(self) -> float:
        return float(np.mean(self.loss_history[: max(1, len(self.loss_history) // 10)]))

    @property
    def final_loss(self) -> float:
        return float(np.mean(self.loss_history[-max(1, len(self.loss_history) // 10) :]))


def autocast(device: torch.device, precision: str) -> Any:
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


@dataclass(frozen=True)
class PostTables:
    """Per-post lookups on the training device, indexed by ``post_idx`` (row 0 = unknown post)."""

    vectors: torch.Tensor  # (P+1, E) float32 post embeddings, row 0 zeros
    authors: torch.Tensor  # (P+1,) int64 author ids, 0 = unknown

    @classmethod
    def of(cls, arrays: RankingArrays, device: torch.device) -> PostTables:
        vectors = torch.from_numpy(np.ascontiguousarray(arrays.post_table, dtype=np.float32))
        authors = torch.from_numpy(np.ascontiguousarray(arrays.post_author, dtype=np.int64))
        return cls(vectors.to(device), authors.to(device))


def inputs_of(batch: PackedBatch, posts: PostTables, device: torch.device) -> RankerInputs:
    return RankerInputs.from_batch(batch.to(device, non_blocking=True), posts.vectors, posts.authors)


def make_loader(
    arrays: RankingArrays, model_cfg: GRConfig, budget: int, *, shuffle: bool, seed: int
) -> PackedLoader:
    from training.data.packing import PackedLoader

    per_item = 2 if model_cfg.action_encoding == "interleave" else 1
    return PackedLoader(
        arrays,
        token_budget=budget,
        max_history=model_cfg.max_history,
        shuffle=shuffle,
        seed=seed,
        tokens_per_history_item=per_item,
    )


def _batches(loader: PackedLoader, ctx: DistContext) -> Iterator[PackedBatch]:
    """Endless stream of this rank's batches: epoch after epoch, every world-th batch of the shared plan."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i % ctx.world == ctx.rank:
                yield batch
        epoch += 1


def _checkpointer(kind: str, directory: Path, keep: int, ctx: DistContext) -> Any:
    """Rank 0's checkpointer (None elsewhere or with ``"none"``); a fresh run first clears older steps."""
    from training.checkpoint import AsyncCheckpointer, SyncCheckpointer

    if not ctx.is_main or kind == "none":
        return None
    shutil.rmtree(directory, ignore_errors=True)
    if kind == "async":
        return AsyncCheckpointer(directory, keep=keep)
    if kind == "sync":
        return SyncCheckpointer(directory, keep=keep)
    return None


def train_ranker(
    model: nn.Module,
    arrays: RankingArrays,
    cfg: RankingTrainConfig,
    out_dir: Path,
    *,
    model_cfg: GRConfig,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> RankingTrainResult:
    """Train ``model`` for ``cfg.steps`` optimizer steps on ``arrays`` (a training split)."""
    ctx = DistContext.start()
    device = ctx.device(cfg.device)
    torch.manual_seed(cfg.seed + ctx.rank)
    model = model.to(device)
    module = model
    if ctx.world > 1:
        module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    posts = PostTables.of(arrays, device)
    loader = make_loader(arrays, model_cfg, cfg.token_budget, shuffle=True, seed=cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        fused=device.type == "cuda",
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))  # type: ignore[arg-type]
    checkpointer = _checkpointer(cfg.checkpoint, out_dir / CHECKPOINT_DIR, cfg.keep_checkpoints, ctx)
    result = RankingTrainResult(model=model, out_dir=out_dir, steps=cfg.steps)
    bar = _progress(cfg.steps, progress and ctx.is_main)
    stream = _batches(loader, ctx)
    model.train()
    start = time.perf_counter()
    try:
        for step in range(cfg.steps):
            batch = next(stream)
            inputs = inputs_of(batch, posts, device)
            labels = batch.labels.to(device, non_blocking=True)
            with autocast(device, cfg.precision):
                logits = module(inputs)
            loss, per_task = model.loss(logits.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            value = float(loss.detach())
            result.loss_history.append(value)
            result.task_loss_history.append([float(x) for x in per_task])
            result.tokens += batch.n_tokens
            if on_step is not None:
                on_step(step, value)
            if bar is not None:
                bar.update(1)
                if step % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if checkpointer is not None and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                t0 = time.perf_counter()
                checkpointer.save(step + 1, _state(model, opt, sched, step + 1, model_cfg, cfg))
                result.checkpoint_stall_s += time.perf_counter() - t0
    finally:
        if checkpointer is not None:
            t0 = time.perf_counter()
            checkpointer.close()
            result.checkpoint_stall_s += time.perf_counter() - t0
        if bar is not None:
            bar.close()
    result.seconds = time.perf_counter() - start
    if ctx.is_main:
        save_model(model, out_dir, model_cfg, cfg, result)
    ctx.barrier()
    return result


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="ranking", unit="step")


def _state(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    model_cfg: GRConfig,
    cfg: RankingTrainConfig,
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "configs": json.dumps(_configs(model, model_cfg, cfg)),
    }


def model_kind(model: nn.Module) -> str:
    return "gr" if isinstance(model, GenerativeRanker) else type(model).__name__


def _configs(model: nn.Module, model_cfg: GRConfig, cfg: RankingTrainConfig) -> dict[str, Any]:
    return {
        "kind": model_kind(model),
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(cfg),
        "tasks": list(TASKS),
    }


def save_model(
    model: nn.Module, out_dir: Path, model_cfg: GRConfig, cfg: RankingTrainConfig, result: RankingTrainResult
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (MODEL_FILE + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(out_dir / MODEL_FILE)
    (out_dir / CONFIG_FILE).write_text(json.dumps(_configs(model, model_cfg, cfg), indent=2) + "\n")
    metrics = {
        "completed": True,
        "steps": result.steps,
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "loss_history": result.loss_history,
        "seconds": result.seconds,
        "tokens_per_second": result.tokens / result.seconds if result.seconds else None,
        "checkpoint_stall_s": result.checkpoint_stall_s,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def load_ranker(version_dir: Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, GRConfig]:
    """A trained ranker (GR or the baseline) from ``artifacts/ranking/<version>``."""
    configs = json.loads((version_dir / CONFIG_FILE).read_text())
    model_cfg = GRConfig.from_dict(configs["model"])
    model = build_model(configs["kind"], model_cfg)
    model.load_state_dict(torch.load(version_dir / MODEL_FILE, map_location=map_location, weights_only=True))
    return model.eval(), model_cfg


def build_model(kind: str, model_cfg: GRConfig) -> nn.Module:
    if kind == "gr":
        return GenerativeRanker(model_cfg)
    from training.ranking.baselines import AggregatedHistoryRanker

    if kind == AggregatedHistoryRanker.__name__:
        return AggregatedHistoryRanker(model_cfg)
    raise ValueError(f"unknown ranker kind {kind!r}")


@torch.no_grad()
def predict(
    model: nn.Module,
    arrays: RankingArrays,
    model_cfg: GRConfig,
    *,
    token_budget: int = 16_384,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits (N, 6), labels (N, 6) and session ids (N,) for every target of ``arrays`` in target order.
    ``device`` may be "auto" (CUDA when present)."""
    device = DistContext().device(device) if isinstance(device, str) else device
    model = model.to(device).eval()
    posts = PostTables.of(arrays, device)
    loader = make_loader(arrays, model_cfg, token_budget, shuffle=False, seed=0)
    n = len(arrays.tgt_action)
    logits = np.full((n, len(TASKS)), np.nan, dtype=np.float32)
    labels = np.zeros((n, len(TASKS)), dtype=np.float32)
    sessions = np.array(arrays.tgt_session, dtype=np.int64)  # a writable copy: torch warns on read-only
    for batch in loader:
        with autocast(device, precision):
            out = model(inputs_of(batch, posts, device))
        rows = batch.target_index.numpy()
        logits[rows] = out.float().cpu().numpy()
        labels[rows] = batch.labels.numpy()
    missing = int(np.isnan(logits[:, 0]).sum())
    if missing:
        raise RuntimeError(f"{missing} targets were never scored: the loader dropped them")
    return logits, labels, sessions
