"""Benchmark: how long a training step loop stalls for checkpoints — ``SyncCheckpointer`` vs
``AsyncCheckpointer`` with a writer thread and with a writer process (training/checkpoint.py).

One run, one model, arms side by side: the same AdamW step loop on a ≈ 50 M-parameter MLP (≈ 600 MB of
parameters + two Adam moments per checkpoint, so a write takes seconds), ``steps`` steps per arm, either
without checkpoints (baseline) or saving every ``every`` steps with one checkpointer. ``rounds`` rounds, each
bracketed by baseline arms, the mode order rotated per round: an arm's stall = its loop time − the mean of
the two baselines around its round, so slow drift of a shared machine's load cancels. The loop time of a
saving arm includes the final ``wait()`` for its last write. The time inside ``save()``/``wait()`` is
reported beside it: the difference is how much the background writer slowed the steps themselves (CPU,
memory bandwidth, the GIL for the thread writer).

Writes ``reports/bench/checkpoint.json`` (quick runs: ``<home>/artifacts/reports/bench/``). On a machine with
only torch (the lent GPU machine: no pydantic, no project venv) it runs as a plain script,
``python3 bench/checkpoint.py --device cuda --out F`` (``scripts/gpu_check.sh <sha> train``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:  # feed.config needs pydantic: imported where used, so the script runs on torch alone
    import torch

    from feed.config import FeedSettings

REPORT_NAME = "checkpoint"
MODES = ("sync", "thread", "process")
DEFAULT_ASYNC = "thread"  # what AsyncCheckpointer() does by default; summary["async_stall_s"] is this mode


@dataclass(frozen=True)
class CheckpointBenchConfig:
    width: int = 2048
    depth: int = 12  # 12 × (2048² + 2048) ≈ 50.4 M parameters → ≈ 605 MB per checkpoint with AdamW's moments
    batch: int = 32
    steps: int = 30  # per arm
    every: int = 10  # save after steps 10, 20, 30
    rounds: int = 2  # each: baseline + every mode; one more baseline closes the last round
    warmup_steps: int = 2  # before the first arm: allocations, AdamW state
    keep: int = 2
    fsync: bool = True  # both writers fsync: the durable write is what a checkpoint is for
    modes: tuple[str, ...] = MODES
    device: str = "auto"  # "auto" → cuda when available
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(MODES)
        if unknown:
            raise ValueError(f"unknown modes {sorted(unknown)}; expected a subset of {MODES}")
        if self.every < 1 or self.steps < self.every:
            raise ValueError("need 1 <= every <= steps (at least one save per arm)")
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")


def quick_config(**overrides: Any) -> CheckpointBenchConfig:
    """Smoke preset: a tiny MLP, a handful of steps (``feed bench checkpoint --quick``)."""
    return replace(
        CheckpointBenchConfig(width=128, depth=2, batch=8, steps=6, every=2, warmup_steps=1, rounds=1),
        **overrides,
    )


def _log(msg: str) -> None:
    print(f"[bench checkpoint] {msg}", file=sys.stderr, flush=True)


def build_model(cfg: CheckpointBenchConfig, device: torch.device) -> tuple[Any, Any]:
    import torch
    from torch import nn

    torch.manual_seed(cfg.seed)
    layers: list[nn.Module] = []
    for _ in range(cfg.depth):
        layers += [nn.Linear(cfg.width, cfg.width), nn.GELU()]
    model = nn.Sequential(*layers).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model, opt


def _arm(
    name: str, model: Any, opt: Any, cfg: CheckpointBenchConfig, device: torch.device, work: Path
) -> dict[str, Any]:
    """One step loop of ``cfg.steps`` steps; saving every ``cfg.every`` steps unless ``name`` is baseline."""
    import torch

    from training.checkpoint import AsyncCheckpointer, SyncCheckpointer

    directory = work / name
    ckpt: AsyncCheckpointer | SyncCheckpointer | None = None
    if name == "sync":
        ckpt = SyncCheckpointer(directory, keep=cfg.keep, fsync=cfg.fsync)
    elif name in ("thread", "process"):  # construction (a spawned interpreter) is not part of the loop
        ckpt = AsyncCheckpointer(directory, keep=cfg.keep, mode=name, fsync=cfg.fsync)  # type: ignore[arg-type]
    x = torch.randn(cfg.batch, cfg.width, device=device)
    step_s: list[float] = []
    t_loop = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_s.append(time.perf_counter() - t0)
        if ckpt is not None and step % cfg.every == 0:
            ckpt.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step})
    if ckpt is not None:
        ckpt.wait()  # training is not over until the last checkpoint is on disk
    loop_s = time.perf_counter() - t_loop
    out: dict[str, Any] = {
        "arm": name,
        "loop_s": round(loop_s, 3),
        "median_step_s": round(statistics.median(step_s), 4),
    }
    if ckpt is not None:
        ckpt.close()
        saves = ckpt.stats
        out |= {
            "in_save_s": round(ckpt.tally.stall_s, 3),  # inside save() + wait(), on the caller's thread
            "final_wait_s": round(ckpt.tally.wait_s, 3),
            "saves": [
                {
                    "step": s.step,
                    "stall_s": round(s.stall_s, 3),
                    "wait_prev_s": round(s.wait_s, 3),
                    "snapshot_s": round(s.snapshot_s, 3),
                    "write_s": round(s.write_s or 0.0, 3),
                    "bytes": s.bytes,
                }
                for s in saves
            ],
        }
    shutil.rmtree(directory, ignore_errors=True)
    return out


def _summarize(arms: list[dict[str, Any]], cfg: CheckpointBenchConfig) -> dict[str, Any]:
    """Per-arm stall against the baselines bracketing its round (written into the arm), and the summary."""
    baseline = {a["round"]: a["loop_s"] for a in arms if a["arm"] == "baseline"}
    saving = [a for a in arms if a["arm"] != "baseline"]
    for a in saving:
        a["stall_s"] = round(a["loop_s"] - (baseline[a["round"]] + baseline[a["round"] + 1]) / 2, 3)
    sizes = [s["bytes"] for a in saving for s in a["saves"] if s["bytes"]]
    saves = cfg.steps // cfg.every

    def mean(mode: str, key: str) -> float | None:
        values = [a[key] for a in saving if a["arm"] == mode]
        return round(statistics.fmean(values), 3) if values else None

    summary: dict[str, Any] = {
        "async_stall_s": mean(DEFAULT_ASYNC, "stall_s"),
        "sync_stall_s": mean("sync", "stall_s"),
        "async_process_stall_s": mean("process", "stall_s"),
        "steps": cfg.steps,
        "saves_per_arm": saves,
        "rounds": cfg.rounds,
        "checkpoint_mb": round(max(sizes) / 1e6, 1) if sizes else None,
        "baseline_loop_s": round(statistics.fmean(baseline.values()), 3),
    }
    for mode in cfg.modes:
        stall, in_save = mean(mode, "stall_s"), mean(mode, "in_save_s")
        writes = [s["write_s"] for a in saving if a["arm"] == mode for s in a["saves"]]
        summary[f"{mode}_stall_per_save_s"] = round(stall / saves, 3) if stall is not None else None
        summary[f"{mode}_in_save_per_save_s"] = round(in_save / saves, 3) if in_save is not None else None
        summary[f"{mode}_write_per_save_s"] = round(statistics.fmean(writes), 3) if writes else None
        steps = [a["median_step_s"] for a in saving if a["arm"] == mode]
        summary[f"{mode}_median_step_s"] = round(statistics.fmean(steps), 4)
    summary["baseline_median_step_s"] = round(
        statistics.fmean(a["median_step_s"] for a in arms if a["arm"] == "baseline"), 4
    )
    return summary


def measure(cfg: CheckpointBenchConfig, work: Path) -> dict[str, Any]:
    """Run the arms (checkpoints under ``work``, deleted after each arm): summary, config, notes, details."""
    import torch

    work.mkdir(parents=True, exist_ok=True)
    want = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(want)
    began = time.perf_counter()

    model, opt = build_model(cfg, device)
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"{n_params / 1e6:.1f} M parameters on {device}; {cfg.rounds} rounds of baseline + {cfg.modes}")
    for _ in range(cfg.warmup_steps):
        opt.zero_grad(set_to_none=True)
        model(torch.randn(cfg.batch, cfg.width, device=device)).square().mean().backward()
        opt.step()

    arms: list[dict[str, Any]] = []
    for r in range(cfg.rounds):
        arms.append(_arm("baseline", model, opt, cfg, device, work) | {"round": r})
        k = r % len(cfg.modes)
        for mode in (*cfg.modes[k:], *cfg.modes[:k]):  # rotated: no mode always runs right after a baseline
            arms.append(_arm(mode, model, opt, cfg, device, work) | {"round": r})
            _log(f"round {r} {mode}: loop {arms[-1]['loop_s']} s")
    arms.append(_arm("baseline", model, opt, cfg, device, work) | {"round": cfg.rounds})
    shutil.rmtree(work, ignore_errors=True)
    summary = _summarize(arms, cfg) | {"parameters_m": round(n_params / 1e6, 1)}
    baselines = [a["loop_s"] for a in arms if a["arm"] == "baseline"]
    notes = [
        "stall_s = loop time of a saving arm (steps + saves + the final wait for its last write) − the mean "
        "loop time of the two baseline arms (no saving) bracketing its round; summary values are the mean "
        "over rounds, i.e. the total stall of one run of `steps` steps with steps/every saves. in_save_s = "
        "time inside save() and wait() alone; stall − in_save is how much the writer slowed the steps.",
        f"async_stall_s is AsyncCheckpointer's default writer ({DEFAULT_ASYNC!r}); the process writer is "
        "reported as async_process_stall_s.",
        "Every write is torch.save + fsync + atomic rename; the async arms also snapshot to CPU buffers "
        "(reused from the second save on) on the caller's thread before returning.",
        "Timings on a shared machine are noisy: compare baseline_loop_s_min/max (the spread of the "
        "no-save arms) with the stalls before reading much into a difference.",
    ]
    summary["baseline_loop_s_min"] = round(min(baselines), 3)
    summary["baseline_loop_s_max"] = round(max(baselines), 3)
    config_doc = {**asdict(cfg), "device": str(device), "torch_threads": torch.get_num_threads()}
    details = {"arms": arms, "seconds": round(time.perf_counter() - began, 1)}
    return {"summary": summary, "config": config_doc, "notes": notes, "details": details}


def run(
    settings: FeedSettings | None = None,
    config: CheckpointBenchConfig | None = None,
    *,
    quick: bool = False,
    reports_dir: Path | None = None,
    work: Path | None = None,
) -> Path:
    """Run the arms and write ``checkpoint.json`` under ``reports_dir`` (default: the repo's reports/, or
    ``<home>/artifacts/reports`` for a quick run). Checkpoints go to ``work`` (default
    ``<home>/artifacts/bench/checkpoint``) and are deleted after each arm."""
    from feed.config import REPORTS_DIR, FeedSettings
    from feed.reports import write_report

    cfg = config or (quick_config() if quick else CheckpointBenchConfig())
    paths = (settings or FeedSettings()).paths()
    if reports_dir is None:
        reports_dir = paths.artifacts / "reports" if quick else REPORTS_DIR
    began = time.perf_counter()
    doc = measure(cfg, work or paths.artifacts / "bench" / "checkpoint")
    out = write_report(
        REPORT_NAME,
        doc["summary"],
        doc["config"] | {"quick": quick},
        notes=doc["notes"],
        details=doc["details"],
        reports_dir=reports_dir,
    )
    _log(f"wrote {out} in {time.perf_counter() - began:.0f} s")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Plain-script entry (torch + stdlib only): the arms on ``--device``, the report to ``--out``."""
    parser = argparse.ArgumentParser(description="Checkpoint stall of a step loop: sync vs async writers")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--quick", action="store_true", help="the tiny preset (a smoke run)")
    for name in ("width", "depth", "batch", "steps", "every", "rounds"):
        parser.add_argument(f"--{name}", type=int, default=None)
    parser.add_argument("--modes", default=None, help="comma-separated: sync, thread, process")
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="checkpoint folder (a temporary one)")
    parser.add_argument("--git-commit", default=None)
    args = parser.parse_args(argv)
    changes: dict[str, Any] = {"device": args.device}
    for name in ("width", "depth", "batch", "steps", "every", "rounds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.modes is not None:
        changes["modes"] = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if args.no_fsync:
        changes["fsync"] = False
    try:
        cfg = replace(quick_config() if args.quick else CheckpointBenchConfig(), **changes)
    except ValueError as exc:
        parser.error(str(exc))
    import torch

    from bench.gpu_common import device_name, write_json

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_checkpoint_"))
    try:
        doc = measure(cfg, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device = torch.device(doc["config"]["device"])
    doc = {
        "summary": doc["summary"],
        "config": doc["config"] | {"quick": args.quick},
        "device": device_name(device),
        "git_commit": args.git_commit,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "notes": doc["notes"],
        "details": doc["details"],
    }
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
