"""The three workers as real processes: each is killed between reading and committing (``os._exit(137)`` via
``FEED_NEARLINE_CRASH_AT``), restarted, and every event must end up processed exactly once; then the new
posts are searchable in Milvus and in the serving replica that follows ``nearline_embeddings``.

One chain per module (the processes dominate the cost: each start imports torch / Feast / pymilvus):

1. publish posts + engagements; ``prompts`` crashes right after committing its first batch;
2. publish more engagements + a profile change; ``prompts`` crashes after reading (nothing may land), then
   runs clean — its state (running counts) must be rebuilt by replay, neither lost nor doubled;
3. ``embed`` crashes after reading, then runs clean;
4. ``index`` crashes after the sinks (Milvus upserted, Feast pushed) and before its offset, then runs clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from pipelines import delta_io
from serving.nearline import log as nlog
from serving.nearline.config import CRASH_EXIT_CODE
from serving.nearline.schemas import (
    EMBEDDINGS_TABLE,
    ENGAGEMENT,
    EVENTS_TABLE,
    INDEXED_TABLE,
    NEW_POST,
    PROMPTS_TABLE,
)

from .conftest import NearlineHome, copy_home, start_milvus

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def run_stage(home: NearlineHome, stage: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("FEED_NEARLINE_CRASH_AT", None)
    if crash_at:
        env["FEED_NEARLINE_CRASH_AT"] = crash_at
    cmd = [sys.executable, "-m", "feed.cli", "--home", str(home.paths.home), "nearline", stage, "--once"]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@dataclass
class Chain:
    home: NearlineHome
    runs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    rows_before_restart: dict[str, int] = field(default_factory=dict)
    offsets_before_restart: dict[str, int] = field(default_factory=dict)
    milvus_after_crash: int = 0


def milvus_post_ids(home: NearlineHome, attempts: int = 3) -> list[int]:
    """Post ids in the version's collection. Retried: on a loaded 2-core machine the Lite server can miss
    pymilvus' reconnect deadline after it dropped an idle channel (GOAWAY too_many_pings)."""
    from serving.index import lite
    from serving.index.milvus import MilvusUnavailableError, collection_name, connect

    for attempt in range(attempts):
        try:
            client = connect(lite.running_server(home.paths).uri)
            rows = client.query(
                collection_name(home.model_version), filter="post_id > 0", output_fields=["post_id"]
            )
            return sorted(int(r["post_id"]) for r in rows)
        except MilvusUnavailableError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _rows(home: NearlineHome, table: str) -> int:
    path = home.paths.table(table)
    return delta_io.read(path, columns=["prompt_id"]).num_rows if delta_io.exists(path) else 0


