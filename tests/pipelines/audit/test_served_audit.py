"""The audit end to end against the real service on ``served_home`` (real Feast SQLite, the session's Milvus
Lite server, the promoted encoder and GR): served feeds of a seeded sample, exposure figures that add up,
quality per member group from the training sets' test splits, the report. The home is read-only here: the
audit writes its work folder and report under tmp_path, and serves with impression logging off."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from feed.config import FeedPaths
from feed.flows import audit as flow

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_audit_of_the_served_feeds(served_home: FeedPaths, tmp_path: Path) -> None:
    from pipelines import delta_io

    impressions_before = delta_io.version(served_home.table("raw_impressions"))
    landing_before = sorted(p.name for p in served_home.landing.glob("*"))
    cfg = flow.AuditRunConfig(
        members=25,
        seed=1,
        k=20,
        device="cpu",
        max_anchors=60,
        max_eval_days=1,
        reports_dir=str(tmp_path / "r"),
    )
    outcome = flow.run_audit(served_home, cfg, work=tmp_path / "work")
    assert outcome.passed, outcome.static
    doc = json.loads((tmp_path / "r" / "audit.json").read_text())
    s = doc["summary"]
    assert s["feeds"] == 25
    assert 0 < s["items"] <= 25 * 20
    for key in ("exposure_share_by_group", "post_share_by_group"):
        assert sum(s[key].values()) == pytest.approx(1.0)
    assert set(s["post_share_by_group"]) >= {"A", "B"}
    assert 0.0 <= s["gini_exposure"] < 1.0
    assert 0.0 < s["top1pct_author_engagement_share"] < 1.0
    assert doc["details"]["feeds"]["model_versions"]["ranking"] != [None]
    assert s["quality_source"] == "training_sets"
    for group in ("A", "B", "all"):
        metrics = s["quality_by_member_group"][group]
        assert 0.0 <= metrics["auc_click"] <= 1.0
        assert metrics["n_targets"] > 0
        assert "recall_at_10" in metrics
    # the same sample again: the same feeds (deterministic sample, same home)
    again = flow.run_audit(served_home, dataclasses.replace(cfg, quality=False), work=tmp_path / "work2")
    assert again.passed
    doc2 = json.loads((tmp_path / "r" / "audit.json").read_text())
    assert doc2["summary"]["exposure_share_by_group"] == pytest.approx(s["exposure_share_by_group"])
    # nothing was logged back as impressions
    assert delta_io.version(served_home.table("raw_impressions")) == impressions_before
    assert sorted(p.name for p in served_home.landing.glob("*")) == landing_before
    assert not (served_home.data / "audit").exists()
