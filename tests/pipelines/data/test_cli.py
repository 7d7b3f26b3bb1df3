"""``feed data …`` commands end to end through Typer (synth → ingest, load → ingest, refusals exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from feed.commands import data as data_cmds
from feed.config import FeedSettings
from pipelines import delta_io


@pytest.fixture
def app(tmp_path: Path) -> typer.Typer:
    """The ``data`` sub-app wired as feed/cli.py wires it, with its home under tmp_path."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = FeedSettings(home=tmp_path, data_dir=None)

    app.command("synth")(data_cmds.synth)
    app.command("load-movielens")(data_cmds.load_movielens)
    app.command("load-mind")(data_cmds.load_mind)
    app.command("ingest")(data_cmds.ingest)
    return app


def test_synth_then_ingest(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["synth", "--scale", "tiny", "--seed", "3"])
    assert result.exit_code == 0, result.output
    landing = tmp_path / "data" / "landing" / "synth-tiny-3"
    assert "raw_impressions" in result.output
    assert (landing / "raw_members.parquet").exists()
    result = runner.invoke(app, ["ingest", str(landing)])
    assert result.exit_code == 0, result.output
    assert delta_io.version(tmp_path / "data" / "lake" / "raw_impressions") == 0
    again = runner.invoke(app, ["ingest", str(landing)])
    assert again.exit_code == 1
    assert "is already in the lake table" in again.output


def test_loader_errors_exit_cleanly(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["load-movielens"])
    assert result.exit_code == 2  # no --path and no FEED_DATA_DIR
    assert "FEED_DATA_DIR" in result.output
    result = runner.invoke(app, ["load-mind", "--path", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "no MIND split found" in result.output
