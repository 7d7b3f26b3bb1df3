"""Benchmark: a GR ranker training run on a GPU, profiled → ``reports/bench/gr_train_profile.json``.

What ``feed train ranking`` does per step (training/ranking/train.py), on synthetic packed batches, timed:

* **Data**: jagged batches of ≈ ``token_budget`` tokens (history + candidates), members packed back to back.
  History lengths are heavy-tailed like the real set (lognormal, median 400, σ 1.0, capped at
  ``max_history`` = 1,024), 8–64 candidates per member. A batch on the host holds row indices into a post
  table that lives on the device, as the real loader's ``PackedBatch`` does; the step copies it to the device
  (pinned, non-blocking) and gathers the post vectors there. Labels carry a signal the model can only get
  from the history: posts belong to topics, a member's history leans to three favourite topics, and a
  candidate of a favourite topic is more likely clicked/liked — so the loss going down is a sanity check of
  the whole training path, not just of the task biases.
* **Step**: H2D copy → gather + forward under bf16 autocast (CUDA) + loss → backward + grad clipping →
  fused AdamW (CUDA) step and LR schedule; the loss is read back every step (the real loop logs it).
* **Arms**: ``GRConfig.kernel`` = ``triton`` and ``pytorch`` (same initial weights, same batches): step time
  p50/p90 (wall, ``warmup`` steps excluded), tokens/s, peak allocated memory, loss first/last, and a phase
  breakdown (H2D, forward, backward, optimizer) from CUDA events recorded between the phases (device
  timeline: a phase that waits for the host includes that wait).
* **Profile**: ``torch.profiler`` over ``profile_steps`` steps of the first kernel's arm: the top-10 CUDA
  kernels by self device time, the attention kernels' share, device busy time per step vs the wall step.
* **Checkpoints**: the same step loop with ``training/checkpoint.py`` saving model + optimizer every
  ``ckpt_every`` steps — none vs sync vs async (writer thread) — in rounds bracketed by no-save arms; loop
  stall per save = (loop time − mean of the bracketing no-save loops) / saves, the final wait included.
* ``--models serving,large``: the serving-size GR (d 64, 2 heads, 2 layers, 384-d post and member vectors)
  and a larger one (d 256, 4 heads, 4 layers); the summary is the first model's.

Runs as a plain script where only torch (+ numpy, stdlib) exists: ``python3 bench/gr_train_profile.py
--out F`` (the GPU machine: ``scripts/gpu_check.sh <sha> train``). ``--smoke``: tiny shapes, a few steps,
PyTorch kernel only, on CPU (CI). ``--deadline-s``: sections not started in time are skipped (listed in
``skipped``), and the JSON is rewritten after every section, so a run killed from outside still leaves what it
measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_common import device_name, percentile, resolve_device, sync, write_json
from training.ranking.features import CONTEXT_FEATURES, DEVICES, TASKS
from training.ranking.model import GenerativeRanker, GRConfig, RankerInputs

PHASES = ("h2d", "forward", "backward", "optimizer")
ATTENTION_KERNELS = ("_fwd_kernel", "_bwd_dq_kernel", "_bwd_dkdv_kernel")  # kernels/triton names
MODELS: dict[str, GRConfig] = {
    # the served GR (feed train ranking defaults) with the retrieval member embedding fused late
    "serving": GRConfig(d_model=64, n_heads=2, n_layers=2, item_emb_dim=384, member_emb_dim=384),
    "large": GRConfig(d_model=256, n_heads=4, n_layers=4, item_emb_dim=384, member_emb_dim=384),
    # --smoke: small tables so a CPU step and a checkpoint take milliseconds
    "tiny": GRConfig(
        d_model=16,
        n_heads=2,
        n_layers=1,
        item_emb_dim=32,
        member_emb_dim=16,
        max_history=64,
        hash_buckets=1024,
        author_buckets=256,
        profile_buckets=64,
        n_experts=2,
        expert_dim=8,
    ),
}


@dataclass(frozen=True)
class TrainProfileConfig:
    models: tuple[str, ...] = ("serving",)
    kernels: tuple[str, ...] = ("triton", "pytorch")  # the first is profiled and checkpointed
    token_budget: int = 16_384
    history_median: float = 400.0
    history_sigma: float = 1.0
    min_candidates: int = 8
    max_candidates: int = 64
    posts: int = 65_536  # post table rows on the device (a multiple of topics)
    topics: int = 64
    pool: int = 16  # distinct batches, cycled
    steps: int = 100  # timed, after warmup
    warmup: int = 10
    lr: float = 1e-3
    lr_warmup_steps: int = 10
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    profile_steps: int = 5
    ckpt_modes: tuple[str, ...] = ("sync", "async")  # "none" arms are always there (the baseline)
    ckpt_steps: int = 90  # per arm
    ckpt_every: int = 30
    ckpt_rounds: int = 2
    ckpt_keep: int = 2
    ckpt_fsync: bool = True
    device: str = "auto"
    seed: int = 0
    deadline_s: float = 180.0

    def __post_init__(self) -> None:
        unknown = set(self.models) - set(MODELS)
        if unknown:
            raise ValueError(f"unknown models {sorted(unknown)}; choose from {sorted(MODELS)}")
        bad = set(self.kernels) - {"triton", "pytorch"}
        if bad or not self.kernels:
            raise ValueError(f"kernels must be a non-empty subset of triton, pytorch; got {self.kernels}")
        if set(self.ckpt_modes) - {"sync", "async", "process"}:
            raise ValueError(f"ckpt_modes must be a subset of sync, async, process; got {self.ckpt_modes}")
        if self.ckpt_every < 1 or self.ckpt_steps < self.ckpt_every:
            raise ValueError("need 1 <= ckpt_every <= ckpt_steps (at least one save per arm)")
        if self.ckpt_rounds < 1:
            raise ValueError("ckpt_rounds must be >= 1")
        if self.steps < 1 or self.warmup < 0 or self.pool < 1:
            raise ValueError("need steps >= 1, warmup >= 0, pool >= 1")
        if self.posts % self.topics:
            raise ValueError("posts must be a multiple of topics")
        for name in self.models:
            if self.token_budget < MODELS[name].max_history + self.max_candidates:
                raise ValueError(
                    f"token_budget must hold one member of {name} (max_history + max_candidates)"
                )


def smoke_config(**overrides: Any) -> TrainProfileConfig:
    """CPU check of every section: a tiny model, ≈ 400-token batches, a handful of steps, PyTorch kernel."""
    base = TrainProfileConfig(
        models=("tiny",),
        kernels=("pytorch",),
        token_budget=384,
        history_median=24.0,
        min_candidates=2,
        max_candidates=8,
        posts=512,
        topics=16,
        pool=3,
        steps=4,
        warmup=1,
        lr=3e-3,
        lr_warmup_steps=1,
        profile_steps=1,
        ckpt_steps=2,
        ckpt_every=1,
        ckpt_rounds=1,
        ckpt_fsync=False,
        device="cpu",
        deadline_s=120.0,
    )
    return replace(base, **overrides)


# --- synthetic data ----------------------------------------------------------------------------------------


@dataclass
class Catalog:
    """Per-post tables (row 0 = unknown post) that stay on the training device, as in training."""

    vectors: torch.Tensor  # (P+1, E) float32
    ids: torch.Tensor  # (P+1,) int64
    authors: torch.Tensor  # (P+1,) int64

    def to(self, device: torch.device) -> Catalog:
        return Catalog(self.vectors.to(device), self.ids.to(device), self.authors.to(device))


@dataclass
class HostBatch:
    """One packed batch on the host: row indices into the catalog plus the per-row fields and labels."""

    tensors: dict[str, torch.Tensor]
    members: int
    tokens: int

    def pinned(self) -> HostBatch:
        return replace(self, tensors={k: v.pin_memory() for k, v in self.tensors.items()})

    def to(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {k: v.to(device, non_blocking=True) for k, v in self.tensors.items()}


def _topics(
    favs: torch.Tensor, counts: torch.Tensor, p_fav: float, topics: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A topic for each of ``counts[b]`` rows of every member b: one of its favourites (``favs`` (B, 3)) with
    probability ``p_fav``, else any; and whether the drawn topic is a favourite."""
    member = torch.repeat_interleave(torch.arange(favs.shape[0]), counts)
    fav = favs[member, torch.randint(0, 3, member.shape, generator=g)]
    is_fav = torch.rand(member.shape, generator=g) < p_fav
    topic = torch.where(is_fav, fav, torch.randint(0, topics, member.shape, generator=g))
    return topic, (favs[member] == topic.unsqueeze(1)).any(1)


