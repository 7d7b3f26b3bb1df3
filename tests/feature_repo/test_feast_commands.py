"""`feed features apply|materialize|online|historical` and `feed bench feast-online` on a fabricated home."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from feed.commands import feast as feast_cmds
from feed.config import FeedSettings


def _app(home: Path) -> typer.Typer:
    """feed/cli.py's `features` registration, without importing the other command modules."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = FeedSettings(home=home)

    for name in ("apply", "materialize", "online", "historical"):
        app.command(name)(getattr(feast_cmds, name))
    return app


@pytest.mark.integration
def test_feature_commands(tmp_path: Path, fabricate: Any) -> None:
    runner = CliRunner()
    app = _app(tmp_path)
    fab = fabricate.write_feature_tables(FeedSettings(home=tmp_path).paths())

    online = runner.invoke(app, ["online", "--member-id", "1"])
    assert online.exit_code == 1  # not applied yet: a one-line error, no traceback
    assert "feed features apply" in online.output
    assert "Traceback" not in online.output

    applied = runner.invoke(app, ["apply"])
    assert applied.exit_code == 0, applied.output
    assert "applied 9 feature views" in applied.output
    end = (fab.t + dt.timedelta(minutes=30)).isoformat()
    materialized = runner.invoke(app, ["materialize", "--end", end])
    assert materialized.exit_code == 0, materialized.output
    assert "post_engagement:" in materialized.output

    online = runner.invoke(app, ["online", "--member-id", "2"])
    assert online.exit_code == 0, online.output
    assert "'headline m2 s2'" in online.output

    s1 = (fab.s1 + dt.timedelta(minutes=1)).isoformat()
    args = ["historical", "--member-id", "1", "--member-id", "2", "--at", s1]
    historical = runner.invoke(app, [*args, "--post-id", "101", "--author-id", "1"])
    assert historical.exit_code == 0, historical.output
    assert "member_history__history_length" in historical.output
    assert "[0.5, 0.25]" in historical.output  # member_affinity__top_author_scores at s1

    missing = runner.invoke(app, args)  # ranking_v1 without post/author ids
    assert missing.exit_code == 1
    assert "needs entity column(s) ['author_id', 'post_id']" in missing.output

    bad_time = runner.invoke(app, ["materialize", "--end", "yesterday"])
    assert bad_time.exit_code == 2
    assert "ISO-8601" in bad_time.output


@pytest.mark.integration
def test_feast_online_bench_writes_its_report(materialized_home: Any, tmp_path: Path) -> None:
    from bench import feast_online

    settings = FeedSettings(home=materialized_home.paths.home)
    cfg = feast_online.BenchConfig(warmup=2, calls=20)
    out = feast_online.run(settings, cfg, reports_dir=tmp_path)
    report = json.loads(out.read_text())
    assert out == tmp_path / "bench" / "feast_online.json"
    summary = report["summary"]
    for key in ("sqlite_member_p50_ms", "sqlite_member_p99_ms", "sqlite_posts100_p99_ms"):
        assert summary[key] > 0, key
    # every member-keyed feature: 6 profile + 2 history + 4 affinity + 2 embedding
    assert summary["member_features"] == 14
    assert report["details"]["profile"]["sqlite_member"]
    has_redis = summary["redis_member_p99_ms"] is not None
    assert has_redis == (not any("redis-server not installed" in n for n in report["notes"]))


@pytest.mark.integration
def test_feast_online_bench_refuses_an_unmaterialized_home(tmp_path: Path) -> None:
    from bench import feast_online
    from pipelines.feature_store import FeatureStoreError

    with pytest.raises(FeatureStoreError, match="not materialized"):
        feast_online.run(FeedSettings(home=tmp_path), reports_dir=tmp_path)
