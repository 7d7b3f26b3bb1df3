"""The kernel benchmarks' CPU paths: AUC vs sklearn (+ merging a GPU run), the GR kernel switch under the
Triton interpreter, combining two attention runs, and the GPU-only profile refusing a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import attention, attention_profile, auc, gr_kernels


def test_auc_bench_is_exact_and_merges_a_gpu_run() -> None:
    doc = auc.run(auc.AucBenchConfig(n=5_000, tasks=3, repeats=1), log=lambda _: None)
    s = doc["summary"]
    assert s["max_abs_diff"] < 1e-12  # exact against sklearn on both the fp32 and the tie-heavy bf16 case
    assert s["speedup_vs_sklearn_cpu"] > 0
    assert s["speedup_vs_sklearn_gpu"] is None
    assert any("no CUDA" in n for n in doc["notes"])
    gpu = {"summary": {"device": "GPU X", "speedup_vs_sklearn_gpu": 900.0, "triton_vs_pytorch_gpu": 2.0,
                       "triton_gpu_ms": 1.5, "speedup_vs_sklearn_cpu": 11.0},
           "git_commit": "abc", "created_at": "today"}  # fmt: skip
    merged = auc.merge_gpu(doc, gpu)
    assert merged["summary"]["speedup_vs_sklearn_gpu"] == 900.0
    assert merged["summary"]["speedup_vs_sklearn_cpu"] == s["speedup_vs_sklearn_cpu"]  # this machine's
    assert not any("no CUDA" in n for n in merged["notes"])
    assert "GPU X" in merged["notes"][-1]


def test_gr_kernel_switch_gives_the_same_logits(tmp_path: Path) -> None:
    out = tmp_path / "gr.json"
    assert gr_kernels.main(["--smoke", "--out", str(out)]) == 0
    s = json.loads(out.read_text())["summary"]
    assert s["max_abs_logit_diff_fp32"] < 1e-4
    assert s["train_step_speedup"] is None  # interpreter timings are not reported as speedups


def _run_doc(batch: int, fwd: float, sdpa: float, device: str = "GPU X") -> dict:
    rows = [
        {"L": 1024, "C": 512, "B": batch, "arm": arm, "pass": p, "ms": ms, "speedup": ms_ref}
        for arm, ms, ms_ref in (("ours", fwd, 1.0), ("sdpa", sdpa, sdpa / fwd))
        for p in ("fwd", "fwdbwd")
    ]
    key = {"L": 1024, "C": 512, "B": batch, "H": 2, "D": 32, "dtype": "bf16"}
    return {
        "summary": {"key_cell": key, "fwd_speedup_vs_sdpa": sdpa / fwd, "fwdbwd_speedup_vs_sdpa": sdpa / fwd,
                    "fwd_speedup_vs_flex": 1.0, "fwdbwd_speedup_vs_flex": 1.3, "ours_fwd_ms": fwd,
                    "ours_fwdbwd_ms": fwd, "max_err_out_ours_vs_fp32": 0.01,
                    "max_err_out_sdpa_vs_fp32": 0.01, "max_err_dq_ours_vs_fp32": 0.02,
                    "max_err_dq_sdpa_vs_fp32": 0.02, "correctness_errors": []},
        "config": {"batch": batch, "lengths": [1024], "candidates": [512], "heads": 2, "head_dim": 32},
        "device": device, "git_commit": "abc", "created_at": "today", "notes": ["n"], "correctness": [],
        "results": rows,
    }  # fmt: skip


def test_attention_combine_takes_the_headline_from_the_saturated_run(tmp_path: Path) -> None:
    sat, tra, out = tmp_path / "sat.json", tmp_path / "tra.json", tmp_path / "attention.json"
    sat.write_text(json.dumps(_run_doc(64, fwd=0.1, sdpa=0.3)))
    tra.write_text(json.dumps(_run_doc(8, fwd=0.09, sdpa=0.07)))
    doc = attention.combine(sat, tra, None, out)
    s = doc["summary"]
    assert s["key_cell"]["B"] == 64
    assert s["fwd_speedup_vs_sdpa"] == pytest.approx(3.0)
    assert s["goals_met"] == {
        "fwd_speedup_vs_sdpa": True,
        "fwdbwd_speedup_vs_sdpa": True,
        "fwd_speedup_vs_flex": False,
        "fwdbwd_speedup_vs_flex": True,
    }
    assert s["training_batch"]["key_cell"]["B"] == 8
    assert s["training_batch"]["fwd_speedup_vs_sdpa"] == pytest.approx(0.07 / 0.09)
    assert json.loads(out.read_text())["summary"] == s
    assert out.with_suffix(".png").exists()
    assert (tmp_path / "attention_b8.png").exists()
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_run_doc(8, 0.1, 0.1, device="GPU Y")))
    with pytest.raises(ValueError, match="different GPUs"):
        attention.combine(sat, other, None, out)


def test_attention_profile_needs_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("measures on a GPU here")
    assert attention_profile.main(["--out", str(tmp_path / "p.json")]) == 2