@pytest.fixture(scope="module")
def chain(nearline_template: NearlineHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    from serving.index import lite
    from serving.nearline.producer import ProducerConfig, SyntheticProducer

    home = copy_home(nearline_template, tmp_path_factory.mktemp("chain") / "home")
    start_milvus(home)
    c = Chain(home)
    try:
        producer = SyntheticProducer(home.paths, ProducerConfig(seed=3))
        producer.publish_posts(6)
        producer.publish_engagements(25)
        c.runs["prompts_crash_after_commit"] = run_stage(home, "prompts", "prompts:after_commit")
        producer.publish_engagements(25)
        producer.publish_profile_changes(1)
        c.offsets_before_restart["prompts"] = nlog.committed_offset(
            home.paths.table(PROMPTS_TABLE), "feed.nearline.prompts"
        )
        c.rows_before_restart["prompts"] = _rows(home, PROMPTS_TABLE)
        c.runs["prompts_crash_after_read"] = run_stage(home, "prompts", "prompts:after_read")
        c.rows_before_restart["prompts_after_read_crash"] = _rows(home, PROMPTS_TABLE)
        c.runs["prompts"] = run_stage(home, "prompts")

        c.runs["embed_crash_after_read"] = run_stage(home, "embed", "embed:after_read")
        c.rows_before_restart["embed"] = _rows(home, EMBEDDINGS_TABLE)
        c.runs["embed"] = run_stage(home, "embed")

        c.runs["index_crash_after_sink"] = run_stage(home, "index", "index:after_sink")
        c.rows_before_restart["index"] = _rows(home, INDEXED_TABLE)
        c.milvus_after_crash = len(milvus_post_ids(home))
        c.runs["index"] = run_stage(home, "index")
        yield c
    finally:
        lite.stop_server(home.paths)


def _events(home: NearlineHome):
    return delta_io.read(home.paths.table(EVENTS_TABLE))


def test_crashed_runs_exit_like_a_kill_and_clean_runs_succeed(chain: Chain) -> None:
    for name, proc in chain.runs.items():
        expected = CRASH_EXIT_CODE if "crash" in name else 0
        assert proc.returncode == expected, (
            f"{name}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        )


def test_a_crash_after_reading_commits_nothing(chain: Chain) -> None:
    assert chain.rows_before_restart["prompts_after_read_crash"] == chain.rows_before_restart["prompts"]
    assert chain.rows_before_restart["embed"] == 0
    assert chain.rows_before_restart["index"] == 0
    assert chain.offsets_before_restart["prompts"] == 1  # the first run committed versions 0..1, then died


def test_prompt_state_is_rebuilt_exactly_once(chain: Chain) -> None:
    """Final pushed view counts of each new post = its engagements: the restarted worker replayed the first
    batch into its state once (not zero times, not twice)."""
    events = _events(chain.home)
    engagements = events.filter(pc.field("kind") == ENGAGEMENT)
    expected = Counter(engagements.column("post_id").to_pylist())
    new_posts = set(events.filter(pc.field("kind") == NEW_POST).column("post_id").to_pylist())
    prompts = delta_io.read(chain.home.paths.table(PROMPTS_TABLE))
    ids = prompts.column("prompt_id").to_pylist()
    assert len(ids) == len(set(ids)), "a prompt row was written twice"
    final_views: dict[int, int] = {}
    stats = prompts.filter(pc.field("kind") == "stats").sort_by("events_version")
    for row in stats.to_pylist():  # the newest row per post wins
        final_views[row["entity_id"]] = row["views"]
    assert {p: final_views[p] for p in new_posts} == {p: expected.get(p, 0) for p in new_posts}
    post_prompts = set(prompts.filter(pc.field("kind") == "post").column("entity_id").to_pylist())
    assert new_posts <= post_prompts


def test_every_prompt_is_embedded_and_indexed_exactly_once(chain: Chain) -> None:
    prompts = delta_io.read(chain.home.paths.table(PROMPTS_TABLE), columns=["prompt_id"])
    embeddings = delta_io.read(
        chain.home.paths.table(EMBEDDINGS_TABLE), columns=["prompt_id", "kind", "embedding"]
    )
    indexed = delta_io.read(chain.home.paths.table(INDEXED_TABLE), columns=["prompt_id", "outcome"])
    for table in (embeddings, indexed):
        ids = table.column("prompt_id").to_pylist()
        assert len(ids) == len(set(ids))
        assert set(ids) == set(prompts.column("prompt_id").to_pylist())
    vectors = embeddings.filter(pc.field("kind") != "stats").column("embedding")
    assert vectors.null_count == 0
    assert set(indexed.column("outcome").to_pylist()) <= {"indexed", "pushed"}


def test_sinks_replayed_after_a_crash_are_idempotent(chain: Chain) -> None:
    events = _events(chain.home)
    new_posts = set(events.filter(pc.field("kind") == NEW_POST).column("post_id").to_pylist())
    assert chain.milvus_after_crash == len(new_posts)  # the sinks ran before the crash …
    assert milvus_post_ids(chain.home) == sorted(new_posts)  # … and the replay added nothing


def test_fresh_counts_and_embeddings_reach_feast(chain: Chain) -> None:
    from pipelines.feature_store import online_features

    events = _events(chain.home)
    expected = Counter(events.filter(pc.field("kind") == ENGAGEMENT).column("post_id").to_pylist())
    post_id = max(expected, key=lambda p: expected[p])
    got = online_features(
        chain.home.paths,
        ["post_engagement:views", "post_embedding:model_version", "post_embedding:embedding"],
        [{"post_id": post_id}],
    )
    assert got["post_engagement__views"] == [expected[post_id]]
    assert got["post_embedding__model_version"] == [chain.home.model_version]
    assert len(got["post_embedding__embedding"][0]) == chain.home.dim


def test_new_posts_are_searchable_in_milvus_and_the_replica(chain: Chain) -> None:
    from serving.index.milvus import MilvusPostIndex, collection_name
    from serving.index.replica import HnswReplica

    embeddings = delta_io.read(chain.home.paths.table(EMBEDDINGS_TABLE)).filter(pc.field("kind") == "post")
    embeddings = embeddings.sort_by("prompts_version")
    latest = {r["entity_id"]: r["embedding"] for r in embeddings.to_pylist()}  # newest row per post
    ids = np.array(sorted(latest), dtype=np.int64)
    queries = np.array([latest[i] for i in ids], dtype=np.float32)

    milvus = MilvusPostIndex.open(paths=chain.home.paths, name=collection_name(chain.home.model_version))
    replica = HnswReplica(chain.home.dim, chain.home.model_version)
    assert replica.follow(chain.home.paths) == len(ids)
    for index in (milvus, replica):
        results = index.search(queries, k=1)
        assert [int(r.post_ids[0]) for r in results] == ids.tolist()


def test_status_shows_every_stage_caught_up_with_lags(chain: Chain) -> None:
    from typer.testing import CliRunner

    from feed.cli import app
    from serving.nearline.status import status

    stages = status(chain.home.paths)
    assert [s.stage for s in stages] == ["prompts", "embed", "index"]
    for s in stages:
        assert s.pending_versions == 0
        assert s.offset == s.input_head
        assert s.rows > 0
        assert s.e2e_p50_s is not None
        assert s.e2e_p95_s is not None
        assert 0 <= s.stage_p50_s <= s.stage_p95_s
    result = CliRunner().invoke(app, ["--home", str(chain.home.paths.home), "nearline", "status"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[:4] == ["stage", "offset", "head", "pending"]
