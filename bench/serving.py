"""Benchmark: the feed service under real HTTP load → ``reports/bench/serving.json`` (+ ``serving.png``).

What runs, in order, against one ``feed serve`` process on a scratch copy of the home (so the served
impressions it logs and the Milvus restarts never touch the home itself):

1. warm-up: closed loop, 2 connections, ``warmup_s``;
2. **rate run**: ``rate_rps`` (20) requests/s for ``rate_duration_s`` (60 s), open loop (wrk +
   bench/wrk/feed.lua, which paces a fixed schedule with LuaJIT's ffi ``clock_gettime``), N = ``top_n`` (500)
   candidates. Latency: wrk's histogram (from the send of each request) and, per request, the same from the
   script's log plus a coordinated-omission-corrected value measured from the request's scheduled slot. Per
   stage: quantiles of the ``feed_stage_seconds`` histogram deltas between /metrics scrapes before and after
   the run (``histogram_quantile`` semantics: linear interpolation inside a bucket) and exact percentiles of
   every response's ``timings_ms``;
3. **step test**: closed loop with 1, 2, 4, 8, 16 connections, ``step_duration_s`` each: throughput, p50, p99;
4. **Schemathesis** against the service's /openapi.json (``not_a_server_error``, bounded examples);
5. **faults** under a ``rate_rps`` load, ``fault_duration_s`` each:
   * ``milvus``: the Milvus Lite server is SIGKILLed at ``fault_start_s`` and started again on the same port
     ``fault_outage_s`` later. The service is given the server's URI (``--milvus-uri``, a cluster's setting)
     so only the restart brings Milvus back — the embedded default would start a new server itself;
   * ``feature_store``: a second service on the Redis online-store variant of the same features (applied,
     materialized to the same end and the member embeddings pushed, as the demo does for SQLite); the
     redis-server is SIGSTOPped at ``fault_start_s`` and SIGCONTed ``fault_outage_s`` later.
   Per fault: errors (non-2xx + socket errors), the share of responses with the fallback during the outage,
   latency during/after, and the recovery time (restart → the first response from which every later one is
   free of that fallback).

The member mix is deterministic: a seeded permutation of member ids ``1..members`` — the population the demo
generates, whatever the store knows of each (cold start, unknown, history-only members are realistic traffic).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from feed.config import REPORTS_DIR, FeedPaths
from feed.reports import write_report

if TYPE_CHECKING:
    from feed.config import FeedSettings

REPORT_NAME = "serving"
QUICK_REPORT_NAME = "serving_quick"  # --quick never overwrites the committed full report
WRK = Path("/usr/bin/wrk")  # Debian's wrk 4.1 (LuaJIT): `apt-get install wrk`
LUA_SCRIPT = Path(__file__).parent / "wrk" / "feed.lua"
STAGES = ("member_features", "cold_start", "retrieval", "post_features", "ranking", "assemble", "total")
QUANTILES = (0.5, 0.95, 0.99)
# A request whose member has a vector goes to Milvus; these fallbacks mean it took the popular path instead.
POPULAR_PATH = frozenset({"member_unknown", "no_member_vector", "feature_store_unavailable"})
WRK_MARKER = "FEED_WRK_JSON "
# Fallbacks that mean a dependency failed or ran over its stage budget (not a property of the member).
DEGRADED = frozenset(
    {"feature_store_unavailable", "retrieval_unavailable", "post_features_unavailable", "ranker_unavailable"}
)
SERVER_ERROR_CODES = frozenset({"ST101", "ST102"})  # schemathesis 4.x: 5xx, 5xx on an undeclared content type


class ServingBenchError(RuntimeError):
    """The bench cannot run (no wrk, the service did not start, …); the message says what to do."""


@dataclass(frozen=True)
class ServingBenchConfig:
    rate_rps: float = 20.0
    rate_duration_s: float = 60.0
    rate_connections: int = 16  # enough idle connections that a slow response never delays the next slot
    warmup_s: float = 15.0
    step_connections: tuple[int, ...] = (1, 2, 4, 8, 16)
    step_duration_s: float = 15.0
    top_n: int = 500
    k: int = 50
    device_type: str = "mobile_app"
    members: int = 1000
    seed: int = 0
    wrk_timeout_s: float = 10.0  # a response slower than this is a wrk timeout error
    schemathesis: bool = True
    schemathesis_max_examples: int = 50  # per operation and round of the fuzzing phase
    schemathesis_max_time_s: float = 60.0  # fuzzing repeats rounds until this budget is spent
    schemathesis_timeout_s: float = 900.0  # the whole run is killed after this (reported)
    faults: tuple[str, ...] = ("milvus", "feature_store")
    fault_duration_s: float = 30.0
    fault_start_s: float = 8.0
    fault_outage_s: float = 10.0
    start_timeout_s: float = 300.0  # service start-up (models, Feast, caches) on a busy 2-core machine
    goal_p99_ms: float = 150.0
    goal_retrieval_p99_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.rate_rps <= 0 or self.rate_duration_s <= 0 or self.step_duration_s <= 0:
            raise ValueError("rate_rps, rate_duration_s and step_duration_s must be > 0")
        if not self.step_connections or min(self.step_connections) < 1:
            raise ValueError("step_connections must be a non-empty list of connection counts >= 1")
        unknown = set(self.faults) - {"milvus", "feature_store"}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: milvus, feature_store")
        if self.fault_start_s + self.fault_outage_s >= self.fault_duration_s:
            raise ValueError("fault_start_s + fault_outage_s must leave time to recover in fault_duration_s")

    @classmethod
    def quick(cls) -> ServingBenchConfig:
        """A smoke run of every phase (≈2–3 min on the tiny home, mostly start-up and Redis set-up)."""
        return cls(
            rate_rps=10.0,
            rate_duration_s=5.0,
            rate_connections=8,
            warmup_s=3.0,
            step_connections=(1, 4),
            step_duration_s=3.0,
            members=200,
            schemathesis_max_examples=3,
            schemathesis_max_time_s=10.0,
            schemathesis_timeout_s=300.0,
            fault_duration_s=12.0,
            fault_start_s=3.0,
            fault_outage_s=4.0,
        )


# --- parsing: Prometheus histograms, wrk output, the Lua request log ---------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format → (name, labels, value) per sample line (comments skipped)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = dict(_LABEL.findall(m.group("labels") or ""))
        out.append((m.group("name"), labels, float(m.group("value"))))
    return out


def parse_histograms(text: str, metric: str, label: str) -> dict[str, list[tuple[float, float]]]:
    """Cumulative ``(le, count)`` buckets of ``<metric>_bucket`` per value of ``label``, sorted by ``le``
    (``+Inf`` last)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, labels, value in parse_samples(text):
        if name != f"{metric}_bucket" or label not in labels or "le" not in labels:
            continue
        out.setdefault(labels[label], []).append((float(labels["le"]), value))
    return {key: sorted(buckets) for key, buckets in out.items()}


