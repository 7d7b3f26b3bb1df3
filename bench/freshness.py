"""Freshness of the nearline path: a new post appended to ``nearline_events`` → retrievable by search.

With ``feed nearline run-all`` running (three worker processes), a producer publishes new posts at a fixed
rate (plus background engagements on recent posts, which keep the prompt and index workers busy with
percentile pushes and member re-prompts), and a watcher in this process checks, every ``poll_s``, whether
each published post can be retrieved:

* default serving path — an in-process :class:`~serving.index.replica.HnswReplica` following
  ``nearline_embeddings`` (``refresh()`` per poll), searched with the post's own embedding (top-10);
* Milvus — the ``posts_<model_version>`` collection the index worker upserts into, searched the same way.

Freshness of a post = first poll at which the search returns it − the moment its publish call returned (the
Delta commit of the event). The resolution is one poll interval. Reported: p50/p95/max per path, the per-stage
lag from ``feed nearline status``, and how many posts never became retrievable within ``timeout_s``.

Set-up the benchmark does when needed (recorded in the report): start this home's Milvus Lite server; create
an empty HNSW collection for the promoted model version when none exists (freshness does not depend on the
posts already indexed, except through Milvus Lite's per-row search cost, which the report's collection size
shows).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feed.config import REPORTS_DIR, FeedPaths
from feed.reports import write_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreshnessConfig:
    posts: int = 200  # ≥ 200 so p95 rests on ≥ 10 samples
    rate_per_s: float = 2.0  # new posts per second (≈ 170k a day: a busy single-region feed on one machine)
    engagements_per_post: int = 3  # background load published with each post
    poll_s: float = 0.25  # watcher resolution
    timeout_s: float = 120.0  # after the last publish, wait this long for stragglers
    warmup_timeout_s: float = 300.0  # first post: workers load the encoder, Feast, pymilvus
    top_k: int = 10
    seed: int = 0
    goal_p95_s: float = 30.0

    @classmethod
    def quick(cls) -> FreshnessConfig:
        return cls(posts=30, rate_per_s=2.0, timeout_s=60.0)


class FreshnessBenchError(RuntimeError):
    """The benchmark cannot run on this home (no promoted model, no feature tables, workers died)."""


def _ensure_collection(paths: FeedPaths, version: str, dim: int) -> tuple[str, int, bool]:
    """(collection, rows, created): the promoted version's collection, created empty (HNSW) when missing."""
    from serving.index import lite
    from serving.index.milvus import (
        IndexConfig,
        MilvusPostIndex,
        collection_for,
        collection_name,
        connect,
        create_posts_collection,
        create_vector_index,
    )

    server = lite.ensure_server(paths)
    client = connect(server.uri)
    name = collection_for(client, version)
    created = name is None
    if name is None:
        name = collection_name(version)
        config = IndexConfig(uri=server.uri, index_type="HNSW")
        create_posts_collection(client, name, version, dim, config)
        create_vector_index(client, name, config)
    client.load_collection(name)
    rows = len(MilvusPostIndex(client, name))
    client.close()
    return name, rows, created


def _replica(paths: FeedPaths, version: str, dim: int) -> Any:
    """The serving replica: bootstrapped from post_embeddings when the version has rows there, then following
    the nearline log from its current head (older nearline rows are not this run's)."""
    from serving.index.replica import HnswReplica
    from serving.nearline import log as nlog
    from serving.nearline.schemas import EMBEDDINGS_TABLE
    from training.retrieval.embed import model_versions

    if version in model_versions(paths, "post"):
        replica = HnswReplica.from_delta(paths, version, follow=False)
    else:
        replica = HnswReplica(dim, version)
    head = nlog.head_version(paths.table(EMBEDDINGS_TABLE))
    replica.follow(paths, since_version=-1 if head is None else head)
    return replica


