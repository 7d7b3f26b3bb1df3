"""bench/retrieval_ablations.py: the statistics and the memory measurement (fast), and the quick run on the
tiny lake end to end (integration, slow)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench import retrieval_ablations as ablations
from feed.config import REPORTS_DIR, FeedPaths, FeedSettings

if TYPE_CHECKING:
    from training.retrieval.model import DualEncoder

CONTRACT_KEYS = (
    "corr_raw",
    "corr_percentile",
    "recall_at_10_raw",
    "recall_at_10_percentile",
    "recall_at_10_hardneg_0",
    "recall_at_10_hardneg_1",
    "recall_at_10_hardneg_2",
    "memory_per_seq_all_mb",
    "memory_per_seq_engaged_mb",
    "iter_seconds_all",
    "iter_seconds_engaged",
    "recall_at_10_all_history",
    "recall_at_10_engaged_history",
)


# --- statistics ---------------------------------------------------------------------------------------------


def test_mean_sd_ignores_unmeasured_values() -> None:
    stats = ablations.mean_sd([0.1, None, 0.3])
    assert stats["mean"] == pytest.approx(0.2)
    assert stats["sd"] == pytest.approx(math.sqrt(0.02))
    assert stats["n"] == 2
    assert stats["values"] == [0.1, None, 0.3]
    assert ablations.mean_sd([0.5])["sd"] is None
    assert ablations.mean_sd([None, None])["mean"] is None


def test_compare_flags_a_difference_inside_one_sd_as_noise() -> None:
    noisy = ablations.compare([0.10, 0.20, 0.30], [0.12, 0.22, 0.32])  # Δ 0.02, sd 0.1
    assert noisy["delta"] == pytest.approx(0.02)
    assert noisy["relative"] == pytest.approx(0.1)
    assert noisy["paired_sd"] == pytest.approx(0.0, abs=1e-12)  # paired: the same shift every seed
    assert noisy["within_noise"] is True
    assert ablations.verdict(noisy, +1) == "within noise"

    clear = ablations.compare([0.10, 0.11, 0.12], [0.20, 0.21, 0.22])
    assert clear["within_noise"] is False
    assert ablations.verdict(clear, +1) == "agrees"
    assert ablations.verdict(clear, -1) == "disagrees"


def test_one_seed_gives_no_noise_estimate() -> None:
    c = ablations.compare([0.1], [0.2])
    assert c["delta"] == pytest.approx(0.1)
    assert c["within_noise"] is None
    assert ablations.verdict(c, +1) == "no noise estimate (1 seed)"
    assert ablations.verdict(ablations.compare([None], [0.2]), +1) == "not measured"


def test_history_verdict_reads_not_worse() -> None:
    runs = {
        arm.name: [{"seed": s, "recall_at_10": 0.3 + 0.01 * s} for s in range(3)] for arm in ablations.ARMS
    }
    runs["all_history"] = [{"seed": s, "recall_at_10": 0.5 + 0.01 * s} for s in range(3)]
    comparisons = ablations._comparisons(runs)
    assert comparisons["history_recall_at_10"]["verdict"] == "disagrees (engaged-only worse)"
    runs["all_history"] = [{"seed": s, "recall_at_10": 0.3 + 0.01 * s} for s in range(3)]
    assert (
        ablations._comparisons(runs)["history_recall_at_10"]["verdict"] == "agrees (not worse; within noise)"
    )


def test_fit_recovers_a_quadratic_and_its_linear_part() -> None:
    points = [(n, int(1000 + 50 * n + 3 * n * n)) for n in (16, 32, 64, 128, 256)]
    predict, linear, residual = ablations._fit_bytes(points)
    assert predict(1000) == pytest.approx(1000 + 50_000 + 3_000_000, rel=1e-6)
    assert linear(1000) == pytest.approx(1000 + 50_000, rel=1e-3)
    assert residual < 1e-9


def test_bench_config_presets_and_errors() -> None:
    quick = ablations.bench_config(quick=True)
    assert (quick.profile, quick.steps, quick.seeds, quick.max_eval_anchors) == ("tiny", 3, (0,), 50)
    cpu = ablations.bench_config("cpu", seeds=4)
    assert cpu.seeds == (0, 1, 2, 3)
    assert cpu.profile == "cpu"
    with pytest.raises(ValueError, match="unknown bench profile 'tpu'"):
        ablations.bench_config("tpu")
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        ablations.bench_config("cpu", seeds=0)


def test_arms_share_one_base_configuration() -> None:
    by_name = {a.name: a for a in ablations.ARMS}
    base = by_name[ablations.BASE_ARM]
    assert (base.counts, base.history, base.n_hard) == ("percentile", "engaged", 1)
    # each other arm differs from the base in exactly one field
    for arm in ablations.ARMS:
        if arm is base:
            continue
        changed = [f for f in ("counts", "history", "n_hard") if getattr(arm, f) != getattr(base, f)]
        assert len(changed) == 1, arm


def test_missing_set_is_a_clear_error(tmp_path: Path) -> None:
    from training.data.retrieval_set import RetrievalSetError

    with pytest.raises(RetrievalSetError, match="build-retrieval-set --name nope"):
        ablations.run(FeedSettings(home=tmp_path), set_name="nope", quick=True, reports_dir=tmp_path)
    assert not (tmp_path / "bench").exists()


# --- memory measurement (the shipped MiniLM, cut to the tiny profile's 2 layers) ------------------------


@pytest.fixture(scope="module")
def tiny_encoder() -> DualEncoder:
    from training.retrieval.model import DualEncoder
    from training.retrieval.profiles import get_profile

    return DualEncoder(get_profile("tiny").encoder)


def test_activation_bytes_scale_with_batch_and_length(tiny_encoder: DualEncoder) -> None:
    tok = tiny_encoder.tokenizer
    one = tok(["machine learning for feeds " * 8], truncation=True, max_length=32, return_tensors="pt")
    two = {k: v.repeat(2, 1) for k, v in one.items()}
    short = tok(["machine learning"], return_tensors="pt")
    b1 = ablations.activation_bytes(tiny_encoder, one["input_ids"], one["attention_mask"])
    b2 = ablations.activation_bytes(tiny_encoder, two["input_ids"], two["attention_mask"])
    bs = ablations.activation_bytes(tiny_encoder, short["input_ids"], short["attention_mask"])
    assert b1 > 0
    assert b2 == pytest.approx(2 * b1, rel=0.02)  # per-sequence activations, nothing shared
    assert bs < b1
    # weights are not activations: one short sequence keeps far less than the trainable weights
    weights = sum(p.numel() * p.element_size() for p in tiny_encoder.parameters() if p.requires_grad)
    assert bs < weights
    assert all(p.grad is None for p in tiny_encoder.parameters())  # measurement leaves no gradients
    assert isinstance(b1, int)


# --- the quick run end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ablation_home(tiny_feature_home: FeedPaths, tmp_path_factory: pytest.TempPathFactory) -> FeedPaths:
    """The shared tiny feature home → the retrieval set ``default`` (≈ 15 s)."""
    from training.data.retrieval_set import RetrievalSetConfig, build_retrieval_set

    paths = FeedPaths(home=tmp_path_factory.mktemp("ablation_home"))
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    build_retrieval_set(paths, RetrievalSetConfig(name="default"))
    return paths


@pytest.mark.integration
@pytest.mark.slow
def test_quick_run_writes_every_contract_key(ablation_home: FeedPaths, tmp_path: Path) -> None:
    repo_report = REPORTS_DIR / "bench" / "retrieval_ablations.json"
    before = repo_report.stat().st_mtime_ns if repo_report.exists() else None

    out = ablations.run(FeedSettings(home=ablation_home.home), quick=True, reports_dir=tmp_path)

    assert out == tmp_path / "bench" / "retrieval_ablations.json"
    doc = json.loads(out.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at"} <= doc.keys()
    summary = doc["summary"]
    for key in CONTRACT_KEYS:
        assert isinstance(summary[key], float), key
    for key in ("recall_at_10_raw", "recall_at_10_hardneg_0", "recall_at_10_all_history"):
        assert 0.0 <= summary[key] <= 1.0
    assert -1.0 <= summary["corr_raw"] <= 1.0
    assert summary["memory_per_seq_all_mb"] > 0
    assert summary["iter_seconds_engaged"] > 0
    # uncapped: the all-impressions history is never shorter than the engaged one (a superset)
    assert summary["memory_per_seq_all_uncapped_mb"] >= summary["memory_per_seq_engaged_uncapped_mb"]
    details = doc["details"]
    assert {a.name for a in ablations.ARMS} == set(details["arms"])
    assert all(len(v["per_seed"]) == 1 for v in details["arms"].values())
    assert details["comparisons"]["hardneg_2_recall_at_10"]["verdict"] == "no noise estimate (1 seed)"
    assert details["figures_device"] == doc["device"]
    assert details["linkedin_claims"]["history_memory"].startswith("−37%")
    md = out.with_suffix(".md").read_text()
    assert doc["device"] in md
    assert "| hardneg_2 vs hardneg_0 | recall_at_10 |" in md
    assert out.with_suffix(".png").stat().st_size > 10_000
    after = repo_report.stat().st_mtime_ns if repo_report.exists() else None
    assert after == before  # the repo's committed report is never touched by tests
