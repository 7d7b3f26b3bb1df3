"""`feed train build-retrieval-set` as a command: a home without a lake gets a clear error."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from feed.commands.retrieval_set import build_retrieval_set
from feed.config import FeedSettings


def test_missing_lake_is_a_clear_error(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(build_retrieval_set)
    result = CliRunner().invoke(app, ["--name", "x"], obj=FeedSettings(home=tmp_path))
    assert result.exit_code == 2, result.output
    assert "raw_impressions is missing" in result.output
    assert "Traceback" not in result.output


def test_bad_option_is_a_clear_error(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(build_retrieval_set)
    result = CliRunner().invoke(app, ["--k-hard", "-1"], obj=FeedSettings(home=tmp_path))
    assert result.exit_code == 2, result.output
    assert "k_hard must be >= 0" in result.output