class Watcher:
    """Finds when each pending post becomes retrievable in the replica and in Milvus."""

    def __init__(
        self, paths: FeedPaths, version: str, collection: str, replica: Any, cfg: FreshnessConfig
    ) -> None:
        from serving.index.milvus import MilvusPostIndex
        from serving.nearline import log as nlog
        from serving.nearline.schemas import EMBEDDINGS_TABLE

        self.paths, self.version, self.cfg, self.replica = paths, version, cfg, replica
        self.milvus = MilvusPostIndex.open(paths=paths, name=collection)
        self.log_path = paths.table(EMBEDDINGS_TABLE)
        self.log_offset = nlog.head_version(self.log_path)
        self.log_offset = -1 if self.log_offset is None else self.log_offset
        self.vectors: dict[int, np.ndarray] = {}  # post id -> its newest nearline embedding
        self.appended: dict[int, float] = {}  # post id -> wall time its publish returned
        self.seen: dict[str, dict[int, float]] = {"replica": {}, "milvus": {}}
        self.poll_s: list[float] = []  # duration of each look (the measurement's resolution)

    def _tail_vectors(self) -> None:
        from serving.nearline import log as nlog
        from serving.nearline.schemas import NEARLINE_EMBEDDINGS, POST

        for commit in nlog.read_commits(
            self.log_path, NEARLINE_EMBEDDINGS, self.log_offset, max_versions=1000
        ):
            for row in commit.rows.select(["kind", "entity_id", "model_version", "embedding"]).to_pylist():
                if (
                    row["kind"] == POST
                    and row["model_version"] == self.version
                    and row["entity_id"] in self.appended
                ):
                    self.vectors[row["entity_id"]] = np.asarray(row["embedding"], dtype=np.float32)
            self.log_offset = commit.version

    def _found(self, index: Any, ids: list[int]) -> list[int]:
        if not ids:
            return []
        results = index.search(np.stack([self.vectors[i] for i in ids]), k=self.cfg.top_k)
        return [i for i, r in zip(ids, results, strict=True) if i in set(r.post_ids.tolist())]

    def poll(self) -> None:
        """One look: learn new vectors from the log, then ask each path (each timed when its answer came)."""
        began = time.perf_counter()
        self._tail_vectors()
        self.replica.refresh()
        for path, index in (("replica", self.replica), ("milvus", self.milvus)):
            pending = [p for p in self.appended if p not in self.seen[path] and p in self.vectors]
            found = self._found(index, pending)
            now = time.time()
            for post_id in found:
                self.seen[path][post_id] = now
        self.poll_s.append(time.perf_counter() - began)

    def done(self) -> bool:
        return all(len(s) == len(self.appended) for s in self.seen.values())

    def freshness(self, path: str) -> list[float]:
        return [self.seen[path][p] - t for p, t in self.appended.items() if p in self.seen[path]]


def _start_run_all(paths: FeedPaths) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "feed.cli", "--home", str(paths.home), "nearline", "run-all"]
    folder = paths.data / "nearline"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "run_all.log").open("ab") as out:  # the child keeps its own descriptor
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p95_s": None, "max_s": None}
    arr = np.asarray(values)
    return {
        "p50_s": round(float(np.percentile(arr, 50)), 3),
        "p95_s": round(float(np.percentile(arr, 95)), 3),
        "max_s": round(float(arr.max()), 3),
    }


def _indexed(paths: FeedPaths, post_id: int) -> bool:
    """The index worker committed a row for ``post_id`` (its sinks are warm)."""
    import pyarrow.compute as pc

    from pipelines import delta_io
    from serving.nearline.schemas import INDEXED_TABLE

    path = paths.table(INDEXED_TABLE)
    if not delta_io.exists(path):
        return False
    rows = delta_io.read(path, columns=["entity_id"], filter=pc.field("kind") == "post")
    return post_id in set(rows.column("entity_id").to_pylist())


def _wait_for(
    watcher: Watcher, proc: subprocess.Popen, deadline: float, also: Callable[[], bool] = lambda: True
) -> None:
    while time.monotonic() < deadline and not (watcher.done() and also()):
        if proc.poll() is not None:
            raise FreshnessBenchError(f"run-all exited with {proc.returncode}; see data/nearline/ logs")
        watcher.poll()
        time.sleep(watcher.cfg.poll_s)


