"""bench/attention.py without a GPU: the correctness-only pass (Kernel.TRITON under the Triton interpreter at
tiny fp32 shapes) writes the report contract with null GPU figures; the GPU grid's bookkeeping (cell order,
speedups, summary, deadline) runs on CPU stand-ins. Timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import attention as bench_attention
from feed.config import PROJECT_ROOT

CONTRACT = {"summary", "config", "device", "git_commit", "created_at", "notes", "results"}
GPU_FIGURES = (
    "fwd_speedup_vs_sdpa",
    "fwdbwd_speedup_vs_sdpa",
    "fwd_speedup_vs_flex",
    "fwdbwd_speedup_vs_flex",
)


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # A fresh process: TRITON_INTERPRET must be set before triton is first imported, which this pytest
    # process may already have done. No CUDA device either way, so the script takes its CPU path.
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cpu_run_checks_the_kernel_and_nulls_the_gpu_figures(tmp_path: Path) -> None:
    out = tmp_path / "attention.json"
    proc = _run([sys.executable, "bench/attention.py", "--out", str(out), "--git-commit", "abc123"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]

    doc = json.loads(out.read_text())
    assert doc.keys() >= CONTRACT
    assert doc["git_commit"] == "abc123"
    s = doc["summary"]
    assert s["device"] == doc["device"]
    assert s["mode"] == "cpu-correctness-only"
    for key in GPU_FIGURES:
        assert key in s
        assert s[key] is None
    assert s["gpu_figures_null_reason"]
    assert any("No CUDA" in note and "null" in note for note in doc["notes"])
    assert doc["results"] == []

    checks = doc["correctness"]
    assert {(c["L"], c["C"]) for c in checks} == {(20, 1), (20, 5), (37, 1), (37, 5)}
    for c in checks:
        assert "ours_error" not in c, c["ours_error"]
        for name in ("out", "dq", "dk", "dv"):
            assert c[f"ours_{name}_max_abs_diff_vs_reference"] < 1e-4
        assert c["sdpa_out_max_abs_diff_vs_reference"] < 1e-4  # the dense baselines' mask is the right one
        assert c["naive_out_max_abs_diff_vs_reference"] < 1e-4
        if "flex_error" not in c:  # eager flex on CPU: a check of its mask_mod
            assert c["flex_out_max_abs_diff_vs_reference"] < 1e-4
    assert all(v < 1e-4 for v in s["max_abs_diff_vs_reference"].values())


def test_cli_without_cuda_writes_the_check_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "cli" / "attention.json"
    cmd = [sys.executable, "-c", "from feed.cli import main; main()", "bench", "attention", "--out", str(out)]
    proc = _run(cmd, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["summary"]["fwd_speedup_vs_sdpa"] is None
    assert doc["config"]["batch"] == 8
    assert doc["config"]["deadline_s"] == 200


@pytest.fixture
def cpu_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU grid on CPU: ours → Kernel.PYTORCH (no interpreter needed), fixed memory, wall-clock ms."""
    from kernels import Kernel, jagged_attention

    real_arm_fn = bench_attention.arm_fn

    def arm_fn(arm: str, inp: Any, device: torch.device) -> Any:
        if arm != "ours":
            return real_arm_fn(arm, inp, device)
        return lambda q, k, v: jagged_attention(
            q, k, v, inp.seq_offsets, inp.num_candidates, kernel=Kernel.PYTORCH
        )

    def bench_ms(fn: Any, cfg: Any) -> float:
        began = time.perf_counter()
        fn()
        return (time.perf_counter() - began) * 1e3

    monkeypatch.setattr(bench_attention, "arm_fn", arm_fn)
    monkeypatch.setattr(bench_attention, "bench_ms", bench_ms)
    monkeypatch.setattr(bench_attention, "peak_mib", lambda fn, device: 1.0)


def _grid(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    cfg = bench_attention.AttentionBenchConfig(
        lengths=(16, 32), candidates=(4,), batch=2, key_cell=(32, 4), dtype="fp32", device="cpu",
        arms=("ours", "sdpa", "naive"), **changes,
    )  # fmt: skip
    out = tmp_path / "grid.json"
    doc = bench_attention.new_doc(cfg, torch.device("cpu"), "abc")
    doc["device_type"] = "cuda"  # pretend: the GPU bookkeeping is what is under test
    bench_attention.Runner(cfg, doc, out, torch.device("cpu"), lambda msg: None).run()
    assert json.loads(out.read_text())["results"] == doc["results"]  # rewritten after every cell
    return doc


@pytest.mark.usefixtures("cpu_stand_ins")
def test_gpu_grid_bookkeeping(tmp_path: Path) -> None:
    doc = _grid(tmp_path)
    rows = doc["results"]
    assert [(r["L"], r["arm"], r["pass"]) for r in rows[:4]] == [
        (32, "ours", "fwd"), (32, "sdpa", "fwd"), (32, "naive", "fwd"), (32, "ours", "fwdbwd"),
    ]  # fmt: skip
    assert len(rows) == 2 * 5  # per shape: 3 forward + 2 forward+backward (naive is forward only)
    assert all(r["ms"] is not None and r["speedup"] is not None for r in rows)
    s = doc["summary"]
    sdpa = next(r for r in rows if (r["L"], r["arm"], r["pass"]) == (32, "sdpa", "fwdbwd"))
    ours = next(r for r in rows if (r["L"], r["arm"], r["pass"]) == (32, "ours", "fwdbwd"))
    assert s["fwdbwd_speedup_vs_sdpa"] == sdpa["speedup"] == round(sdpa["ms"] / ours["ms"], 3)
    assert s["fwd_speedup_vs_flex"] is None  # flex not in this grid
    assert s["max_abs_diff_out_vs_sdpa"] < 1e-5
    assert s["max_abs_diff_dq_vs_sdpa"] < 1e-5
    naive = [r for r in rows if r["arm"] == "naive"]
    assert all(r["out_max_abs_diff_vs_ours"] < 1e-5 for r in naive)


@pytest.mark.usefixtures("cpu_stand_ins")
def test_deadline_skips_the_remaining_cells(tmp_path: Path) -> None:
    doc = _grid(tmp_path, deadline_s=0.0)
    assert len(doc["results"]) == 10
    assert all(r["ms"] is None and "deadline" in r["skipped"] for r in doc["results"])
    assert doc["summary"]["fwd_speedup_vs_sdpa"] is None
    assert doc["summary"]["cells_skipped_or_failed"] == 10
