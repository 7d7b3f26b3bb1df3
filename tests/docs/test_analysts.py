"""docs/analysts.md: every ```python block runs, in order, against a fabricated home."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from feed.config import PROJECT_ROOT, FeedPaths

GUIDE = PROJECT_ROOT / "docs" / "analysts.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_guide_has_the_promised_examples() -> None:
    blocks = BLOCK.findall(GUIDE.read_text())
    text = "\n".join(blocks)
    assert len(blocks) >= 4
    for needle in ("list_feature_views", "historical_features", "delta_scan", "savefig"):
        assert needle in text, needle


@pytest.mark.integration
def test_guide_examples_run(
    tmp_path: Path, fabricate: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines import feature_store

    home = tmp_path / "home"
    paths = FeedPaths(home=home)
    # the guide's example times: snapshots at 2026-02-28 12:00 (s1) and 2026-03-01 12:00 (s2)
    fabricate.write_feature_tables(paths, t=dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    feature_store.apply(paths)
    monkeypatch.setenv("FEED_HOME", str(home))
    monkeypatch.chdir(tmp_path)

    namespace: dict[str, Any] = {"__name__": "analysts_guide"}
    for i, code in enumerate(BLOCK.findall(GUIDE.read_text())):
        exec(compile(code, f"{GUIDE}:block{i}", "exec"), namespace)  # running the guide is the point

    assert "member_profile" in capsys.readouterr().out
    training = namespace["training"].sort_values(["member_id", "event_timestamp"])
    by_row = {
        (r.member_id, r.event_timestamp.strftime("%m-%d %H")): r for r in training.itertuples(index=False)
    }
    assert by_row[(1, "03-01 12")].member_history__history_length == 12  # the s2 snapshot
    assert by_row[(3, "02-28 13")].member_history__history_length == 31  # s1: s2 is in its future
    assert list(by_row[(3, "02-28 13")].member_affinity__top_topics) == ["ai", "data"]
    assert by_row[(1, "02-28 11")].member_profile__industry is None  # before any snapshot
    latest = namespace["latest"]
    assert len(latest) == 4
    assert latest["like_percentile"].tolist() == sorted(latest["like_percentile"], reverse=True)
    assert (tmp_path / "engagement_percentiles.png").stat().st_size > 1000
