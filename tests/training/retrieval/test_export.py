"""Embedding export (`feed embed posts|members`): live posts / profiled members as of a time, embedded with a
saved model version into the Delta embedding tables.

The integration tests run on ``tiny`` (the shared ``tiny_feature_home``: Spark features, ≈ 60 s once per
run) with an untrained 1-layer MiniLM saved as a model version and promoted: the vectors are meaningless, the
rows and times are what count.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import typer
from typer.testing import CliRunner

from feed.commands.embed import members, posts
from feed.config import FeedPaths, FeedSettings
from training.retrieval.export import (
    ExportConfig,
    ExportError,
    export_members,
    export_posts,
    model_dir,
    parse_at,
    prompt_config,
)
from training.retrieval.model import EncoderConfig

VERSION = "v-test"


@dataclass(frozen=True)
class Home:
    paths: FeedPaths
    latest: dt.datetime  # the latest post_engagement snapshot


def _save_version(paths: FeedPaths, name: str, *, promote_it: bool) -> Path:
    """An untrained 1-layer encoder saved as a complete model version (what training writes)."""
    from training.retrieval.model import DualEncoder
    from training.retrieval.train import METRICS_FILE, promote

    root = paths.artifacts / "retrieval"
    out = root / name
    DualEncoder(EncoderConfig(num_layers=1, max_len_member=32, max_len_post=32)).save(out, {"version": name})
    (out / METRICS_FILE).write_text(json.dumps({"version": name, "completed": True}))
    if promote_it:
        promote(root, name)
    return out


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("posts")(posts)
    app.command("members")(members)
    return app


def _invoke(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), list(args), obj=FeedSettings(home=home))
    return result.exit_code, result.output


def _table_rows(paths: FeedPaths, table: str, version: str) -> int:
    from pipelines import delta_io

    path = paths.table(table)
    if not delta_io.exists(path):
        return 0
    return delta_io.read(
        path, columns=["model_version"], filter=pc.field("model_version") == version
    ).num_rows


def _catalog(paths: FeedPaths) -> dict[int, dt.datetime]:
    from pipelines import delta_io

    data = delta_io.read(paths.table("post_content"), columns=["post_id", "created_at"]).to_pydict()
    return dict(zip(data["post_id"], data["created_at"], strict=True))


def _live(catalog: dict[int, dt.datetime], at: dt.datetime) -> set[int]:
    return {p for p, c in catalog.items() if at - dt.timedelta(days=28) <= c < at}


def _quiet(**kw: object) -> ExportConfig:
    return ExportConfig(progress=False, **kw)  # type: ignore[arg-type]


# --- unit (no Spark, no Feast)


def test_parse_at_accepts_dates_and_zones() -> None:
    assert parse_at("2026-03-01") == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert parse_at("2026-03-01T06:00:00Z") == dt.datetime(2026, 3, 1, 6, tzinfo=dt.UTC)
    assert parse_at("2026-03-01T08:00:00+02:00") == dt.datetime(2026, 3, 1, 6, tzinfo=dt.UTC)
    with pytest.raises(ExportError, match="not an ISO date"):
        parse_at("yesterday")


def test_prompt_budgets_follow_the_encoder_and_counts_the_version(tmp_path: Path) -> None:
    enc = EncoderConfig(max_len_member=48, max_len_post=24)
    (tmp_path / "config.json").write_text(json.dumps({"encoder": {}}))
    plain = prompt_config(tmp_path, enc)
    assert (plain.counts, plain.member_max_tokens, plain.post_max_tokens) == ("percentile", 48, 24)
    # A recorded prompt's budgets never override the encoder's limits; its count style is honoured.
    recorded = {"counts": "raw", "member_max_tokens": 512, "history_max_items": 7}
    (tmp_path / "config.json").write_text(json.dumps({"prompt": recorded}))
    raw = prompt_config(tmp_path, enc)
    assert (raw.counts, raw.member_max_tokens, raw.history_max_items) == ("raw", 48, 7)
    (tmp_path / "config.json").write_text(json.dumps({"prompt": {"counts": "logs"}}))
    with pytest.raises(ExportError, match=r"config\.json.*counts"):
        prompt_config(tmp_path, enc)


def test_model_dir_errors_name_the_folder(feed_paths: FeedPaths) -> None:
    root = feed_paths.artifacts / "retrieval"
    with pytest.raises(ExportError, match=r"no promoted retrieval model: .*CURRENT"):
        model_dir(feed_paths, None)
    with pytest.raises(ExportError, match=rf"{root / 'v9'}"):
        model_dir(feed_paths, "v9")
    with pytest.raises(ExportError, match="must be 1–128 characters"):
        model_dir(feed_paths, "../escape")
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "config.json").write_text("{}")
    (root / "CURRENT").write_text("v1\n")
    assert model_dir(feed_paths, None) == root / "v1"


def test_cli_without_a_model_or_tables_is_a_clear_error(tmp_path: Path) -> None:
    code, out = _invoke(tmp_path, "posts")
    assert code == 2, out
    assert "no promoted retrieval model" in out
    assert "Traceback" not in out
    code, out = _invoke(tmp_path, "members", "--version", "v7")
    assert code == 2, out
    assert str(tmp_path / "artifacts" / "retrieval" / "v7") in out
    code, out = _invoke(tmp_path, "posts", "--at", "soon")
    assert code == 2, out
    assert "not an ISO date" in out


def test_cli_without_feature_tables_says_build_them(tmp_path: Path) -> None:
    root = tmp_path / "artifacts" / "retrieval" / "v1"
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")  # the table check runs before the model is loaded
    code, out = _invoke(tmp_path, "posts", "--version", "v1")
    assert code == 2, out
    assert "run `feed features build`" in out


# --- integration: tiny → features → Feast → export


@pytest.fixture(scope="module")
def home(tiny_feature_home: FeedPaths, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A writable copy of the shared tiny feature lake (the export writes embedding tables), Feast applied
    for it, and an untrained model version promoted."""
    from pipelines import feature_store
    from training.retrieval.export import latest_snapshot

    paths = FeedPaths(home=tmp_path_factory.mktemp("export_home"))
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    feature_store.apply(paths)  # the registry is per home: it names this home's tables
    _save_version(paths, VERSION, promote_it=True)
    return Home(paths, latest_snapshot(paths))


