"""bench/gr_train_profile.py on CPU: the --smoke run goes through every section (training arm, profiler,
checkpoint arms) and writes the report contract; the synthetic batches respect the budget and carry a label
signal that only the history explains; bad settings are refused before anything runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench import gr_train_profile as gtp

SUMMARY_KEYS = (
    "step_ms_p50_triton",
    "step_ms_p50_pytorch",
    "speedup_triton",
    "tokens_per_s_triton",
    "peak_mem_gb",
    "loss_first",
    "loss_last",
    "ckpt_stall_per_save_s_sync",
    "ckpt_stall_per_save_s_async",
)


def test_smoke_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "gr_train_profile.json"
    work = tmp_path / "work"
    work.mkdir()
    rc = gtp.main(["--smoke", "--out", str(out), "--git-commit", "abc123", "--work-dir", str(work)])

    assert rc == 0
    doc = json.loads(out.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at", "notes"} <= doc.keys()
    assert doc["git_commit"] == "abc123"
    assert doc["skipped"] == []
    assert doc["errors"] == []
    s = doc["summary"]
    assert set(SUMMARY_KEYS) <= s.keys()
    assert math.isfinite(s["loss_first"])
    assert math.isfinite(s["loss_last"])
    assert s["loss_last"] < s["loss_first"]  # 5 steps already learn the task biases
    assert s["step_ms_p50_pytorch"] > 0
    assert s["step_ms_p50_triton"] is None
    assert s["speedup_triton"] is None
    assert s["peak_mem_gb"] is None  # no CUDA
    assert isinstance(s["ckpt_stall_per_save_s_sync"], float)  # timings are reported, never asserted
    assert isinstance(s["ckpt_stall_per_save_s_async"], float)
    assert s["checkpoint_mb"] > 0
    assert set(s["phase_ms_p50"]) == set(gtp.PHASES)

    section = doc["models"]["tiny"]
    arm = section["arms"]["pytorch"]
    assert arm["steps"] == 4
    assert not arm["truncated"]
    assert len(section["losses"]["pytorch"]) == 5  # warmup + timed
    assert section["profile"]["top_ops_cpu"]
    assert len(section["profile"]["top_ops_cpu"]) <= 10
    assert {"name", "self_cpu_ms", "calls"} <= section["profile"]["top_ops_cpu"][0].keys()
    ck = section["checkpoint"]
    assert [a["arm"] for a in ck["arms"]] == ["none", "sync", "async", "none"]
    for a in ck["arms"][1:3]:
        assert [x["step"] for x in a["saves"]] == [1, 2]
        assert all(x["bytes"] > 0 for x in a["saves"])
    assert list(work.iterdir()) == []  # checkpoints removed


def test_a_failing_section_is_recorded_and_the_rest_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(tr: gtp.Trainer) -> dict:
        raise RuntimeError("profiler exploded")

    monkeypatch.setattr(gtp, "profile_steps", broken)
    out = tmp_path / "r.json"
    rc = gtp.main(["--smoke", "--out", str(out), "--ckpt-modes", "sync", "--work-dir", str(tmp_path)])

    assert rc == 1  # gpu_check's log shows the failure
    doc = json.loads(out.read_text())
    assert doc["errors"] == ["tiny/pytorch/profile: RuntimeError: profiler exploded"]
    assert "profile" not in doc["models"]["tiny"]
    assert isinstance(doc["summary"]["ckpt_stall_per_save_s_sync"], float)  # checkpointing still ran
    assert doc["summary"]["ckpt_stall_per_save_s_async"] is None


def test_batches_fit_the_budget_and_labels_follow_the_history() -> None:
    cfg = gtp.smoke_config(pool=6, token_budget=2_000, history_median=40.0)
    model = gtp.MODELS["tiny"]
    catalog, batches, stats = gtp.make_data(cfg, model, seed=1)

    assert catalog.vectors.shape == (cfg.posts + 1, model.item_emb_dim)
    assert float(catalog.vectors[0].abs().sum()) == 0.0  # row 0 = unknown post
    for b in batches:
        t = b.tensors
        h = t["hist_offsets"].diff()
        c = t["cand_offsets"].diff()
        assert b.tokens == int((h + c).sum()) <= cfg.token_budget
        assert b.members == h.numel() == c.numel() == t["profile"].shape[0]
        assert int(h.min()) >= 1
        assert int(h.max()) <= model.max_history
        assert cfg.min_candidates <= int(c.min())
        assert int(c.max()) <= cfg.max_candidates
        assert t["labels"].shape == (int(c.sum()), 6)
        assert int(t["hist_idx"].min()) >= 1
        assert int(t["hist_idx"].max()) <= cfg.posts
        inputs = gtp.ranker_inputs(t, catalog)
        assert inputs.hist_item.shape == (int(h.sum()), model.item_emb_dim)
    assert stats["history_at_cap_share"] > 0  # the heavy tail reaches the cap

    # clicks: a candidate whose topic the member's history leans to is clicked more often
    def topic(idx: torch.Tensor) -> torch.Tensor:
        return (idx - 1) % cfg.topics  # post idx i has topic (i - 1) % topics

    fav, other = [], []
    for b in batches:
        t = b.tensors
        hist_member = torch.repeat_interleave(torch.arange(b.members), t["hist_offsets"].diff())
        cand_member = torch.repeat_interleave(torch.arange(b.members), t["cand_offsets"].diff())
        for m in range(b.members):
            seen = torch.bincount(topic(t["hist_idx"][hist_member == m]), minlength=cfg.topics)
            top = set(seen.topk(3).indices.tolist())
            rows = (cand_member == m).nonzero().flatten()
            for r in rows.tolist():
                (fav if int(topic(t["cand_idx"][r])) in top else other).append(float(t["labels"][r, 0]))
    assert sum(fav) / len(fav) > sum(other) / len(other) + 0.15


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"kernels": ("cuda",)}, "kernels"),
        ({"models": ("huge",)}, "unknown models"),
        ({"ckpt_every": 5, "ckpt_steps": 4}, "ckpt_every"),
        ({"token_budget": 10}, "token_budget"),
    ],
)
def test_bad_settings_are_refused(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gtp.smoke_config(**changes)