def counters(text: str, metric: str, label: str) -> dict[str, float]:
    """``<metric>{label=...}`` values (a counter's ``_total`` sample) by label value."""
    return {
        labels[label]: value
        for name, labels, value in parse_samples(text)
        if name == metric and label in labels
    }


def bucket_delta(
    after: Sequence[tuple[float, float]], before: Sequence[tuple[float, float]] | None
) -> list[tuple[float, float]]:
    """Per-bucket ``after - before`` (what ``increase()`` gives Prometheus over the run)."""
    prev = dict(before or [])
    return [(le, count - prev.get(le, 0.0)) for le, count in after]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile`` on cumulative ``(upper_bound, count)`` buckets: find the bucket
    holding rank ``q · total`` and interpolate linearly between its bounds (the first bucket starts at 0);
    a rank in the ``+Inf`` bucket returns the highest finite bound. NaN when there are no observations."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bs = sorted(buckets)
    if len(bs) < 2 or not math.isinf(bs[-1][0]):
        return math.nan
    counts = np.maximum.accumulate([c for _, c in bs])  # Prometheus forces monotonic counts too
    total = float(counts[-1])
    if total <= 0:
        return math.nan
    rank = q * total
    b = next((i for i in range(len(bs) - 1) if counts[i] >= rank), len(bs) - 1)
    if b == len(bs) - 1:
        return bs[-2][0]
    if b == 0 and bs[0][0] <= 0:
        return bs[0][0]
    start, end, count = 0.0, bs[b][0], float(counts[b])
    if b > 0:
        start = bs[b - 1][0]
        count -= float(counts[b - 1])
        rank -= float(counts[b - 1])
    if count <= 0:
        return start
    return start + (end - start) * (rank / count)


def parse_wrk_output(stdout: str) -> dict[str, Any]:
    """The JSON line bench/wrk/feed.lua's ``done()`` prints, plus ``achieved_rps`` and ``errors_total``."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(WRK_MARKER):
            doc = json.loads(line[len(WRK_MARKER) :])
            break
    else:
        raise ServingBenchError(f"wrk printed no {WRK_MARKER.strip()} line; its output:\n{stdout[-2000:]}")
    duration = float(doc.get("duration_s") or 0.0)
    doc["achieved_rps"] = doc["requests"] / duration if duration > 0 else 0.0
    doc["errors_total"] = int(sum(doc.get("errors", {}).values()))
    return doc


@dataclass(frozen=True)
class RequestRecord:
    """One response as bench/wrk/feed.lua logged it (CLOCK_MONOTONIC ms; ``sched`` = the paced slot)."""

    sched_ms: float
    sent_ms: float
    done_ms: float
    status: int
    member_id: int | None
    fallbacks: tuple[str, ...]
    timings_ms: Mapping[str, float]

    @property
    def latency_ms(self) -> float:
        return self.done_ms - self.sent_ms

    @property
    def corrected_ms(self) -> float:
        """Latency from the scheduled send (what an open-loop client would see): adds the slot's lag."""
        return self.done_ms - self.sched_ms

    @property
    def known_send(self) -> bool:
        return self.sent_ms >= 0

    @property
    def retrieval_ms(self) -> float | None:
        """Feast member read + candidate retrieval (Milvus or the popular fallback) of this request."""
        if "retrieval" not in self.timings_ms:
            return None
        return float(self.timings_ms.get("member_features", 0.0)) + float(self.timings_ms["retrieval"])

    @property
    def milvus_path(self) -> bool:
        """The member had a vector, so the request was meant to reach Milvus."""
        return not POPULAR_PATH.intersection(self.fallbacks)


def parse_request_log(text: str) -> list[RequestRecord]:
    out = []
    for line in text.splitlines():
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 7:
            continue
        sched, sent, done, status, member, fallbacks, timings = parts
        out.append(
            RequestRecord(
                sched_ms=float(sched),
                sent_ms=float(sent),
                done_ms=float(done),
                status=int(status),
                member_id=int(member) if member.isdigit() else None,
                fallbacks=tuple(json.loads(fallbacks)) if fallbacks != "-" else (),
                timings_ms=json.loads(timings) if timings != "-" else {},
            )
        )
    return out


def read_request_logs(prefix: Path) -> list[RequestRecord]:
    records: list[RequestRecord] = []
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        records.extend(parse_request_log(path.read_text()))
    return sorted(records, key=lambda r: r.done_ms)


# --- statistics ----------------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    return round(float(np.percentile(np.asarray(values, np.float64), p)), 3) if len(values) else None


def pct_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": round(float(max(values)), 3) if len(values) else None,
    }


def stage_quantiles_from_metrics(before: str, after: str) -> dict[str, dict[str, float | None]]:
    """p50/p95/p99 (ms) per stage from the ``feed_stage_seconds`` bucket deltas between two scrapes."""
    h0 = parse_histograms(before, "feed_stage_seconds", "stage")
    h1 = parse_histograms(after, "feed_stage_seconds", "stage")
    out: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        if stage not in h1:
            continue
        delta = bucket_delta(h1[stage], h0.get(stage))
        n = delta[-1][1] if delta else 0.0
        row: dict[str, float | None] = {"n": n}
        for q in QUANTILES:
            v = histogram_quantile(q, delta)
            row[f"p{round(q * 100)}"] = None if math.isnan(v) else round(1000.0 * v, 3)
        out[stage] = row
    return out