def make_data(
    cfg: TrainProfileConfig, model: GRConfig, seed: int
) -> tuple[Catalog, list[HostBatch], dict[str, float]]:
    """The post catalog and ``cfg.pool`` packed batches (see the module docstring for the label model)."""
    g = torch.Generator().manual_seed(seed)
    e, t, p = model.item_emb_dim, cfg.topics, cfg.posts
    centers = torch.randn(t, e, generator=g)
    vectors = torch.zeros(p + 1, e)
    topic_of = torch.arange(p) % t  # post idx i (1-based) has topic (i - 1) % t
    vectors[1:] = (centers[topic_of] + 0.7 * torch.randn(p, e, generator=g)) / math.sqrt(e)
    ids = torch.randint(1, 1 << 40, (p + 1,), generator=g)
    ids[0] = 0
    author_pool = torch.randint(1, 1 << 30, (max(1, p // 20),), generator=g)
    authors = author_pool[torch.randint(0, author_pool.numel(), (p + 1,), generator=g)]
    authors[0] = 0
    task_w = torch.randn(e, len(TASKS), generator=g)
    task_bias = torch.tensor([-0.8, -1.2, -1.6, -2.2, -2.8, -2.8])
    fav_boost = torch.tensor([1.6, -0.8, 1.4, 1.8, 1.5, 1.5])
    per_topic = p // t

    def post_of(topic: torch.Tensor) -> torch.Tensor:
        return 1 + topic + t * torch.randint(0, per_topic, topic.shape, generator=g)

    batches, lengths = [], []
    for _ in range(cfg.pool):
        # heavy-tailed history lengths, 8–64 candidates; pack members while the budget holds
        n_max = cfg.token_budget  # more members than can ever fit
        h = torch.exp(math.log(cfg.history_median) + cfg.history_sigma * torch.randn(n_max, generator=g))
        h = h.round().clamp(1, model.max_history).long()
        c = torch.randint(cfg.min_candidates, cfg.max_candidates + 1, (n_max,), generator=g)
        b = int((torch.cumsum(h + c, 0) <= cfg.token_budget).sum())
        h, c = h[:b], c[:b]
        lengths.append(h)
        favs = torch.randint(0, t, (b, 3), generator=g)

        hist_topic, _ = _topics(favs, h, 0.7, t, g)
        cand_topic, cand_fav = _topics(favs, c, 0.4, t, g)
        hist_idx, cand_idx = post_of(hist_topic), post_of(cand_topic)
        logits = task_bias + cand_fav.float().unsqueeze(1) * fav_boost + vectors[cand_idx] @ task_w
        labels = (torch.rand(logits.shape, generator=g) < torch.sigmoid(logits)).float()
        hist_offsets = torch.zeros(b + 1, dtype=torch.long)
        hist_offsets[1:] = torch.cumsum(h, 0)
        cand_offsets = torch.zeros(b + 1, dtype=torch.long)
        cand_offsets[1:] = torch.cumsum(c, 0)
        member = torch.repeat_interleave(torch.arange(b), h)
        local = torch.arange(member.numel()) - hist_offsets[:-1][member]
        age = (h[member] - local).float() * 1800.0 * (0.5 + torch.rand(member.shape, generator=g))
        context = torch.rand(int(c.sum()), len(CONTEXT_FEATURES), generator=g)
        context[torch.rand(context.shape, generator=g) < 0.1] = float("nan")
        tensors = {
            "hist_idx": hist_idx,
            "hist_action": torch.randint(0, 64, hist_idx.shape, generator=g),
            "hist_age_s": age,
            "hist_offsets": hist_offsets,
            "cand_idx": cand_idx,
            "cand_device": torch.randint(0, len(DEVICES), cand_idx.shape, generator=g),
            "cand_context": context,
            "cand_offsets": cand_offsets,
            "profile": torch.randint(1, 1 << 40, (b, model.profile_fields), generator=g),
            "member_emb": torch.randn(b, max(model.member_emb_dim, 1), generator=g)[
                :, : model.member_emb_dim
            ],
            "member_emb_present": torch.rand(b, generator=g) < 0.7,
            "labels": labels,
        }
        batches.append(HostBatch(tensors, members=b, tokens=int((h + c).sum())))
    all_h = torch.cat(lengths).float()
    stats = {
        "members_per_batch_mean": statistics.fmean(x.members for x in batches),
        "tokens_per_batch_mean": statistics.fmean(x.tokens for x in batches),
        "history_p50": float(all_h.median()),
        "history_p90": float(torch.quantile(all_h, 0.9)),
        "history_at_cap_share": float((all_h >= model.max_history).float().mean()),
        "label_rate": [round(float(x), 4) for x in torch.cat([x.tensors["labels"] for x in batches]).mean(0)],
    }
    return Catalog(vectors, ids, authors), batches, stats


def ranker_inputs(d: dict[str, torch.Tensor], cat: Catalog) -> RankerInputs:
    """A device batch → the model's inputs, post vectors/ids/authors gathered on the device."""
    h, c = d["hist_idx"], d["cand_idx"]
    return RankerInputs(
        hist_item=cat.vectors[h],
        hist_post_id=cat.ids[h],
        hist_author_id=cat.authors[h],
        hist_action=d["hist_action"],
        hist_age_s=d["hist_age_s"],
        hist_offsets=d["hist_offsets"],
        cand_item=cat.vectors[c],
        cand_post_id=cat.ids[c],
        cand_author_id=cat.authors[c],
        cand_device=d["cand_device"],
        cand_context=d["cand_context"],
        cand_offsets=d["cand_offsets"],
        profile=d["profile"],
        member_emb=d["member_emb"],
        member_emb_present=d["member_emb_present"],
    )


# --- the step loop -----------------------------------------------------------------------------------------


class Clock:
    """Marks between the phases of a step: CUDA events on the device timeline, wall time on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def elapsed_ms(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) if self.cuda else (b - a) * 1e3


@dataclass
class Trainer:
    """One model + AdamW + schedule on the device, stepping through the batch pool like train_ranker."""

    model: GenerativeRanker
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    catalog: Catalog
    batches: list[HostBatch]
    device: torch.device
    cfg: TrainProfileConfig
    clock: Clock
    i: int = 0
    losses: list[float] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        model_cfg: GRConfig,
        kernel: str,
        catalog: Catalog,
        batches: list[HostBatch],
        device: torch.device,
        cfg: TrainProfileConfig,
    ) -> Trainer:
        torch.manual_seed(cfg.seed)  # the same initial weights for every kernel
        model = GenerativeRanker(replace(model_cfg, kernel=kernel)).to(device)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            fused=device.type == "cuda",
        )
        warm = max(1, cfg.lr_warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        model.train()
        return cls(model, opt, sched, catalog, batches, device, cfg, Clock(device))

    def step(self) -> tuple[float, list[Any], int]:
        """One training step; returns (loss, the five phase marks, tokens)."""
        host = self.batches[self.i % len(self.batches)]
        self.i += 1
        cuda = self.device.type == "cuda"
        m0 = self.clock.mark()
        d = host.to(self.device)
        m1 = self.clock.mark()
        inputs = ranker_inputs(d, self.catalog)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = self.model(inputs)
        loss, _ = self.model.loss(logits.float(), d["labels"])
        m2 = self.clock.mark()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        m3 = self.clock.mark()
        self.opt.step()
        self.sched.step()
        m4 = self.clock.mark()
        value = float(loss.detach())  # the real loop reads the loss every step (a host sync)
        self.losses.append(value)
        return value, [m0, m1, m2, m3, m4], host.tokens

    def state(self, step: int) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": step}


def _mean_ends(xs: Sequence[float]) -> tuple[float, float]:
    k = max(1, len(xs) // 10)
    return statistics.fmean(xs[:k]), statistics.fmean(xs[-k:])


def run_arm(tr: Trainer, deadline: float) -> dict[str, Any]:
    """``warmup`` + ``steps`` steps; step wall time, tokens/s, phases (p50 per phase), peak memory, loss."""
    cfg, cuda = tr.cfg, tr.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(tr.device)
    t_warm = time.perf_counter()
    for _ in range(cfg.warmup):  # Triton compiles and autotunes here; the allocator grows to its peak
        tr.step()
    warmup_s = time.perf_counter() - t_warm
    step_ms, tokens, marks = [], [], []
    for _ in range(cfg.steps):
        if time.perf_counter() > deadline and step_ms:
            break
        t0 = time.perf_counter()
        _, m, n = tr.step()  # ends with the loss read-back: everything of the step has run
        step_ms.append((time.perf_counter() - t0) * 1e3)
        tokens.append(n)
        marks.append(m)
    sync(tr.device)
    phases = {name: [tr.clock.elapsed_ms(m[i], m[i + 1]) for m in marks] for i, name in enumerate(PHASES)}
    # wall step − (first mark → last mark): the loss read-back and the host work between steps
    outside = [w - tr.clock.elapsed_ms(m[0], m[-1]) for w, m in zip(step_ms, marks, strict=True)]
    first, last = _mean_ends(tr.losses)
    return {
        "kernel": tr.model.config.kernel,
        "steps": len(step_ms),
        "truncated": len(step_ms) < cfg.steps,
        "warmup_s": round(warmup_s, 2),
        "step_ms_p50": round(percentile(step_ms, 50), 3),
        "step_ms_p90": round(percentile(step_ms, 90), 3),
        "step_ms_mean": round(statistics.fmean(step_ms), 3),
        "tokens_per_s": round(sum(tokens) / (sum(step_ms) / 1e3), 1),
        "tokens_per_step_mean": round(statistics.fmean(tokens), 1),
        "phase_ms_p50": {k: round(percentile(v, 50), 3) for k, v in phases.items()},
        "phase_ms_mean": {k: round(statistics.fmean(v), 3) for k, v in phases.items()},
        "outside_phases_ms_p50": round(percentile(outside, 50), 3),
        "peak_mem_gb": round(torch.cuda.max_memory_allocated(tr.device) / 2**30, 3) if cuda else None,
        "loss_first": round(first, 5),
        "loss_last": round(last, 5),
        "losses": [round(x, 5) for x in tr.losses],
        "parameters_m": round(tr.model.num_parameters() / 1e6, 2),
    }


# --- torch.profiler ----------------------------------------------------------------------------------------


def _self_device_us(evt: Any) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(evt, name, None)
        if value is not None:
            return float(value)
    return 0.0


def profile_steps(tr: Trainer) -> dict[str, Any]:
    """Profile ``profile_steps`` steps (on CUDA after 2 unprofiled ones): the top-10 CUDA kernels by self
    device time, the attention kernels' share, device busy time per step; on CPU the top-10 ops by self CPU
    time (so the path is exercised)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = tr.device.type == "cuda"
    n = max(1, tr.cfg.profile_steps)
    for _ in range(2 if cuda else 0):  # CUDA: nothing of the first profiled step is a one-off
        tr.step()
    sync(tr.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(n):
            tr.step()
        sync(tr.device)
    wall_ms = (time.perf_counter() - t0) * 1e3 / n
    events = list(prof.key_averages())
    out: dict[str, Any] = {
        "kernel": tr.model.config.kernel,
        "steps": n,
        "wall_ms_per_step": round(wall_ms, 3),
    }
    if cuda:
        kernels = [
            e for e in events if "CUDA" in str(getattr(e, "device_type", "")) and _self_device_us(e) > 0
        ]
        if not kernels:  # an older/newer profiler without device_type on the averages
            kernels = [e for e in events if _self_device_us(e) > 0 and not str(e.key).startswith("aten::")]
        kernels.sort(key=_self_device_us, reverse=True)
        total_us = sum(_self_device_us(e) for e in kernels)
        attn_us = sum(_self_device_us(e) for e in kernels if any(k in e.key for k in ATTENTION_KERNELS))
        out |= {
            "top_kernels": [
                {
                    "name": e.key[:200],
                    "self_device_ms": round(_self_device_us(e) / 1e3, 4),
                    "self_device_ms_per_step": round(_self_device_us(e) / 1e3 / n, 4),
                    "calls": int(e.count),
                }
                for e in kernels[:10]
            ],
            "device_busy_ms_per_step": round(total_us / 1e3 / n, 3),
            "device_busy_share": round(total_us / 1e3 / n / wall_ms, 3) if wall_ms else None,
            "attention_kernel_share": round(attn_us / total_us, 4) if total_us else None,
            "kernel_launches_per_step": round(sum(e.count for e in kernels) / n, 1),
        }
        sort_by = "self_device_time_total"
    else:
        ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
        out["top_ops_cpu"] = [
            {"name": e.key[:200], "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 4), "calls": int(e.count)}
            for e in ops[:10]
        ]
        sort_by = "self_cpu_time_total"
    try:
        out["table"] = prof.key_averages().table(sort_by=sort_by, row_limit=20, max_name_column_width=60)
    except Exception as exc:  # the table is a convenience; its sort keys have been renamed across versions
        out["table"] = f"(no table: {type(exc).__name__}: {exc})"
    return out


# --- checkpoints on the step loop --------------------------------------------------------------------------


def _ckpt_arm(tr: Trainer, mode: str, work: Path) -> dict[str, Any]:
    from training.checkpoint import AsyncCheckpointer, SyncCheckpointer

    cfg = tr.cfg
    directory = work / mode
    ckpt: AsyncCheckpointer | SyncCheckpointer | None = None
    if mode == "sync":
        ckpt = SyncCheckpointer(directory, keep=cfg.ckpt_keep, fsync=cfg.ckpt_fsync)
    elif mode in ("async", "process"):  # construction (a spawned interpreter) is not part of the loop
        writer = "thread" if mode == "async" else "process"
        ckpt = AsyncCheckpointer(directory, keep=cfg.ckpt_keep, mode=writer, fsync=cfg.ckpt_fsync)
    sync(tr.device)
    t_loop = time.perf_counter()
    for step in range(1, cfg.ckpt_steps + 1):
        tr.step()
        if ckpt is not None and step % cfg.ckpt_every == 0:
            ckpt.save(step, tr.state(step))
    if ckpt is not None:
        ckpt.wait()  # the run is not over until its last checkpoint is on disk
    sync(tr.device)
    out: dict[str, Any] = {"arm": mode, "loop_s": round(time.perf_counter() - t_loop, 4)}
    if ckpt is not None:
        ckpt.close()
        out |= {
            "in_save_s": round(ckpt.tally.stall_s, 4),
            "saves": [
                {
                    "step": s.step,
                    "stall_s": round(s.stall_s, 4),
                    "wait_prev_s": round(s.wait_s, 4),
                    "snapshot_s": round(s.snapshot_s, 4),
                    "write_s": round(s.write_s or 0.0, 4),
                    "bytes": s.bytes,
                }
                for s in ckpt.stats
            ],
        }
    shutil.rmtree(directory, ignore_errors=True)
    return out


def checkpoint_stall(tr: Trainer, work: Path, deadline: float) -> dict[str, Any]:
    """Rounds of [none, modes rotated…] closed by a last none arm; stall per save against the bracketing
    no-save loops."""
    cfg = tr.cfg
    saves = cfg.ckpt_steps // cfg.ckpt_every
    arms: list[dict[str, Any]] = [_ckpt_arm(tr, "none", work) | {"round": 0}]
    rounds = 0
    for r in range(cfg.ckpt_rounds):
        if r and time.perf_counter() > deadline:
            break
        k = r % len(cfg.ckpt_modes)
        for mode in (*cfg.ckpt_modes[k:], *cfg.ckpt_modes[:k]):
            arms.append(_ckpt_arm(tr, mode, work) | {"round": r})
        arms.append(_ckpt_arm(tr, "none", work) | {"round": r + 1})
        rounds += 1
    base = {a["round"]: a["loop_s"] for a in arms if a["arm"] == "none"}
    for a in arms:
        if a["arm"] != "none":
            a["stall_s"] = round(a["loop_s"] - (base[a["round"]] + base[a["round"] + 1]) / 2, 4)
    out: dict[str, Any] = {
        "rounds": rounds,
        "steps_per_arm": cfg.ckpt_steps,
        "saves_per_arm": saves,
        "none_loop_s_mean": round(statistics.fmean(base.values()), 4),
        "none_loop_s_min": round(min(base.values()), 4),
        "none_loop_s_max": round(max(base.values()), 4),
    }
    sizes = [s["bytes"] for a in arms for s in a.get("saves", []) if s["bytes"]]
    out["checkpoint_mb"] = round(max(sizes) / 1e6, 1) if sizes else None
    for mode in cfg.ckpt_modes:
        mine = [a for a in arms if a["arm"] == mode]
        writes = [s["write_s"] for a in mine for s in a["saves"]]
        out[f"{mode}_stall_per_save_s"] = round(statistics.fmean(a["stall_s"] for a in mine) / saves, 4)
        out[f"{mode}_in_save_per_save_s"] = round(statistics.fmean(a["in_save_s"] for a in mine) / saves, 4)
        out[f"{mode}_write_per_save_s"] = round(statistics.fmean(writes), 4) if writes else None
    out["arms"] = arms
    return out


# --- the run -----------------------------------------------------------------------------------------------


NOTES = [
    "step = H2D copy of the packed batch (pinned, non-blocking) → gather post vectors on the device + "
    "forward (bf16 autocast on CUDA) + loss → backward + grad clip → AdamW (fused on CUDA) + LR schedule → "
    "loss read back (host sync), as training/ranking/train.py does",
    "step_ms_* = wall time per step after warmup; phase_ms_* from CUDA events on the device timeline (a "
    "phase waiting for the host counts that wait); tokens/s = real tokens (no padding) / step time",
    "peak_mem_gb = torch.cuda.max_memory_allocated over the arm (warmup included)",
    "the same initial weights and batch order for every kernel: their loss curves should agree closely (bf16 "
    "summation order differs)",
    "checkpoint stall per save = (loop time of a saving arm, final wait included − mean loop time of the "
    "no-save arms bracketing its round) / saves; async = AsyncCheckpointer's writer thread",
]


class _Run:
    """The sections in priority order; the report is rewritten to ``out`` (when given) after each one."""

    def __init__(
        self,
        cfg: TrainProfileConfig,
        out: Path | None,
        git_commit: str | None,
        work_dir: Path | None,
        log: Any,
    ) -> None:
        self.cfg, self.out, self.work_dir, self.log = cfg, out, work_dir, log
        self.began = time.perf_counter()
        self.deadline = self.began + cfg.deadline_s
        self.device = resolve_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        self.doc: dict[str, Any] = {
            "summary": {},
            "config": asdict(cfg) | {"model_configs": {m: asdict(MODELS[m]) for m in cfg.models}},
            "device": device_name(self.device),
            "torch": torch.__version__,
            "git_commit": git_commit,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "notes": list(NOTES),
            "models": {},
            "skipped": [],
            "errors": [],
        }
        if not self.cuda:
            self.doc["notes"].append(
                "CPU run: timings say nothing about a GPU; no phase events, no peak memory"
            )

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self, final: bool = False) -> None:
        """Rewrite the report (quietly until the last write, which echoes the summary)."""
        first = self.doc["models"].get(self.cfg.models[0])
        if first and first["arms"]:
            self.doc["summary"] = _summary(self.doc, self.cfg, self.device)
        self.doc["seconds"] = round(time.perf_counter() - self.began, 1)
        if self.out is None:
            return
        if final:
            write_json(self.doc, self.out)
        else:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")

    def model(self, mi: int, name: str) -> None:
        cfg, device = self.cfg, self.device
        host_catalog, batches, data_stats = make_data(cfg, MODELS[name], cfg.seed)
        if self.cuda:
            batches = [b.pinned() for b in batches]
        catalog = host_catalog.to(device)
        section: dict[str, Any] = {"data": data_stats, "arms": {}}
        self.doc["models"][name] = section
        self.log(
            f"[{name}] {data_stats['members_per_batch_mean']:.1f} members, "
            f"{data_stats['tokens_per_batch_mean']:.0f} tokens per batch"
        )
        for ki, kernel in enumerate(cfg.kernels):
            if (mi or ki) and self.left() < (10 if self.cuda else 2):  # the first arm always runs
                self.doc["skipped"].append(f"{name}/{kernel}: deadline")
                continue
            tr = Trainer.build(MODELS[name], kernel, catalog, batches, device, cfg)
            try:
                arm = run_arm(tr, self.deadline)
            except Exception as exc:  # one shot on a lent GPU: record it, go on with the other arms
                self.failed(f"{name}/{kernel}", exc)
                del tr
                continue
            section["arms"][kernel] = arm
            section.setdefault("losses", {})[kernel] = arm.pop("losses")  # long: beside the arm, not in it
            self.log(
                f"[{name}/{kernel}] step p50 {arm['step_ms_p50']} ms, {arm['tokens_per_s']:.0f} tok/s, "
                f"loss {arm['loss_first']} → {arm['loss_last']}, phases {arm['phase_ms_p50']}"
            )
            self.save()
            if ki == 0 and mi == 0:  # the headline arm: profile it, then checkpoint on its loop
                for part in (self.profile, self.checkpoint):
                    try:
                        part(tr, section, f"{name}/{kernel}")
                    except Exception as exc:
                        self.failed(f"{name}/{kernel}/{part.__name__}", exc)
            del tr
            if self.cuda:
                torch.cuda.empty_cache()

    def failed(self, tag: str, exc: Exception) -> None:
        self.doc["errors"].append(f"{tag}: {type(exc).__name__}: {exc}")
        self.log(f"[{tag}] FAILED\n{traceback.format_exc()}")
        self.save()

    def profile(self, tr: Trainer, section: dict[str, Any], tag: str) -> None:
        if self.left() < (15 if self.cuda else 1):
            self.doc["skipped"].append(f"{tag}/profile: deadline")
            return
        section["profile"] = profile_steps(tr)
        self.log(
            f"[{tag}] profile: {section['profile'].get('device_busy_ms_per_step')} ms device busy per step"
        )
        self.save()

    def checkpoint(self, tr: Trainer, section: dict[str, Any], tag: str) -> None:
        if not self.cfg.ckpt_modes:
            return
        if self.left() < (30 if self.cuda else 1):
            self.doc["skipped"].append(f"{tag}/checkpoint: deadline")
            return
        work = Path(tempfile.mkdtemp(prefix="gr_train_ckpt_", dir=self.work_dir))
        try:
            ck = section["checkpoint"] = checkpoint_stall(tr, work, self.deadline)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        stalls = ", ".join(f"{m} {ck[f'{m}_stall_per_save_s']} s" for m in self.cfg.ckpt_modes)
        self.log(f"[{tag}] checkpoint {ck['checkpoint_mb']} MB: stall per save {stalls}")
        self.save()


def run(
    cfg: TrainProfileConfig,
    *,
    out: Path | None = None,
    git_commit: str | None = None,
    work_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every section in priority order; the report (also returned) is rewritten to ``out`` after each one."""
    r = _Run(cfg, out, git_commit, work_dir, log)  # TF32 left as torch defaults it, as train_ranker does
    for mi, name in enumerate(cfg.models):
        r.model(mi, name)
    r.save(final=True)
    return r.doc


def _summary(doc: dict[str, Any], cfg: TrainProfileConfig, device: torch.device) -> dict[str, Any]:
    """The first model's headline numbers (None for what has not run); other models' step p50s beside."""
    name = cfg.models[0]
    section = doc["models"][name]
    arms = section["arms"]
    head = arms.get(cfg.kernels[0]) or next(iter(arms.values()))
    tri, pt = arms.get("triton"), arms.get("pytorch")
    ck = section.get("checkpoint", {})
    prof = section.get("profile", {})
    busy = prof.get("device_busy_ms_per_step")
    cuda = device.type == "cuda"
    return {
        "device": doc["device"],
        "model": name,
        "tokens_per_step": head["tokens_per_step_mean"],
        "step_ms_p50_triton": tri["step_ms_p50"] if tri else None,
        "step_ms_p90_triton": tri["step_ms_p90"] if tri else None,
        "step_ms_p50_pytorch": pt["step_ms_p50"] if pt else None,
        "step_ms_p90_pytorch": pt["step_ms_p90"] if pt else None,
        "speedup_triton": round(pt["step_ms_p50"] / tri["step_ms_p50"], 3) if tri and pt and cuda else None,
        "tokens_per_s_triton": tri["tokens_per_s"] if tri else None,
        "tokens_per_s_pytorch": pt["tokens_per_s"] if pt else None,
        "peak_mem_gb": head["peak_mem_gb"],
        "peak_mem_gb_pytorch": pt["peak_mem_gb"] if pt else None,
        "phase_ms_p50": head["phase_ms_p50"],
        "loss_first": head["loss_first"],
        "loss_last": head["loss_last"],
        "device_busy_ms_per_step": busy,
        # kernels' device time over the unprofiled p50 step: < 1 means the GPU waits for the host
        "device_busy_share": round(busy / head["step_ms_p50"], 3) if busy is not None else None,
        "attention_kernel_share": prof.get("attention_kernel_share"),
        "checkpoint_mb": ck.get("checkpoint_mb"),
        "ckpt_stall_per_save_s_sync": ck.get("sync_stall_per_save_s"),
        "ckpt_stall_per_save_s_async": ck.get("async_stall_per_save_s"),
        "ckpt_in_save_per_save_s_async": ck.get("async_in_save_per_save_s"),
        "ckpt_write_per_save_s_sync": ck.get("sync_write_per_save_s"),
    } | {
        f"{other}_step_ms_p50": {k: a["step_ms_p50"] for k, a in doc["models"][other]["arms"].items()}
        for other in cfg.models[1:]
        if other in doc["models"]
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench/gr_train_profile.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny CPU check: every section, a few steps")
    parser.add_argument(
        "--models", default=None, help=f"comma-separated, first = summary: {', '.join(MODELS)}"
    )
    parser.add_argument("--kernels", default=None, help="comma-separated, first is profiled [triton,pytorch]")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--token-budget", type=int, default=None)
    parser.add_argument("--ckpt-steps", type=int, default=None)
    parser.add_argument("--ckpt-every", type=int, default=None)
    parser.add_argument("--ckpt-rounds", type=int, default=None)
    parser.add_argument("--ckpt-modes", default=None, help="comma-separated: sync, async, process; '' = none")
    parser.add_argument("--deadline-s", type=float, default=None, help="no section starts after this")
    parser.add_argument("--work-dir", type=Path, default=None, help="where checkpoints go (deleted after)")
    parser.add_argument("--git-commit", default=None)
    args = parser.parse_args(argv)

    def split(s: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in s.split(",") if x.strip())

    changes: dict[str, Any] = {}
    for key in ("steps", "warmup", "token_budget", "ckpt_steps", "ckpt_every", "ckpt_rounds", "deadline_s"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    for key in ("models", "kernels", "ckpt_modes"):
        if getattr(args, key) is not None:
            changes[key] = split(getattr(args, key))
    if args.device is not None:
        changes["device"] = args.device
    try:
        cfg = smoke_config(**changes) if args.smoke else replace(TrainProfileConfig(), **changes)
    except ValueError as exc:
        parser.error(str(exc))
    if "triton" in cfg.kernels and resolve_device(cfg.device).type != "cuda":
        os.environ.setdefault(
            "TRITON_INTERPRET", "1"
        )  # before any triton import (CPU: a check, not a timing)
    doc = run(
        cfg,
        out=args.out,
        git_commit=args.git_commit,
        work_dir=args.work_dir,
        log=lambda m: print(m, flush=True),
    )
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
