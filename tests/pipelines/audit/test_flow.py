"""The whole audit (feed.flows.audit + ``feed audit``) on the hand-sized lake, with a stand-in for the feed
service (the real one is exercised by the integration test): report contract, plots, the quality fallback,
and the exit codes of the CLI."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import typer
from typer.testing import CliRunner

from feed.config import FeedPaths, FeedSettings
from feed.flows import audit as flow

from .conftest import POST_AUTHOR

CONTRACT = {
    "exposure_share_by_group",
    "post_share_by_group",
    "exposure_ratio_by_group",
    "gini_exposure",
    "top1pct_author_exposure_share",
    "top1pct_author_engagement_share",
    "quality_by_member_group",
}
PERSONALIZED = [101, 107, 105]
POPULAR = [107, 101]


class StandInService:
    """Answers like serving.pipeline.FeedService: members 1–3 get a personalized feed, the others the
    popular fallback."""

    opened_with: ClassVar[list[Any]] = []

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: Any) -> Iterator[StandInService]:
        cls.opened_with.append(settings)
        yield cls(settings)

    def feed(self, request: Any) -> SimpleNamespace:
        personal = request.member_id <= 3
        posts = PERSONALIZED if personal else POPULAR
        items = [
            SimpleNamespace(post_id=p, author_id=POST_AUTHOR[p], score=1.0 / (i + 1))
            for i, p in enumerate(posts)
        ]
        return SimpleNamespace(
            request_id=f"req-{request.member_id}",
            items=items[: request.k],
            fallbacks=[] if personal else ["no_member_vector"],
            cold_start=False,
            model_versions={"retrieval": "r1", "ranking": None},
        )


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> type[StandInService]:
    import serving.pipeline

    StandInService.opened_with = []
    monkeypatch.setattr(serving.pipeline, "FeedService", StandInService)

    @contextlib.contextmanager
    def no_server(paths: FeedPaths) -> Iterator[bool]:
        yield False

    monkeypatch.setattr(flow, "index_server", no_server)
    return StandInService


def test_run_audit_writes_the_report(
    small_lake: FeedPaths, stand_in: type[StandInService], tmp_path: Path
) -> None:
    cfg = flow.AuditRunConfig(members=10, device="cpu", reports_dir=str(tmp_path / "reports"))
    outcome = flow.run_audit(small_lake, cfg, run="t1")
    assert outcome.passed
    settings = stand_in.opened_with[0]
    assert settings.log_impressions is False  # the audit's feeds are never logged as impressions
    assert settings.timeouts_ms.ranking >= 60_000  # the model's feed, not a busy machine's fallbacks
    doc = json.loads((tmp_path / "reports" / "audit.json").read_text())
    assert set(doc["summary"]) >= CONTRACT
    assert {"config", "device", "git_commit", "created_at", "notes"} <= set(doc)
    s = doc["summary"]
    assert s["static_check_passed"] is True
    assert s["feeds"] == 6  # every member of the lake (fewer than asked)
    assert s["post_share_by_group"] == pytest.approx({"A": 0.6, "B": 0.4})
    # members 1-3: 101 (A), 107 (B), 105 (A); members 4-6: 107 (B), 101 (A)
    w1, w2 = 1 / math.log2(3), 1 / math.log2(4)
    a, b = 3 * (1 + w2) + 3 * w1, 3 * w1 + 3
    assert s["exposure_share_by_group"] == pytest.approx({"A": a / (a + b), "B": b / (a + b)})
    assert s["exposure_by_path"]["personalized"]["feeds"] == 3
    assert s["exposure_by_path"]["popular"]["feeds"] == 3
    assert s["top1pct_author_engagement_share"] == pytest.approx(5 / 9)
    # no training sets in this home: Recall from the served feeds vs held-out engagements (member 3, A)
    assert s["quality_source"] == "served_feeds"
    assert s["quality_by_member_group"]["A"]["recall_at_10"] == pytest.approx(1.0)
    assert s["quality_by_member_group"]["A"]["n_members"] == 1
    assert s["quality_gap_by_metric"] == {}  # only group A has held-out engagements: no gap to measure
    assert any("lower bound" in n for n in doc["notes"])
    assert any("3 of 6 feeds came from the recent-popular fallback" in n for n in doc["notes"])
    for name in ("audit.md", "exposure_vs_post_share.png", "lorenz_creator_exposure.png"):
        assert (tmp_path / "reports" / name).stat().st_size > 0
    md = (tmp_path / "reports" / "audit.md").read_text()
    assert "## Creator exposure" in md
    assert "![lorenz_creator_exposure.png](lorenz_creator_exposure.png)" in md
    work = small_lake.data / "audit" / "t1"
    assert {p.name for p in work.iterdir()} == {
        "static.json",
        "feeds.parquet",
        "exposure.json",
        "quality.json",
    }


def test_a_logged_audit_reads_the_served_impressions(small_lake: FeedPaths, tmp_path: Path) -> None:
    cfg = flow.AuditRunConfig(source="logged", quality=False, reports_dir=str(tmp_path / "reports"))
    outcome = flow.run_audit(small_lake, cfg, run="t2")
    assert outcome.published is not None
    doc = json.loads((tmp_path / "reports" / "audit.json").read_text())
    assert doc["summary"]["feeds"] == 2
    assert doc["details"]["feeds"]["source"] == "logged"
    assert doc["summary"]["quality_by_member_group"] is None
    assert any("quality audit skipped" in n for n in doc["notes"])


def _cli(home: Path) -> typer.Typer:
    from feed.commands.audit import audit

    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = FeedSettings(home=home)

    app.command("audit")(audit)
    return app


def test_cli_static_only_exits_1_naming_a_planted_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.ranking import features

    runner = CliRunner()
    ok = runner.invoke(_cli(tmp_path), ["audit", "--static-only"])
    assert ok.exit_code == 0, ok.output
    assert "static sensitive-attribute check passed" in ok.output
    monkeypatch.setattr(features, "PROFILE_FEATURES", (*features.PROFILE_FEATURES, "gender"))
    bad = runner.invoke(_cli(tmp_path), ["audit", "--static-only"])
    assert bad.exit_code == 1, bad.output
    assert "model input training.ranking.features.PROFILE_FEATURES: 'gender'" in bad.output


def test_cli_full_audit_exits_1_after_writing_the_report_when_the_check_fails(
    small_lake: FeedPaths, stand_in: type[StandInService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.ranking import features

    monkeypatch.setattr(features, "CONTEXT_FEATURES", (*features.CONTEXT_FEATURES, "author_group"))
    out = tmp_path / "reports"
    args = ["audit", "--members", "4", "--no-quality", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(_cli(small_lake.home), args)
    assert result.exit_code == 1, result.output
    assert "'author_group' names the sensitive attribute 'group'" in result.output
    doc = json.loads((out / "audit.json").read_text())
    assert doc["summary"]["static_check_passed"] is False
    assert doc["summary"]["static_check_violations"] == 1
    assert doc["summary"]["feeds"] == 4
    assert any(n.startswith("STATIC CHECK FAILED") for n in doc["notes"])


def test_cli_reports_a_missing_attribute_as_a_usage_error(
    small_lake: FeedPaths, stand_in: type[StandInService]
) -> None:
    result = CliRunner().invoke(_cli(small_lake.home), ["audit", "--attribute", "gender", "--no-quality"])
    assert result.exit_code == 2, result.output
    assert "no attribute 'gender'" in result.output


@pytest.mark.integration
def test_the_dag_runs_the_audit_under_airflow(small_lake: FeedPaths, tmp_path: Path) -> None:
    """``airflow dags test feed_audit`` on the hand-sized lake: the logged feeds of the run's week (the
    served impressions at 2026-09-28 fall in the interval ending 2026-09-29), no quality, the report."""
    import datetime as dt

    from feed.orchestration import dags_test

    out = tmp_path / "reports"
    conf = {"source": "logged", "quality": False, "reports_dir": str(out)}
    result = dags_test(small_lake, "feed_audit", dt.date(2026, 9, 29), conf)
    assert result.state == "success"
    doc = json.loads((out / "audit.json").read_text())
    assert doc["summary"]["feeds"] == 2
    assert doc["summary"]["static_check_passed"] is True
    assert any(n.startswith("DAG run ") for n in doc["notes"])
    (work,) = (small_lake.data / "audit").iterdir()
    assert {p.name for p in work.iterdir()} == {"static.json", "feeds.parquet", "exposure.json"}
