"""bench/scoring.py: a small run writes the contract keys into a tmp dir (not the repo), and the two paths it
times give the same scores. Timings are reported, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench import scoring
from feed.config import FeedSettings


def test_small_run_writes_the_report_and_paths_agree(tmp_path: Path) -> None:
    out = scoring.run(
        FeedSettings(home=tmp_path / "home"),
        history=40,
        candidates=12,
        reps=2,
        per_candidate_reps=1,
        chunk=5,
        reports_dir=tmp_path / "r",
    )
    assert out == tmp_path / "r" / "bench" / "scoring.json"
    doc = json.loads(out.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at"} <= doc.keys()
    summary = doc["summary"]
    for key in ("speedup", "shared_p99_ms", "shared_p50_ms", "per_candidate_p50_ms"):
        assert summary[key] > 0
    assert summary["max_abs_diff"] < 1e-4  # shared-context scores == per-candidate scores
    assert doc["config"]["model"].startswith("default GRConfig")  # no promoted GR in this home


def test_chunks_cover_every_candidate_once() -> None:
    from training.ranking.model import GRConfig

    inputs = scoring.request_inputs(GRConfig(item_emb_dim=8), history=7, candidates=11)
    parts = scoring.chunks(inputs, 4)
    assert [int(p.cand_offsets[-1]) for p in parts] == [4, 4, 3]
    assert all(int(p.hist_offsets[-1]) == 7 * int(p.cand_offsets[-1]) for p in parts)
    ids = [int(x) for p in parts for x in p.cand_post_id]
    assert ids == inputs.cand_post_id.tolist()