def _vectors(paths: FeedPaths, kind: str, version: str) -> tuple[np.ndarray, np.ndarray]:
    from training.retrieval.embed import read_embeddings

    return read_embeddings(paths, kind, version)  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.slow
def test_posts_embeds_every_live_post_once_and_reruns_replace(home: Home) -> None:
    from pipelines import delta_io

    paths = home.paths
    first = export_posts(paths, _quiet())  # the promoted version, the latest snapshot
    assert first.model_version == VERSION
    assert first.at == home.latest
    live = _live(_catalog(paths), home.latest)
    ids, vecs = _vectors(paths, "post", VERSION)
    assert len(ids) == len(set(ids.tolist())) == first.rows
    # every live post, minus only those skipped for a counted reason
    assert set(ids.tolist()) <= live
    assert len(live) - first.rows == sum(
        first.skipped.get(k, 0) for k in ("post_without_features", "empty_text")
    )
    assert first.rows > 100
    assert vecs.shape == (first.rows, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    stamps = delta_io.read(paths.table("post_embeddings"), columns=["event_timestamp"]).column(0)
    assert set(stamps.to_pylist()) == {home.latest}

    again = export_posts(paths, _quiet(batch_size=256))
    assert again.delta_version > first.delta_version
    assert _table_rows(paths, "post_embeddings", VERSION) == first.rows  # replaced, not appended
    ids2, vecs2 = _vectors(paths, "post", VERSION)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(vecs2, vecs, atol=1e-5)  # deterministic, whatever the batching


@pytest.mark.integration
@pytest.mark.slow
def test_posts_as_of_an_earlier_time_leave_out_later_posts(home: Home) -> None:
    paths = home.paths
    other = "v-asof"
    shutil.copytree(paths.artifacts / "retrieval" / VERSION, paths.artifacts / "retrieval" / other)
    before = _table_rows(paths, "post_embeddings", VERSION)
    at = home.latest - dt.timedelta(days=5)
    result = export_posts(paths, _quiet(version=other, at=at))
    catalog = _catalog(paths)
    later = {p for p, c in catalog.items() if c >= at}
    assert later, "the fixture needs posts created after `at` for this test to mean anything"
    ids, _ = _vectors(paths, "post", other)
    embedded = set(ids.tolist())
    assert not embedded & later
    assert embedded <= _live(catalog, at)
    assert result.at == at
    assert _table_rows(paths, "post_embeddings", VERSION) == before  # other versions untouched


@pytest.mark.integration
@pytest.mark.slow
def test_members_embeds_every_profiled_member_once(home: Home) -> None:
    from pipelines import delta_io

    paths = home.paths
    result = export_members(paths, _quiet())
    profiled = delta_io.read(
        paths.table("member_profile"),
        columns=["member_id"],
        filter=pc.field("event_timestamp") <= home.latest,
    )
    expected = set(profiled.column("member_id").to_pylist())
    ids, vecs = _vectors(paths, "member", VERSION)
    assert len(ids) == len(set(ids.tolist())) == result.rows
    assert set(ids.tolist()) <= expected
    assert len(expected) - result.rows == result.skipped.get("empty_profile_no_history", 0)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    again = export_members(paths, _quiet())
    assert again.rows == result.rows
    assert _table_rows(paths, "member_embeddings", VERSION) == result.rows


@pytest.mark.integration
@pytest.mark.slow
def test_member_prompts_carry_history_known_at_the_time(home: Home) -> None:
    from collections import Counter

    from training.prompts import PromptConfig
    from training.retrieval.export import member_prompts, members_as_of
    from training.retrieval.model import DualEncoder

    paths = home.paths
    tokenizer = DualEncoder.load(paths.artifacts / "retrieval" / VERSION).tokenizer
    cfg = PromptConfig(member_max_tokens=256, post_max_tokens=64)
    early = home.latest - dt.timedelta(days=10)
    # The engaged history the prompts read (Feast PIT at `early`) holds only posts that existed by then.
    catalog = _catalog(paths)
    histories = members_as_of(paths, early, "local")["member_history__engaged_post_ids"]
    history_ids = [int(p) for ids in histories if ids is not None for p in ids]
    assert history_ids
    assert all(catalog[p] < early for p in history_ids)
    skipped: Counter[str] = Counter()
    late = dict(member_prompts(paths, home.latest, tokenizer, cfg, _quiet(), skipped))
    before = dict(member_prompts(paths, early, tokenizer, cfg, _quiet(), Counter()))
    assert set(before) <= set(late)
    # Members accumulate engaged history: some prompts must differ between the two times.
    changed = [m for m in before if before[m] != late[m]]
    assert changed
    assert all(len(text) > 0 for text in late.values())


@pytest.mark.integration
@pytest.mark.slow
def test_cli_prints_counts_and_empty_results_write_nothing(home: Home) -> None:
    paths = home.paths
    rows_before = _table_rows(paths, "post_embeddings", VERSION)
    code, out = _invoke(paths.home, "posts", "--at", "2000-01-01")
    assert code == 2, out
    assert "no post is live at 2000-01-01" in out
    assert _table_rows(paths, "post_embeddings", VERSION) == rows_before
    code, out = _invoke(paths.home, "members", "--at", "2000-01-01")
    assert code == 2, out
    assert "no member has a profile at 2000-01-01" in out

    code, out = _invoke(paths.home, "posts", "--version", VERSION, "--batch-size", "128")
    assert code == 0, out
    assert f"post embeddings of {VERSION}" in out
    assert "skipped:" in out
    assert "rows/s" in out