def run(
    paths: FeedPaths,
    cfg: FreshnessConfig = FreshnessConfig(),
    *,
    quick: bool = False,
    reports_dir: Path = REPORTS_DIR,
) -> Path:
    from pipelines.feature_store import apply
    from serving.nearline.encoder import current_version
    from serving.nearline.producer import ProducerConfig, SyntheticProducer
    from serving.nearline.snapshot import load_snapshot
    from serving.nearline.status import status
    from training.retrieval.export import model_dir
    from training.retrieval.model import BACKBONE_DIR, CONFIG_FILE

    try:
        version = current_version(paths)
        load_snapshot(paths)
    except ValueError as exc:
        raise FreshnessBenchError(str(exc)) from exc
    folder = model_dir(paths, version)
    saved = json.loads((folder / CONFIG_FILE).read_text())
    dim = int(json.loads((folder / BACKBONE_DIR / "config.json").read_text())["hidden_size"])
    apply(paths)  # Feast definitions for this home (the index worker pushes)
    collection, rows_at_start, created = _ensure_collection(paths, version, dim)
    replica = _replica(paths, version, dim)
    replica_rows_at_start = len(replica)
    producer = SyntheticProducer(paths, ProducerConfig(seed=cfg.seed))
    watcher = Watcher(paths, version, collection, replica, cfg)
    # New ids above any id already in the collection (a post id Milvus already holds would look fresh at once)
    above = watcher.milvus.client.query(
        collection, filter=f"post_id >= {producer.next_post_id}", output_fields=["post_id"]
    )
    producer.next_post_id = max([producer.next_post_id, *(int(r["post_id"]) + 1 for r in above)])

    proc = _start_run_all(paths)
    try:
        began = time.monotonic()
        warm = producer.new_post()
        producer.publisher.publish([warm])
        warm_at = time.time()
        watcher.appended[warm.post_id] = warm_at
        deadline = time.monotonic() + cfg.warmup_timeout_s
        _wait_for(watcher, proc, deadline, also=lambda: _indexed(paths, warm.post_id))
        if not watcher.done():
            raise FreshnessBenchError(
                f"warm-up post {warm.post_id} not retrievable after {cfg.warmup_timeout_s} s"
            )
        warmup_s = time.monotonic() - began
        watcher.appended.clear()
        for seen in watcher.seen.values():
            seen.clear()

        interval = 1.0 / cfg.rate_per_s
        start = time.monotonic()
        for i in range(cfg.posts):
            target = start + i * interval
            while time.monotonic() < target:
                watcher.poll()
                time.sleep(min(cfg.poll_s, max(0.0, target - time.monotonic())))
            post = producer.new_post()
            producer.publisher.publish([post])
            watcher.appended[post.post_id] = time.time()
            producer.published_posts.append(post.post_id)
            if cfg.engagements_per_post:
                producer.publish_engagements(cfg.engagements_per_post)
        publish_s = time.monotonic() - start
        _wait_for(watcher, proc, time.monotonic() + cfg.timeout_s)
    finally:
        _stop(proc)
    stages = {s.stage: asdict(s) for s in status(paths)}
    replica_stats, milvus_stats = _stats(watcher.freshness("replica")), _stats(watcher.freshness("milvus"))
    missing = {p: cfg.posts - len(watcher.seen[p]) for p in watcher.seen}
    summary = {
        "p50_s": replica_stats["p50_s"],
        "p95_s": replica_stats["p95_s"],
        "max_s": replica_stats["max_s"],
        "milvus_p50_s": milvus_stats["p50_s"],
        "milvus_p95_s": milvus_stats["p95_s"],
        "milvus_max_s": milvus_stats["max_s"],
        "posts": cfg.posts,
        "never_retrievable": missing,
        "goal_p95_s": cfg.goal_p95_s,
        "goal_met": replica_stats["p95_s"] is not None
        and replica_stats["p95_s"] < cfg.goal_p95_s
        and not any(missing.values()),
    }
    config = {
        **asdict(cfg),
        "quick": quick,
        "model_version": version,
        "encoder": saved.get("encoder"),
        "collection": collection,
        "collection_rows_at_start": rows_at_start,
        "collection_created_by_bench": created,
        "replica_rows_at_start": replica_rows_at_start,
        "home": str(paths.home),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    notes = [
        "freshness = first watcher poll at which a search with the post's own embedding returns it (top-"
        f"{cfg.top_k}) minus the moment its publish call returned; resolution {cfg.poll_s} s",
        "default serving path = in-process HNSW replica following nearline_embeddings; Milvus = the index "
        "worker's posts_<model_version> collection on the local Milvus Lite server",
        f"warm-up (first post, workers loading the encoder / Feast / pymilvus) took {warmup_s:.1f} s and is "
        f"excluded; {cfg.posts} posts published over {publish_s:.1f} s with {cfg.engagements_per_post} "
        "background engagements each",
        "the 2-core machine is shared with other work: see load_average_at_end; lags include CPU contention",
    ]
    details = {
        "stages": stages,
        "replica_freshness_s": sorted(round(x, 3) for x in watcher.freshness("replica")),
        "milvus_freshness_s": sorted(round(x, 3) for x in watcher.freshness("milvus")),
        "watcher_poll_s": _stats(watcher.poll_s),
    }
    name = "freshness_quick" if quick else "freshness"
    out = write_report(name, summary, config, notes=notes, details=details, reports_dir=reports_dir)
    _plot(out.with_suffix(".png"), watcher)
    return out


def _plot(path: Path, watcher: Watcher) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("replica", "milvus"):
        values = np.sort(watcher.freshness(name))
        if len(values):
            ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=name)
    ax.set_xlabel("seconds from publish to retrievable")
    ax.set_ylabel("share of posts")
    ax.set_title(f"Nearline freshness ({dt.date.today().isoformat()})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
