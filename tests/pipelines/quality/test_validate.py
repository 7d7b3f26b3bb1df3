"""``validate_published`` and ``feed features validate`` re-check published tables without writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from feed.commands.quality import validate
from feed.config import FeedPaths, FeedSettings
from pipelines import delta_io
from pipelines.quality import gate_and_publish, validate_published
from pipelines.quality.suites import SuiteInputs, build_suite
from pipelines.quality.validation import plan_passes, validate_batch
from pipelines.schemas import POST_ENGAGEMENT

TABLE = "post_engagement"


def _cli(home: Path) -> typer.Typer:
    """Just the validate command, wired as feed/cli.py wires it (ctx.obj is the settings)."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = FeedSettings(home=home)

    app.command("validate")(validate)
    return app


def test_validate_published_passes_clean_tables_without_writing(kit: Any, published_paths: FeedPaths) -> None:
    path = published_paths.table(TABLE)

    (result,) = validate_published(published_paths, now=kit.now)

    assert result.passed, result.summary
    assert (result.table, result.version, result.rows) == (TABLE, 1, 2 * kit.n_keys)
    assert delta_io.version(path) == 1
    assert not published_paths.quarantine.exists()


def test_validate_published_flags_a_bad_version_written_around_the_gate(
    kit: Any, published_paths: FeedPaths
) -> None:
    path = published_paths.table(TABLE)
    bad = kit.set_value(kit.feature_batch(TABLE, snapshots=[kit.snapshots[2]]), "view_percentile", 0, 0)
    delta_io.write(path, bad, mode="append", schema=POST_ENGAGEMENT)

    (result,) = validate_published(published_paths, tables=[TABLE], now=kit.now)

    assert not result.passed
    assert result.version == 2
    assert [f["check"] for f in result.failures] == ["percentile_range"]


def test_validate_published_reports_a_missing_table(kit: Any, feed_paths: FeedPaths) -> None:
    (result,) = validate_published(feed_paths, tables=["author_stats"], now=kit.now)

    assert not result.passed
    assert result.version is None
    assert "not published" in result.summary


def test_cli_validate_exit_codes_and_quarantine_listing(kit: Any, published_paths: FeedPaths) -> None:
    runner = CliRunner()
    app = _cli(published_paths.home)

    clean = runner.invoke(app, ["validate"])
    assert clean.exit_code == 0, clean.output
    assert "PASS" in clean.output
    assert TABLE in clean.output

    refused = kit.set_value(kit.feature_batch(TABLE, snapshots=[kit.snapshots[2]]), "shares", 1, -3)
    gate_and_publish(TABLE, refused, paths=published_paths, run_id="nightly-3", now=kit.now)
    delta_io.write(
        published_paths.table(TABLE),
        kit.set_value(kit.feature_batch(TABLE, snapshots=[kit.snapshots[2]]), "like_percentile", 0, 101),
        mode="append",
        schema=POST_ENGAGEMENT,
    )

    failed = runner.invoke(app, ["validate", "--table", TABLE])
    assert failed.exit_code == 1, failed.output
    assert "FAIL" in failed.output
    assert "like_percentile" in failed.output  # the published table's failed expectation
    assert "nightly-3" in failed.output  # the quarantined batch, with its failed expectation
    assert "shares" in failed.output

    unknown = runner.invoke(app, ["validate", "--table", "nope"])
    assert unknown.exit_code == 2
    assert "nope" in unknown.output


def test_passes_keep_suite_order(kit: Any) -> None:
    batch = kit.feature_batch(TABLE)
    suite = build_suite(TABLE, SuiteInputs(now=kit.now))

    validation = validate_batch(TABLE, batch, suite)

    types = [r["expectation_config"]["type"] for r in validation.result["results"]]
    assert types == [e.expectation_type for e in suite.expectations]
    passes = plan_passes(suite.expectations, fallback="post_id")
    assert len(passes) < len(suite.expectations)  # expectations over the same columns share a pass
    assert sorted(i for _, indices in passes for i in indices) == list(range(len(suite.expectations)))
    assert validation.result["statistics"]["evaluated_expectations"] == len(suite.expectations)


@pytest.mark.slow
def test_large_post_engagement_batch_validates_under_a_minute(kit: Any, feed_paths: FeedPaths) -> None:
    """1.5M rows (the size of a 3-snapshot synthetic run); the brief asks for well under a minute."""
    import numpy as np
    import pyarrow as pa

    n_posts, snapshots = 500_000, list(kit.snapshots)
    post_id = np.tile(np.arange(n_posts), len(snapshots))
    base = 100 + post_id
    columns: dict[str, Any] = {"post_id": post_id}
    for count in ("views", "likes", "comments", "shares"):
        columns |= {
            count: base,
            f"{count}_1d": base // 8,
            f"{count}_7d": base // 4,
            f"{count}_28d": base // 2,
        }
    for name in ("view_percentile", "like_percentile", "comment_percentile", "share_percentile"):
        columns[name] = 1 + post_id % 100
    stamps = pa.array(
        np.repeat(np.array([s.replace(tzinfo=None) for s in snapshots], dtype="datetime64[us]"), n_posts)
    ).cast(POST_ENGAGEMENT.field("event_timestamp").type)
    columns |= {"event_timestamp": stamps, "created": stamps}
    batch = pa.table({f.name: pa.array(columns[f.name]).cast(f.type) for f in POST_ENGAGEMENT})
    suite = build_suite(TABLE, SuiteInputs(now=kit.now, expected_snapshots=snapshots))

    validation = validate_batch(TABLE, batch, suite)

    assert validation.success, validation.failures
    assert validation.seconds < 60