def stage_quantiles_from_timings(records: Sequence[RequestRecord]) -> dict[str, dict[str, Any]]:
    """Exact p50/p95/p99 (ms) per stage over the responses that ran the stage (their ``timings_ms``)."""
    out = {}
    for stage in STAGES:
        values = [float(r.timings_ms[stage]) for r in records if stage in r.timings_ms]
        if values:
            out[stage] = pct_summary(values)
    return out


def fallback_counts(records: Sequence[RequestRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        for kind in r.fallbacks:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def saturation(steps: Sequence[Mapping[str, Any]], goal_p99_ms: float) -> float | None:
    """The highest achieved throughput among the step-test steps whose p99 stays under ``goal_p99_ms``
    (None when no step does)."""
    ok = [float(s["achieved_rps"]) for s in steps if (s.get("p99_ms") or math.inf) < goal_p99_ms]
    return round(max(ok), 2) if ok else None


def member_mix(members: int, seed: int) -> list[int]:
    """Member ids 1..members in a seeded order: the same traffic every run."""
    return (np.random.default_rng(seed).permutation(members) + 1).tolist()


# --- processes: wrk, the service, Milvus, Redis ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_wrk() -> Path:
    if not WRK.is_file() or not os.access(WRK, os.X_OK):
        found = shutil.which("wrk")
        if found is None:
            raise ServingBenchError(f"wrk not found at {WRK}: install it with `apt-get install wrk`")
        return Path(found)
    return WRK


@dataclass
class WrkRun:
    """One wrk invocation: its parsed JSON (``done()``) and the per-response log."""

    summary: dict[str, Any]
    records: list[RequestRecord]
    connections: int
    rate_rps: float
    duration_s: float
    started_ms: float


def _wrk_cmd(url: str, connections: int, duration_s: float, timeout_s: float) -> list[str]:
    return [
        str(check_wrk()),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]


def _wrk_env(
    members: Sequence[int], rate: float, cfg: ServingBenchConfig, log_prefix: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "FEED_WRK_MEMBERS": ",".join(str(m) for m in members),
        "FEED_WRK_RATE": f"{rate:g}",
        "FEED_WRK_THREADS": "1",
        "FEED_WRK_K": str(cfg.k),
        "FEED_WRK_DEVICE": cfg.device_type,
        "FEED_WRK_LOG": str(log_prefix),
    }


class WrkProcess:
    """wrk running in the background (the fault runs act while it loads the service)."""

    def __init__(
        self,
        url: str,
        *,
        members: Sequence[int],
        connections: int,
        rate: float,
        duration_s: float,
        cfg: ServingBenchConfig,
        work: Path,
        name: str,
    ) -> None:
        self.log_prefix = work / f"{name}.log"
        for old in work.glob(f"{name}.log.*"):
            old.unlink()
        self.connections, self.rate, self.duration_s = connections, rate, duration_s
        self.started_ms = 1000.0 * time.monotonic()
        self.proc = subprocess.Popen(
            _wrk_cmd(url, connections, duration_s, cfg.wrk_timeout_s),
            env=_wrk_env(members, rate, cfg, self.log_prefix),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait(self) -> WrkRun:
        try:
            out, _ = self.proc.communicate(timeout=self.duration_s + 120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise ServingBenchError(
                f"wrk did not finish ({self.duration_s:.0f} s run); output:\n{out[-2000:]}"
            ) from None
        if self.proc.returncode != 0:
            raise ServingBenchError(f"wrk exited with {self.proc.returncode}:\n{out[-2000:]}")
        return WrkRun(
            summary=parse_wrk_output(out),
            records=read_request_logs(self.log_prefix),
            connections=self.connections,
            rate_rps=self.rate,
            duration_s=self.duration_s,
            started_ms=self.started_ms,
        )


def run_wrk(url: str, **kwargs: Any) -> WrkRun:
    return WrkProcess(url, **kwargs).wait()


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class Service:
    """``feed serve`` as a child process on ``home``; ``env`` adds ``FEED_SERVE_*`` settings."""

    def __init__(
        self, home: Path, *, milvus_uri: str, top_n: int, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "feed.cli", "--home", str(home), "serve", "--port", str(self.port)]
        cmd += ["--top-n", str(top_n), "--milvus-uri", milvus_uri]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        return ""

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds until /healthz and then /readyz answer 200."""
        t0 = time.monotonic()
        last = ""
        for path in ("/healthz", "/readyz"):
            while True:
                if self.proc.poll() is not None:
                    raise ServingBenchError(f"the service exited ({self.proc.returncode}):\n{self._tail()}")
                with contextlib.suppress(OSError):
                    status, last = http_get(self.url + path, timeout=5.0)
                    if status == 200:
                        break
                if time.monotonic() - t0 > timeout_s:
                    self.stop()
                    raise ServingBenchError(
                        f"the service was not ready after {timeout_s:.0f} s ({path}: {last}):\n{self._tail()}"
                    )
                time.sleep(0.5)
        return time.monotonic() - t0

    def metrics(self) -> str:
        return http_get(self.url + "/metrics")[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # uvicorn shuts down; the lifespan closes the service
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def redis_server(work: Path) -> Iterator[tuple[subprocess.Popen, str] | None]:
    """A throwaway redis-server on a free loopback port (no persistence); None when it is not installed."""
    from pipelines.redis_local import RedisNotInstalled, RedisStartError, local_redis

    try:
        with local_redis(work, timeout=30) as server:
            yield server.proc, server.address
    except RedisNotInstalled:
        yield None
    except RedisStartError as exc:
        raise ServingBenchError(str(exc)) from exc


def scratch_home(home: Path, dest: Path) -> FeedPaths:
    """A copy of ``home`` the bench may write to: lake, Feast, Milvus data and models (no server state,
    no Airflow)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {"milvus_server"} if Path(folder).name == "data" else set()
        if Path(folder) == home:
            skip |= {"airflow"}
        return skip & set(names)

    shutil.copytree(home, dest, symlinks=True, ignore=ignore)
    return FeedPaths(home=dest)


def setup_redis_store(paths: FeedPaths, connection: str) -> dict[str, Any]:
    """The Redis variant of ``paths``' online store, holding what its SQLite store holds: the same views
    materialized over the same window (``end - ttl`` → the SQLite store's end), and the promoted encoder's
    member embeddings pushed, as the demo does for SQLite. Views the SQLite store never materialized (a home
    built before a view was defined) are left empty, as they are there."""
    import pandas as pd
    from feast.data_source import PushMode

    from feed.flows.retrieval import MEMBER_PUSH_SOURCE
    from pipelines import feature_store
    from training.retrieval.embed import read_embeddings
    from training.versions import current_version

    t0 = time.monotonic()
    local = {v.name: v for v in feature_store.applied_store(paths).list_feature_views()}
    ends = [v.most_recent_end_time for v in local.values() if v.most_recent_end_time is not None]
    if not ends:
        raise ServingBenchError(f"the SQLite online store of {paths.home} was never materialized")
    end = max(ends)
    feature_store.apply(paths, "redis", redis_connection=connection)
    fs = feature_store.applied_store(paths, "redis", redis_connection=connection)
    views = [v for v in fs.list_feature_views() if v.name in local and local[v.name].most_recent_end_time]
    for view in views:
        fs.materialize(start_date=end - view.ttl, end_date=end, feature_views=[view.name])
    version = current_version(paths.artifacts / "retrieval")
    pushed = 0
    if version:
        ids, vectors = read_embeddings(paths, "member", version)
        now = pd.Timestamp.now(tz="UTC")
        frame = pd.DataFrame(
            {
                "member_id": ids,
                "embedding": [row.tolist() for row in vectors],
                "model_version": version,
                "event_timestamp": now,
                "created": now,
            }
        )
        fs.push(MEMBER_PUSH_SOURCE, frame, to=PushMode.ONLINE)
        pushed = len(frame)
    return {
        "materialized_until": str(end),
        "views": sorted(v.name for v in views),
        "member_embeddings_pushed": pushed,
        "setup_s": time.monotonic() - t0,
    }


# --- phases -------------------------------------------------------------------------------------------


def request_stats(run: WrkRun) -> dict[str, Any]:
    """What one wrk run measured: wrk's own numbers, the per-response log's, fallbacks and stage times."""
    recs = [r for r in run.records if r.known_send]
    ok = [r for r in run.records if 200 <= r.status < 300]
    s = run.summary
    return {
        "connections": run.connections,
        "offered_rps": run.rate_rps or None,
        "duration_s": round(float(s["duration_s"]), 3),
        "requests": int(s["requests"]),
        "achieved_rps": round(float(s["achieved_rps"]), 3),
        "errors": {**s["errors"], "non_2xx_logged": sum(1 for r in run.records if not 200 <= r.status < 300)},
        "errors_total": int(s["errors_total"]),
        "p50_ms": s["latency_ms"]["p50"],
        "p95_ms": s["latency_ms"]["p95"],
        "p99_ms": s["latency_ms"]["p99"],
        "max_ms": s["latency_ms"]["max"],
        "mean_ms": s["latency_ms"]["mean"],
        "logged": pct_summary([r.latency_ms for r in recs]),
        "corrected_for_schedule": pct_summary([r.corrected_ms for r in recs]) if run.rate_rps else None,
        "schedule_lag_ms": pct_summary([r.sent_ms - r.sched_ms for r in recs]) if run.rate_rps else None,
        "fallbacks": fallback_counts(ok),
        "responses_logged": len(run.records),
    }


def rate_phase(svc: Service, members: Sequence[int], cfg: ServingBenchConfig, work: Path) -> dict[str, Any]:
    before = svc.metrics()
    run = run_wrk(
        svc.url,
        members=members,
        connections=cfg.rate_connections,
        rate=cfg.rate_rps,
        duration_s=cfg.rate_duration_s,
        cfg=cfg,
        work=work,
        name="rate",
    )
    after = svc.metrics()
    ok = [r for r in run.records if 200 <= r.status < 300]
    retrieval = [r.retrieval_ms for r in ok if r.retrieval_ms is not None]
    milvus = [r.retrieval_ms for r in ok if r.retrieval_ms is not None and r.milvus_path]
    with_cold = [
        r.retrieval_ms + float(r.timings_ms.get("cold_start", 0.0)) for r in ok if r.retrieval_ms is not None
    ]
    f0, f1 = counters(before, "feed_fallbacks_total", "kind"), counters(after, "feed_fallbacks_total", "kind")
    return {
        **request_stats(run),
        "per_stage_metrics": stage_quantiles_from_metrics(before, after),
        "per_stage_timings": stage_quantiles_from_timings(ok),
        "retrieval_member_plus_retrieval_ms": pct_summary(retrieval),
        "retrieval_milvus_path_ms": pct_summary(milvus),
        "retrieval_incl_cold_start_ms": pct_summary(with_cold),
        "milvus_path_share": round(len(milvus) / len(ok), 4) if ok else None,
        "degraded_share": round(sum(bool(DEGRADED.intersection(r.fallbacks)) for r in ok) / len(ok), 4)
        if ok
        else None,
        "fallbacks_metrics_delta": {
            k: v - f0.get(k, 0.0) for k, v in sorted(f1.items()) if v > f0.get(k, 0.0)
        },
    }


def step_phase(svc: Service, members: Sequence[int], cfg: ServingBenchConfig, work: Path) -> list[dict]:
    steps = []
    for c in cfg.step_connections:
        run = run_wrk(
            svc.url,
            members=members,
            connections=c,
            rate=0.0,
            duration_s=cfg.step_duration_s,
            cfg=cfg,
            work=work,
            name=f"step{c}",
        )
        stats = request_stats(run)
        stats.pop("corrected_for_schedule")
        stats.pop("schedule_lag_ms")
        steps.append(stats)
    return steps


def schemathesis_phase(url: str, cfg: ServingBenchConfig, work: Path) -> dict[str, Any]:
    """``schemathesis run`` against the live /openapi.json: server errors (5xx) found, per the JSON report."""
    exe = Path(sys.executable).parent / "schemathesis"
    if not exe.exists():
        exe = Path(shutil.which("schemathesis") or "schemathesis")
    report, junit = work / "schemathesis.json", work / "schemathesis.xml"
    cmd = [
        str(exe),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(cfg.schemathesis_max_examples),
        "--max-time",
        f"{max(1, round(cfg.schemathesis_max_time_s))}",
        "--seed",
        str(cfg.seed),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "json,junit",
        "--report-json-path",
        str(report),
        "--report-junit-path",
        str(junit),
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=cfg.schemathesis_timeout_s,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"server_errors": None, "timed_out": True, "seconds": cfg.schemathesis_timeout_s, "cmd": cmd}
    seconds = time.monotonic() - t0
    if not report.is_file():
        raise ServingBenchError(f"schemathesis wrote no report ({proc.returncode}):\n{proc.stdout[-3000:]}")
    doc = json.loads(report.read_text())
    server = [f for f in doc.get("failures", []) if is_server_error(f)]
    return {
        "server_errors": int(sum(int(f.get("count", 1)) for f in server)),
        "server_error_operations": sorted({op for f in server for op in f.get("operations", [])}),
        "failures": doc.get("failures", []),
        "errors": doc.get("errors", []),
        "test_cases": doc.get("test_cases"),
        "operations": doc.get("operations"),
        "exit_code": proc.returncode,
        "seconds": round(seconds, 1),
        "version": doc.get("schemathesis_version"),
        "details": _junit_failures(junit),
        "cmd": " ".join([*cmd[:2], "URL/openapi.json", *cmd[3:]]),
    }


def is_server_error(failure: Mapping[str, Any]) -> bool:
    """A 5xx schemathesis found: ST101 (server error) and ST102 (server error on an undeclared request
    content type), whatever their codes become (their types end in ``ServerError``)."""
    return str(failure.get("type", "")).endswith("ServerError") or failure.get("code") in SERVER_ERROR_CODES


def _junit_failures(path: Path) -> list[dict[str, str]]:
    """The failing operations and schemathesis' message (with the curl that reproduces it)."""
    import xml.etree.ElementTree as ET

    if not path.is_file():
        return []
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        for failure in case.findall("failure"):
            out.append({"operation": case.get("name", ""), "message": (failure.text or "")[:2000]})
    return out


def analyze_fault(
    run: WrkRun, fallback: str, *, down_ms: float, up_ms: float, eligible: Any = None
) -> dict[str, Any]:
    """A fault run's outcome: errors, the fallback's share before/during/after the outage, recovery time.

    ``down_ms``/``up_ms``: CLOCK_MONOTONIC ms when the dependency went away and came back (ready).
    ``eligible(record)``: the responses the fallback applies to (default: all). Recovery: from ``up_ms`` to
    the send of the first eligible response from which every later eligible response is free of
    ``fallback``."""
    recs = [r for r in run.records if r.known_send]
    elig = [r for r in recs if (eligible is None or eligible(r)) and 200 <= r.status < 300]
    before = [r for r in elig if r.sent_ms < down_ms]
    during = [r for r in elig if down_ms <= r.sent_ms < up_ms]
    after = [r for r in elig if r.sent_ms >= up_ms]

    def share(rs: Sequence[RequestRecord]) -> float | None:
        return round(sum(fallback in r.fallbacks for r in rs) / len(rs), 4) if rs else None

    # A budget overrun before the outage is load, not the fault: only what was sent after it counts.
    bad_sent = [r.sent_ms for r in elig if fallback in r.fallbacks and r.sent_ms >= down_ms]
    first_bad = min(bad_sent) if bad_sent else None
    last_bad = max(bad_sent) if bad_sent else None
    later_ok = [r.sent_ms for r in elig if r.sent_ms > (last_bad if last_bad is not None else down_ms)]
    recovered_at = min(later_ok) if later_ok else None
    s = run.summary
    return {
        "errors": int(s["errors_total"]),
        "errors_by_kind": s["errors"],
        "requests": int(s["requests"]),
        "achieved_rps": round(float(s["achieved_rps"]), 3),
        "responses_logged": len(run.records),
        "eligible_responses": {"before": len(before), "during": len(during), "after": len(after)},
        "fallback": fallback,
        "fallback_share_before": share(before),
        "fallback_share_during": share(during),
        "fallback_share_after": share(after),
        "detect_s": round((first_bad - down_ms) / 1000.0, 3) if first_bad is not None else None,
        "recovery_s": (
            round(max(0.0, recovered_at - up_ms) / 1000.0, 3) if recovered_at is not None else None
        ),
        "recovered": recovered_at is not None,
        "latency_during_ms": pct_summary([r.latency_ms for r in recs if down_ms <= r.sent_ms < up_ms]),
        "latency_after_ms": pct_summary([r.latency_ms for r in recs if r.sent_ms >= up_ms]),
        "fallbacks_during": fallback_counts([r for r in recs if down_ms <= r.sent_ms < up_ms]),
        "fallbacks_after": fallback_counts([r for r in recs if r.sent_ms >= up_ms]),
        "outage_s": round((up_ms - down_ms) / 1000.0, 3),
    }


def _sleep_until(t_ms: float) -> None:
    time.sleep(max(0.0, t_ms / 1000.0 - time.monotonic()))


def milvus_fault(
    svc: Service, paths: FeedPaths, members: Sequence[int], cfg: ServingBenchConfig, work: Path
) -> dict[str, Any]:
    """SIGKILL the Milvus Lite server mid-load; start it again on the same port after ``fault_outage_s``."""
    from serving.index import lite

    server = lite.running_server(paths)
    if server is None:
        raise ServingBenchError(f"no Milvus Lite server is running for {paths.home}")
    wrk = WrkProcess(
        svc.url,
        members=members,
        connections=cfg.rate_connections,
        rate=cfg.rate_rps,
        duration_s=cfg.fault_duration_s,
        cfg=cfg,
        work=work,
        name="fault_milvus",
    )
    _sleep_until(wrk.started_ms + 1000.0 * cfg.fault_start_s)
    down_ms = 1000.0 * time.monotonic()
    os.kill(server.pid, signal.SIGKILL)
    _sleep_until(down_ms + 1000.0 * cfg.fault_outage_s)
    restart_ms = 1000.0 * time.monotonic()
    restarted = lite.ensure_server(paths, port=server.port)  # what `feed index server start --port P` runs
    up_ms = 1000.0 * time.monotonic()
    run = wrk.wait()
    out = analyze_fault(run, "retrieval_unavailable", down_ms=down_ms, up_ms=up_ms, eligible=_milvus_eligible)
    out.update(
        {
            "how": (
                f"SIGKILL of the Milvus Lite server (pid {server.pid}, port {server.port}) "
                f"{cfg.fault_start_s:g} s into a {cfg.rate_rps:g} rps run; after {cfg.fault_outage_s:g} s "
                "serving.index.lite.ensure_server(paths, port=P) (= `feed index server start --port P`) "
                "started it again on the same port. The service was given --milvus-uri, so it could not "
                "restart Milvus itself. Shares are over responses whose member had a vector (meant for "
                "Milvus)."
            ),
            "restart_took_s": round((up_ms - restart_ms) / 1000.0, 3),
            "restarted_pid": restarted.pid,
        }
    )
    return out


def _milvus_eligible(r: RequestRecord) -> bool:
    return r.milvus_path


def feature_store_fault(
    home: Path,
    milvus_uri: str,
    members: Sequence[int],
    cfg: ServingBenchConfig,
    work: Path,
) -> dict[str, Any]:
    """A service on the Redis online store; the redis-server is SIGSTOPped mid-load, SIGCONTed later."""
    paths = FeedPaths(home=home)
    with redis_server(work) as redis:
        if redis is None:
            return {
                "skipped": "redis-server is not installed (apt-get install redis-server): the Redis variant, "
                "whose server can be stopped under load, was not run"
            }
        proc, connection = redis
        setup = setup_redis_store(paths, connection)
        svc = Service(
            home,
            milvus_uri=milvus_uri,
            top_n=cfg.top_n,
            log=work / "service_redis.log",
            env={"FEED_SERVE_FEAST_VARIANT": "redis", "FEED_SERVE_REDIS_CONNECTION": connection},
        )
        try:
            start_s = svc.wait_ready(cfg.start_timeout_s)
            run_wrk(
                svc.url,
                members=members,
                connections=2,
                rate=0.0,
                duration_s=cfg.warmup_s,
                cfg=cfg,
                work=work,
                name="warmup_redis",
            )
            wrk = WrkProcess(
                svc.url,
                members=members,
                connections=cfg.rate_connections,
                rate=cfg.rate_rps,
                duration_s=cfg.fault_duration_s,
                cfg=cfg,
                work=work,
                name="fault_feature_store",
            )
            _sleep_until(wrk.started_ms + 1000.0 * cfg.fault_start_s)
            down_ms = 1000.0 * time.monotonic()
            os.kill(proc.pid, signal.SIGSTOP)
            _sleep_until(down_ms + 1000.0 * cfg.fault_outage_s)
            os.kill(proc.pid, signal.SIGCONT)
            up_ms = 1000.0 * time.monotonic()
            run = wrk.wait()
        finally:
            svc.stop()
    out = analyze_fault(run, "feature_store_unavailable", down_ms=down_ms, up_ms=up_ms)
    out.update(
        {
            "how": (
                f"a second service on the Redis online-store variant (FEED_SERVE_FEAST_VARIANT=redis; "
                f"materialized to {setup['materialized_until']}, {setup['member_embeddings_pushed']} member "
                f"embeddings pushed); its redis-server SIGSTOPped {cfg.fault_start_s:g} s into a "
                f"{cfg.rate_rps:g} rps run and SIGCONTed {cfg.fault_outage_s:g} s later (connections stay "
                "open, reads hang: a hung store rather than a refused one)."
            ),
            "service_start_s": round(start_s, 1),
            "redis_setup_s": round(setup["setup_s"], 1),
        }
    )
    return out


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class _Results:
    start_s: float = 0.0
    warmup: dict[str, Any] = field(default_factory=dict)
    rate: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    schemathesis: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    load: dict[str, list[float]] = field(default_factory=dict)  # os.getloadavg() after each phase

    def mark(self, phase: str) -> None:
        self.load[phase] = [round(x, 2) for x in os.getloadavg()]


def run(
    settings: FeedSettings,
    cfg: ServingBenchConfig = ServingBenchConfig(),
    *,
    quick: bool = False,
    reports_dir: Path = REPORTS_DIR,
    work_dir: Path | None = None,
) -> Path:
    """Every phase against a scratch copy of ``settings.home``; writes ``<reports_dir>/bench/serving.json``
    (``serving_quick.json`` when ``quick``) and the plot beside it."""
    from serving.index import lite

    check_wrk()
    home = settings.paths().home
    if not (home / "artifacts").is_dir() or not (home / "data" / "feast").is_dir():
        raise ServingBenchError(
            f"{home} is not a served home (no artifacts/ or data/feast/); run `make demo`"
        )
    members = member_mix(cfg.members, cfg.seed)
    res = _Results()
    with contextlib.ExitStack() as stack:
        work = work_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="feed_bench_serving_"))
        )
        work.mkdir(parents=True, exist_ok=True)
        paths = scratch_home(home, work / "home")
        server = lite.ensure_server(paths, port=free_port())
        stack.callback(lite.stop_server, paths)
        svc = Service(paths.home, milvus_uri=server.uri, top_n=cfg.top_n, log=work / "service.log")
        stack.callback(svc.stop)
        res.mark("before")
        res.start_s = svc.wait_ready(cfg.start_timeout_s)
        common = {"members": members, "cfg": cfg, "work": work}
        res.warmup = request_stats(
            run_wrk(svc.url, connections=2, rate=0.0, duration_s=cfg.warmup_s, name="warmup", **common)
        )
        res.rate = rate_phase(svc, members, cfg, work)
        res.mark("rate")
        res.steps = step_phase(svc, members, cfg, work)
        res.mark("steps")
        if cfg.schemathesis:
            res.schemathesis = schemathesis_phase(svc.url, cfg, work)
        if "milvus" in cfg.faults:
            res.faults["milvus"] = milvus_fault(svc, paths, members, cfg, work)
            res.mark("fault_milvus")
        svc.stop()  # the Redis service runs alone (2 cores)
        if "feature_store" in cfg.faults:
            server = lite.ensure_server(paths, port=server.port)
            res.faults["feature_store"] = feature_store_fault(paths.home, server.uri, members, cfg, work)
            res.mark("fault_feature_store")
    return _write(settings, cfg, res, quick=quick, reports_dir=reports_dir)


def _summary(cfg: ServingBenchConfig, res: _Results) -> dict[str, Any]:
    rate = res.rate
    per_stage = {
        stage: {q: row.get(q) for q in ("p50", "p95", "p99")}
        for stage, row in rate["per_stage_metrics"].items()
    }
    retrieval_p99 = rate["retrieval_member_plus_retrieval_ms"]["p99"]
    errors = int(rate["errors_total"])  # wrk: connect + read + write + timeout + status >= 400
    st_errors = res.schemathesis.get("server_errors") if res.schemathesis else None
    return {
        "p99_ms_at_20rps": rate["p99_ms"],
        "p50_ms_at_20rps": rate["p50_ms"],
        "p95_ms_at_20rps": rate["p95_ms"],
        "offered_rps": cfg.rate_rps,
        "achieved_rps": rate["achieved_rps"],
        "errors": errors,
        "retrieval_p99_ms": retrieval_p99,
        "retrieval_p99_ms_milvus_path": rate["retrieval_milvus_path_ms"]["p99"],
        "degraded_share_at_20rps": rate["degraded_share"],
        "schemathesis_server_errors": st_errors,
        "saturation_rps": saturation(res.steps, cfg.goal_p99_ms),
        "peak_rps": round(max(s["achieved_rps"] for s in res.steps), 2) if res.steps else None,
        "per_stage": per_stage,
        "p99_goal_met": rate["p99_ms"] is not None and rate["p99_ms"] < cfg.goal_p99_ms,
        "errors_goal_met": errors == 0,
        "retrieval_goal_met": retrieval_p99 is not None and retrieval_p99 < cfg.goal_retrieval_p99_ms,
        "schemathesis_goal_met": st_errors == 0,
        "faults": {name: _fault_summary(f) for name, f in res.faults.items()},
    }


def _fault_summary(f: Mapping[str, Any]) -> dict[str, Any]:
    if "skipped" in f:
        return {"skipped": f["skipped"]}
    keys = (
        "errors",
        "fallback",
        "fallback_share_during",
        "fallback_share_after",
        "detect_s",
        "recovery_s",
        "recovered",
        "outage_s",
    )
    out = {k: f[k] for k in keys}
    out["p99_ms_during"] = f["latency_during_ms"]["p99"]
    out["p99_ms_after"] = f["latency_after_ms"]["p99"]
    return out


def _notes(cfg: ServingBenchConfig, res: _Results, summary: Mapping[str, Any]) -> list[str]:
    cores = os.cpu_count()
    notes = [
        f"Machine: {cores} cores shared by the service (uvicorn + feature threads + the GR model thread), "
        "its Milvus Lite server, wrk and this script — and by whatever else ran on the box then; latencies "
        "include that contention (details.load_average: the machine's 1/5/15-min load after each phase; "
        f"{res.load.get('rate')} after the rate run). wrk uses 1 thread.",
        f"Rate run: wrk + bench/wrk/feed.lua, {cfg.rate_rps:g} req/s for {cfg.rate_duration_s:g} s over "
        f"{cfg.rate_connections} connections, paced by a fixed schedule (LuaJIT ffi clock_gettime in "
        "delay()); p50/p95/p99 are wrk's histogram (from the send of each request). A slot that finds every "
        "connection busy goes late: details.rate.corrected_for_schedule measures from the scheduled slot "
        "instead (coordinated omission corrected), details.rate.schedule_lag_ms shows how late sends were.",
        "Per stage (summary.per_stage): quantiles of the feed_stage_seconds histogram bucket deltas between "
        "/metrics scrapes before and after the rate run, computed like Prometheus' histogram_quantile "
        "(linear interpolation inside the bucket holding the rank, the first bucket starting at 0): "
        "bucket-resolution estimates (buckets 1, 2.5, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500 ms…). "
        "details.rate.per_stage_timings has exact percentiles of every response's timings_ms for comparison.",
        "retrieval_p99_ms: p99 over the rate run's responses of member_features + retrieval from each "
        "response's own timings_ms (the Lua script logs every response body's timings_ms; a sum per request, "
        "which a histogram cannot give). retrieval is Milvus top-N for members with a vector and the popular-"
        "posts fallback for the rest; retrieval_p99_ms_milvus_path is over requests meant for Milvus only "
        f"({rate_share(res)} of requests). Cold-start encoding is its own stage (see "
        "details.rate.retrieval_incl_cold_start_ms).",
        f"saturation_rps: closed-loop steps with {list(cfg.step_connections)} connections, "
        f"{cfg.step_duration_s:g} s each; the highest achieved throughput (responses/s) among the steps "
        f"whose p99 stays under {cfg.goal_p99_ms:g} ms (null when none does); peak_rps is the highest "
        "throughput of any step.",
        f"Members: ids 1..{cfg.members} in a seeded permutation (seed {cfg.seed}), round robin; k={cfg.k}, "
        f"top_n={cfg.top_n}, device_type={cfg.device_type}. The service runs on a scratch copy of the home "
        "(served impressions are logged there, as in production) against its own Milvus Lite server.",
        "errors: wrk's socket errors (connect/read/write/timeout) + non-2xx responses of the rate run.",
    ]
    if res.schemathesis:
        st = res.schemathesis
        notes.append(
            f"Schemathesis {st.get('version')}: `schemathesis run <service>/openapi.json --checks "
            f"not_a_server_error --max-examples {cfg.schemathesis_max_examples} --max-time "
            f"{cfg.schemathesis_max_time_s:g}` (examples, coverage, then fuzzing rounds until the time "
            f"budget is spent; {(st.get('test_cases') or {}).get('generated')} cases). "
            "schemathesis_server_errors = unique 5xx failures it found (ST101 server error, ST102 server "
            "error on an undeclared content type; details.schemathesis.details has the curl to reproduce) "
            f"({st.get('server_error_operations')})."
        )
    if summary["saturation_rps"] is None:
        notes.append(f"No step kept p99 under {cfg.goal_p99_ms:g} ms, so saturation_rps is null.")
    rate = res.rate
    timed = rate["per_stage_timings"].get("total", {})
    if timed.get("p50") is not None and rate["logged"]["p50"] is not None:
        notes.append(
            f"Client p50 {rate['logged']['p50']:.1f} ms vs the service's own total stage p50 "
            f"{timed['p50']:.1f} ms: the difference is HTTP, request parsing and the response model's "
            "validation/serialization (50 items with text), which no stage times."
        )
    notes.append(
        f"degraded_share_at_20rps: share of the rate run's responses with a dependency fallback "
        f"({', '.join(sorted(DEGRADED))}); with every dependency up, only a stage over its budget "
        "(ServingSettings.timeouts_ms) under load gives one. member_unknown / no_member_vector are "
        "properties of the member (the popular-posts path), not degradation."
    )
    if res.faults:
        notes.append(
            "Faults (summary.faults): fallback_share_during = share of the responses sent while the "
            "dependency was down (Milvus: only those whose member had a vector, i.e. meant for Milvus) "
            "that carry the fallback; detect_s = kill → the first such response sent; recovery_s = "
            "dependency back (Milvus answering after the restart / redis-server SIGCONTed) → the send of "
            "the first response from which no later one carries the fallback; errors = wrk socket errors "
            "+ non-2xx during the whole fault run (must be 0: the service answers degraded). "
            "details.faults.*.how says exactly what was done."
        )
    if not rate["per_stage_metrics"].get("cold_start", {}).get("n"):
        notes.append(
            "No request of the rate run took the cold-start path (cold_start stage empty): in this home the "
            "members without a stored embedding have no profile row in the online store to encode "
            f"(no_member_vector) or no row at all (member_unknown). Fallback counts: {rate['fallbacks']}."
        )
    return notes


def rate_share(res: _Results) -> str:
    share = res.rate.get("milvus_path_share")
    return f"{100 * share:.0f}%" if share is not None else "n/a"


def _write(
    settings: FeedSettings, cfg: ServingBenchConfig, res: _Results, *, quick: bool, reports_dir: Path
) -> Path:
    summary = _summary(cfg, res)
    config = {
        **asdict(cfg),
        "home": str(settings.paths().home),
        "wrk": str(WRK),
        "lua": "bench/wrk/feed.lua",
        # the service's retriever (FEED_SERVE_RETRIEVER, inherited by `feed serve`): milvus | replica
        "retriever": os.environ.get(
            "FEED_SERVE_RETRIEVER", "auto (milvus: the service is given --milvus-uri)"
        ),
    }
    details = {
        "service_start_s": round(res.start_s, 1),
        "load_average": res.load,  # 1/5/15-min load of the whole machine after each phase
        "warmup": res.warmup,
        "rate": res.rate,
        "steps": res.steps,
        "schemathesis": res.schemathesis,
        "faults": res.faults,
    }
    out = write_report(
        QUICK_REPORT_NAME if quick else REPORT_NAME,
        summary,
        config,
        notes=_notes(cfg, res, summary),
        details=details,
        reports_dir=reports_dir,
    )
    with contextlib.suppress(Exception):  # the numbers count even when matplotlib cannot draw
        replot(out)
    return out


def plot(doc: Mapping[str, Any], out: Path) -> Path:
    """Left: p50/p99 against the offered load of the step test (closed loop: connections), each point
    labelled with its throughput, and the open-loop run's p99 as a reference line. Right: per-stage
    quantiles of the rate run. ``doc``: the report (``summary``, ``config``, ``details``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, details = doc["config"], doc["details"]
    steps, rate = details["steps"], details["rate"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = [s["connections"] for s in steps]
    for key, style in (("p50_ms", "o-"), ("p99_ms", "s-")):
        ax.plot(xs, [s[key] for s in steps], style, label=f"step test {key[:3]}")
    for s in steps:
        label = f"{s['achieved_rps']:.0f}/s"
        ax.annotate(
            label, (s["connections"], s["p99_ms"]), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    ax.axhline(
        rate["p99_ms"],
        color="tab:red",
        ls=":",
        lw=1.2,
        label=f"{cfg['rate_rps']:g} req/s open loop: p99 {rate['p99_ms']:.0f} ms",
    )
    ax.axhline(cfg["goal_p99_ms"], color="grey", ls="--", lw=1, label=f"goal p99 < {cfg['goal_p99_ms']:g} ms")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("offered load: concurrent connections, closed loop (labels: responses/s achieved)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Latency vs offered load (step test)")
    ax.legend(fontsize=8)
    per_stage = rate["per_stage_metrics"]
    stages = [s for s in STAGES if s in per_stage and per_stage[s]["n"]]
    pos = np.arange(len(stages))
    for i, q in enumerate(("p50", "p95", "p99")):
        bx.bar(pos + (i - 1) * 0.27, [per_stage[s][q] or 0.0 for s in stages], 0.27, label=q)
    bx.set_xticks(pos, stages, rotation=30, ha="right")
    bx.set_ylabel("ms (histogram_quantile over the run)")
    bx.set_title(f"Per stage at {cfg['rate_rps']:g} req/s")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def replot(report: Path) -> Path:
    """Re-draw ``<report>.png`` from a written report."""
    return plot(json.loads(report.read_text()), report.with_suffix(".png"))
