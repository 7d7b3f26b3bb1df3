"""Bad input to `feed airflow test` and `feed model rollback` gets a clear error and changes nothing; a good
ranking rollback swaps the pointer back."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from feed.cli import app


def _invoke(home: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--home", str(home), *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["airflow", "test", "feed_nope"], "feed_features"),
        (["airflow", "test", "feed_features", "--date", "2026-13-01"], "month"),
        (["airflow", "test", "feed_features", "--date", "2026-09-29", "--conf", "{not json"], "Expecting"),
        (["model", "rollback", "encoder"], "retrieval or ranking"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke(tmp_path, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "airflow").exists()  # no metadata DB was created, no DAG ran


def test_ranking_rollback_without_a_previous_version_says_so(tmp_path: Path) -> None:
    ranking = tmp_path / "artifacts" / "ranking"
    (ranking / "g1").mkdir(parents=True)
    (ranking / "CURRENT").write_text("g1\n")
    result = _invoke(tmp_path, "model", "rollback", "ranking")
    assert result.exit_code == 2
    assert "error:" in result.output
    assert (ranking / "CURRENT").read_text().strip() == "g1"


def test_ranking_rollback_restores_the_previous_version(tmp_path: Path) -> None:
    ranking = tmp_path / "artifacts" / "ranking"
    for version in ("g1", "g2"):
        (ranking / version).mkdir(parents=True)
    (ranking / "CURRENT").write_text("g2\n")
    (ranking / "PREVIOUS").write_text("g1\n")
    result = _invoke(tmp_path, "model", "rollback", "ranking")
    assert result.exit_code == 0, result.output
    assert "CURRENT g2 → g1" in result.output
    assert (ranking / "CURRENT").read_text().strip() == "g1"
