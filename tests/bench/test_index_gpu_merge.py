"""bench.index.merge_gpu_json / `feed bench index --merge-gpu-json`: a GPU run of bench/gpu_knn.py folded into
an existing index report without re-running the CPU benchmark."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench import gpu_knn
from bench import index as bench_index
from feed.cli import app
from feed.reports import write_report

K = 20


def _row(backend: str, data: str, n: int, p99: float, recall: float) -> dict[str, Any]:
    cell = {"p50_ms": p99 / 2, "p99_ms": p99, f"recall_at_{K}": recall, "queries": 30}
    return {"backend": backend, "data": data, "n": n, "build_s": 1.0, "unfiltered": cell, "filtered": cell}


@pytest.fixture
def cpu_report(tmp_path: Path) -> Path:
    """A small index report as bench.index.run lays it out (write_report), with no GPU figures."""
    cfg = bench_index.quick_config(
        sizes=(2000,), dim=32, k=K, spec=gpu_knn.ClusteredSpec(n_clusters=40), seen=60, seen_from_top=10
    )
    rows = [
        _row("faiss_exact", "synthetic_2000", 2000, 3.0, 1.0),
        _row("hnsw_replica", "synthetic_2000", 2000, 0.5, 0.97),
        _row("hnsw_replica", "real_v1", 600, 0.3, 0.99),
    ]
    gpu = bench_index.load_gpu_json(None)
    summary = bench_index.build_summary(rows, cfg) | bench_index.gpu_summary(gpu)
    config_doc = {**asdict(cfg), "spec": asdict(cfg.spec), "quick": False, "torch_threads": 2}
    details = {"results": rows, "datasets": {}, "gpu_knn": gpu, "seconds": 1.0}
    notes = bench_index.report_notes(cfg, summary, rows)
    return write_report("index", summary, config_doc, notes=notes, details=details, reports_dir=tmp_path)


@pytest.fixture(scope="module")
def gpu_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bench/gpu_knn.py JSON at a tiny size on the CPU, with the ExactIndex (serving path) check."""
    out = tmp_path_factory.mktemp("gpu") / "g.json"
    cfg = gpu_knn.GpuKnnConfig(
        sizes=(2000,),
        dim=32,
        batches=(1, 4),
        k=K,
        iters=3,
        min_iters=2,
        seconds=0.05,
        recall_queries=20,
        spec=gpu_knn.ClusteredSpec(n_clusters=40),
        device="cpu",
        serving_n=3000,
        serving_queries=40,
    )
    gpu_knn.run(cfg, out, log=lambda _msg: None)
    return out


def test_merge_adds_gpu_figures_and_keeps_the_cpu_report(cpu_report: Path, gpu_json: Path) -> None:
    before = json.loads(cpu_report.read_text())
    assert before["summary"]["gpu_knn_device"] is None

    out = bench_index.merge_gpu_json(cpu_report, gpu_json, gpu_commit="abc123")

    assert out == cpu_report
    doc = json.loads(out.read_text())
    assert list(doc) == [
        "summary",
        "config",
        "device",
        "git_commit",
        "created_at",
        "gpu_merged_at",
        "notes",
        "details",
    ]
    for key in ("config", "device", "git_commit", "created_at"):  # the CPU run's, untouched
        assert doc[key] == before[key], key
    cpu_keys = {k: v for k, v in before["summary"].items() if not k.startswith("gpu_")}
    assert {k: v for k, v in doc["summary"].items() if not k.startswith("gpu_")} == cpu_keys
    assert list(doc["summary"])[: len(cpu_keys)] == list(cpu_keys)  # CPU keys first, in their order
    assert doc["details"]["results"] == before["details"]["results"]

    s = doc["summary"]
    assert s["gpu_knn_device"].startswith("CPU")
    for dtype in ("fp16", "bf16"):
        assert s[f"gpu_{dtype}_2k_b1_p99_ms"] > 0
        assert 0.85 <= s[f"gpu_{dtype}_2k_recall_at_{K}"] <= 1.0
        assert s[f"gpu_{dtype}_2k_b4_qps"] > 0
        assert s[f"gpu_serving_{dtype}_3k_p99_ms_filtered"] > 0
        assert s[f"gpu_serving_{dtype}_3k_recall_at_{K}"] >= 0.9
    assert s["gpu_serving_fp32_3k_recall_at_20"] == 1.0
    assert s["gpu_serving_filter_violations"] == 0

    gpu = doc["details"]["gpu_knn"]
    assert gpu["source"] == str(gpu_json)
    assert gpu["git_commit"] == "abc123"
    assert len(gpu["results"]) == 4  # 2 dtypes × 2 batches
    assert doc["notes"][: len(before["notes"])] == before["notes"]
    (note,) = doc["notes"][len(before["notes"]) :]
    assert note.startswith(bench_index.GPU_MERGE_NOTE)
    assert "git commit abc123" in note
    assert json.loads(gpu_json.read_text())["created_at"] in note
    assert out.with_suffix(".png").stat().st_size > 10_000

    # merging again replaces the GPU section and its note rather than stacking them
    again = json.loads(bench_index.merge_gpu_json(cpu_report, gpu_json).read_text())
    assert sum(n.startswith(bench_index.GPU_MERGE_NOTE) for n in again["notes"]) == 1
    assert "git commit not recorded" in again["notes"][-1]
    assert "git_commit" not in again["details"]["gpu_knn"]
    assert list(again) == list(doc)


def test_merge_rejects_bad_files_and_writes_nothing(cpu_report: Path, gpu_json: Path, tmp_path: Path) -> None:
    before = cpu_report.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"not a bench/gpu_knn\.py report"):
        bench_index.merge_gpu_json(cpu_report, bad)
    not_json = tmp_path / "not.json"
    not_json.write_text("nope")
    with pytest.raises(json.JSONDecodeError):  # a ValueError
        bench_index.merge_gpu_json(cpu_report, not_json)
    assert cpu_report.read_text() == before
    assert not cpu_report.with_suffix(".png").exists()
    with pytest.raises(ValueError, match=r"not a bench/index\.py report"):
        bench_index.merge_gpu_json(gpu_json, gpu_json)  # the GPU JSON is no index report


def test_config_from_report_round_trips() -> None:
    cfg = bench_index.quick_config(sizes=(2000, 5000), spec=gpu_knn.ClusteredSpec(n_clusters=7, noise=0.5))
    doc = json.loads(json.dumps({**asdict(cfg), "spec": asdict(cfg.spec), "quick": True, "torch_threads": 2}))
    assert bench_index.config_from_report(doc) == cfg


def test_cli_merge_gpu_json(cpu_report: Path, gpu_json: Path, tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "home")]
    args = [*home, "bench", "index", "--merge-gpu-json", str(gpu_json), "--report", str(cpu_report)]
    result = CliRunner().invoke(app, [*args, "--gpu-commit", "deadbeef"])
    assert result.exit_code == 0, result.output
    assert "merged" in result.output
    doc = json.loads(cpu_report.read_text())
    assert doc["details"]["gpu_knn"]["git_commit"] == "deadbeef"
    assert doc["summary"]["gpu_knn_device"].startswith("CPU")

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = CliRunner().invoke(
        app, [*home, "bench", "index", "--merge-gpu-json", str(bad), "--report", str(cpu_report)]
    )
    assert result.exit_code == 2
    assert "not a bench/gpu_knn.py report" in result.output
    both = [*args, "--gpu-json", str(gpu_json)]
    assert CliRunner().invoke(app, both).exit_code == 2
