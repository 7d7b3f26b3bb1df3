"""bench/loader.py: a tiny run writes the report with the contract keys into a tmp dir, not the repo; a
missing --set fails before measuring. Timings are reported, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import loader as bench_loader
from feed.config import REPORTS_DIR, FeedSettings


def test_quick_run_writes_the_report_outside_the_repo(tmp_path: Path) -> None:
    repo_report = REPORTS_DIR / "bench" / "loader.json"
    before = repo_report.stat().st_mtime_ns if repo_report.exists() else None
    cfg = bench_loader.quick_config(n_examples=200, token_budget=1024, max_history=256, window=64)

    out = bench_loader.run(FeedSettings(home=tmp_path / "home"), cfg, quick=True, reports_dir=tmp_path / "r")

    assert out == tmp_path / "r" / "bench" / "loader_quick.json"
    doc = json.loads(out.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at", "details"} <= doc.keys()
    s = doc["summary"]
    for key in (
        "packing_efficiency",
        "speedup",
        "padded_efficiency",
        "packed_tokens_per_s",
        "padded_tokens_per_s",
    ):
        assert isinstance(s[key], float | int)
    assert 0 < s["padded_efficiency"] < s["packing_efficiency"] <= 1
    assert s["real_packing_efficiency"] is None  # no --set
    syn = doc["details"]["synthetic"]
    assert syn["examples"] == 200
    assert syn["tokens_per_epoch"] > 0
    assert syn["packed"]["batches"] == s["packed_batches"] > 0
    assert syn["padded"]["batch_size"] == s["padded_batch_size"] >= 1
    assert doc["config"]["token_budget"] == 1024
    after = repo_report.stat().st_mtime_ns if repo_report.exists() else None
    assert after == before


def test_missing_set_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no ranking set"):
        bench_loader.run(
            FeedSettings(home=tmp_path), bench_loader.quick_config(), set_path="nope", reports_dir=tmp_path
        )
    assert not (tmp_path / "bench").exists()


def test_a_set_directory_is_measured_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.data import packing, ranking_data

    set_dir = tmp_path / "home" / "data" / "training" / "ranking" / "small"
    set_dir.mkdir(parents=True)
    loaded: list[tuple[Path, str]] = []

    def fake_load(path: Path, split: str) -> ranking_data.RankingArrays:
        loaded.append((Path(path), split))
        return packing.random_arrays(150, seed=4)

    monkeypatch.setattr(ranking_data, "load_ranking_arrays", fake_load)
    cfg = bench_loader.quick_config(n_examples=100, token_budget=2048, split="validation")
    out = bench_loader.run(
        FeedSettings(home=tmp_path / "home"), cfg, set_path="small", quick=True, reports_dir=tmp_path / "r"
    )
    assert loaded == [(set_dir, "validation")]  # a name resolves under <home>/data/training/ranking/
    doc = json.loads(out.read_text())
    assert doc["details"]["real"]["examples"] == 150
    assert doc["details"]["real"]["set"] == str(set_dir)
    assert isinstance(doc["summary"]["real_packing_efficiency"], float)
    assert isinstance(doc["summary"]["real_speedup"], float)
