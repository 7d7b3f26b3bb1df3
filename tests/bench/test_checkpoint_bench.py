"""bench/checkpoint.py: a tiny run writes the report with the contract keys into the home, not the repo."""

from __future__ import annotations

import json
from pathlib import Path

from bench import checkpoint as bench_checkpoint
from feed.config import REPORTS_DIR, FeedSettings


def test_quick_run_writes_the_report_into_the_home(tmp_path: Path) -> None:
    repo_report = REPORTS_DIR / "bench" / "checkpoint.json"
    before = repo_report.stat().st_mtime_ns if repo_report.exists() else None
    cfg = bench_checkpoint.quick_config(width=64, steps=4, every=2, rounds=2, fsync=False)

    out = bench_checkpoint.run(FeedSettings(home=tmp_path / "home"), cfg, quick=True)

    assert out == tmp_path / "home" / "artifacts" / "reports" / "bench" / "checkpoint.json"
    doc = json.loads(out.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at"} <= doc.keys()
    summary = doc["summary"]
    for key in ("async_stall_s", "sync_stall_s", "async_process_stall_s", "checkpoint_mb", "steps"):
        assert key in summary
    assert isinstance(summary["async_stall_s"], float)  # timings are reported, never asserted
    assert isinstance(summary["sync_stall_s"], float)
    assert summary["steps"] == 4
    assert summary["saves_per_arm"] == 2
    assert summary["checkpoint_mb"] > 0
    arms = [a["arm"] for a in doc["details"]["arms"]]
    assert arms == [
        "baseline",
        "sync",
        "thread",
        "process",
        "baseline",
        "thread",
        "process",
        "sync",
        "baseline",
    ]
    for arm in doc["details"]["arms"]:
        if arm["arm"] == "baseline":
            assert "saves" not in arm
            continue
        assert isinstance(arm["stall_s"], float)
        assert [s["step"] for s in arm["saves"]] == [2, 4]
        assert all(s["bytes"] > 0 for s in arm["saves"])
    assert not (tmp_path / "home" / "artifacts" / "bench" / "checkpoint").exists()  # checkpoints removed
    after = repo_report.stat().st_mtime_ns if repo_report.exists() else None
    assert after == before
