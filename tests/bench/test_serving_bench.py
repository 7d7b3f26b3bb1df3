"""bench/serving.py: the Prometheus histogram quantile, the wrk/Lua output parsing and the fault analysis on
fixed inputs; the Lua pacing against a stub HTTP server; and one --quick run of every phase against the
served home (integration). Timings are reported, never asserted."""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bench import serving
from bench.serving import RequestRecord, ServingBenchConfig, ServingBenchError, WrkRun
from feed.config import FeedPaths

# --- histogram_quantile (Prometheus semantics)


def test_quantile_interpolates_inside_the_bucket_holding_the_rank() -> None:
    buckets = [(0.1, 10.0), (0.2, 20.0), (0.5, 20.0), (math.inf, 20.0)]
    assert serving.histogram_quantile(0.5, buckets) == pytest.approx(0.1)  # rank 10: top of bucket 1
    assert serving.histogram_quantile(0.75, buckets) == pytest.approx(0.15)  # rank 15: half-way in (0.1, 0.2]
    assert serving.histogram_quantile(0.25, buckets) == pytest.approx(0.05)  # first bucket starts at 0


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert serving.histogram_quantile(0.99, [(0.1, 5.0), (0.3, 6.0), (math.inf, 10.0)]) == 0.3


def test_quantile_edge_cases() -> None:
    assert math.isnan(serving.histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))  # no observations
    assert math.isnan(serving.histogram_quantile(0.5, [(0.1, 3.0), (0.2, 3.0)]))  # no +Inf bucket
    assert serving.histogram_quantile(1.5, [(0.1, 1.0), (math.inf, 1.0)]) == math.inf
    assert serving.histogram_quantile(-0.1, [(0.1, 1.0), (math.inf, 1.0)]) == -math.inf
    # Non-monotonic counts (a scrape racing an observation) are forced monotonic, as Prometheus does.
    assert serving.histogram_quantile(0.5, [(0.1, 4.0), (0.2, 3.0), (math.inf, 8.0)]) == pytest.approx(0.1)


def test_quantile_lands_in_the_bucket_of_the_exact_quantile() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=-3.0, sigma=0.8, size=5000)
    bounds = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, math.inf]
    buckets = [(b, float((values <= b).sum())) for b in bounds]
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q))
        hi = next(b for b in bounds if exact <= b)
        lo = max([0.0, *[b for b in bounds if b < hi]])
        assert lo <= serving.histogram_quantile(q, buckets) <= hi


def test_stage_quantiles_from_two_scrapes_of_the_service_metrics() -> None:
    from serving.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    for _ in range(50):
        metrics.stage_seconds.labels(stage="ranking").observe(0.004)  # before the run: not counted
    before = metrics.render().decode()
    for v in [0.012] * 90 + [0.12] * 10:
        metrics.stage_seconds.labels(stage="ranking").observe(v)
    metrics.fallbacks.labels(kind="cold_start").inc(3)
    after = metrics.render().decode()
    out = serving.stage_quantiles_from_metrics(before, after)
    assert out["ranking"]["n"] == 100
    assert 10.0 < out["ranking"]["p50"] <= 20.0  # the (10, 20] ms bucket, not the 4 ms ones before
    assert 100.0 < out["ranking"]["p99"] <= 150.0
    assert out["retrieval"]["n"] == 0
    assert out["retrieval"]["p50"] is None
    assert serving.counters(after, "feed_fallbacks_total", "kind") == {"cold_start": 3.0}


# --- wrk / Lua output


WRK_STDOUT = """Running 2s test @ http://127.0.0.1:1
  1 threads and 4 connections
Requests/sec:     19.50
FEED_WRK_JSON {"bytes": 1000, "duration_s": 2.0000, "errors": {"connect": 0, "read": 1, "status": 2, \
"timeout": 0, "write": 0}, "latency_ms": {"max": 90.5, "mean": 40.1, "min": 10.2, "p50": 38.0, "p90": 70.0, \
"p95": 80.0, "p99": 90.0, "p999": 90.5, "stdev": 12.0}, "rate": 20, "requests": 39, "threads": 1}
"""


def test_parse_wrk_output() -> None:
    doc = serving.parse_wrk_output(WRK_STDOUT)
    assert doc["requests"] == 39
    assert doc["latency_ms"]["p99"] == 90.0
    assert doc["achieved_rps"] == pytest.approx(19.5)
    assert doc["errors_total"] == 3
    with pytest.raises(ServingBenchError, match="FEED_WRK_JSON"):
        serving.parse_wrk_output("Running 2s test\nsegfault\n")


def test_parse_request_log() -> None:
    text = (
        '1000.0\t1002.5\t1050.0\t200\t17\t["cold_start"]\t{"member_features": 3.0, "retrieval": 20.5}\n'
        "-1.000\t-1.000\t1060.0\t503\t-\t-\t-\n"
        "garbage line\n"
    )
    ok, err = serving.parse_request_log(text)
    assert ok.latency_ms == pytest.approx(47.5)
    assert ok.corrected_ms == pytest.approx(50.0)
    assert ok.member_id == 17
    assert ok.fallbacks == ("cold_start",)
    assert ok.retrieval_ms == pytest.approx(23.5)
    assert ok.milvus_path
    assert err.status == 503
    assert not err.known_send
    assert err.retrieval_ms is None
    assert not RequestRecord(0, 0, 1, 200, 1, ("member_unknown",), {}).milvus_path


def test_saturation_is_the_best_throughput_under_the_goal() -> None:
    steps = [
        {"achieved_rps": 8.0, "p99_ms": 90.0},
        {"achieved_rps": 14.0, "p99_ms": 140.0},
        {"achieved_rps": 18.0, "p99_ms": 260.0},
    ]
    assert serving.saturation(steps, 150.0) == 14.0
    assert serving.saturation(steps, 50.0) is None


def _record(t: float, fallbacks: tuple[str, ...] = (), status: int = 200) -> RequestRecord:
    return RequestRecord(t, t, t + 40.0, status, 7, fallbacks, {"retrieval": 1.0})


def test_analyze_fault_shares_and_recovery() -> None:
    down, up = 1000.0, 2000.0
    recs = [_record(t) for t in (100.0, 500.0)]
    recs += [_record(t, ("retrieval_unavailable",)) for t in (1100.0, 1500.0, 1900.0)]
    recs += [_record(2100.0, ("retrieval_unavailable",)), _record(2300.0), _record(2600.0)]
    recs += [_record(1200.0, ("member_unknown",))]  # not meant for Milvus: outside the shares
    recs += [_record(700.0, ("retrieval_unavailable",))]  # a budget overrun before the kill: not detection
    summary = {"errors_total": 0, "errors": {}, "requests": len(recs), "achieved_rps": 3.0}
    run = WrkRun(summary, recs, connections=4, rate_rps=3.0, duration_s=3.0, started_ms=0.0)
    out = serving.analyze_fault(
        run, "retrieval_unavailable", down_ms=down, up_ms=up, eligible=lambda r: r.milvus_path
    )
    assert out["fallback_share_before"] == pytest.approx(1 / 3, abs=1e-3)
    assert out["fallback_share_during"] == 1.0
    assert out["fallback_share_after"] == pytest.approx(1 / 3, abs=1e-3)
    assert out["detect_s"] == pytest.approx(0.1)
    assert out["recovery_s"] == pytest.approx(0.3)  # sent at 2300 ms: the first of the good run
    assert out["recovered"]
    assert out["errors"] == 0


def test_config_refuses_a_fault_without_time_to_recover() -> None:
    with pytest.raises(ValueError, match="recover"):
        ServingBenchConfig(fault_duration_s=10.0, fault_start_s=5.0, fault_outage_s=5.0)
    with pytest.raises(ValueError, match="unknown faults"):
        ServingBenchConfig(faults=("disk",))


def test_member_mix_is_a_deterministic_permutation() -> None:
    mix = serving.member_mix(50, seed=3)
    assert sorted(mix) == list(range(1, 51))
    assert mix == serving.member_mix(50, seed=3)
    assert mix != list(range(1, 51))


# --- the Lua script under real wrk, against a stub service


class _StubFeed(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        out = json.dumps(
            {
                "request_id": "x",
                "member_id": body["member_id"],
                "items": [],
                "fallbacks": ["member_unknown"] if body["member_id"] % 2 else [],
                "timings_ms": {"member_features": 1.5, "retrieval": 2.0, "total": 5.0},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_service() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubFeed)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_lua_paces_the_rate_and_logs_every_response(
    stub_service: ThreadingHTTPServer, tmp_path: Path
) -> None:
    try:
        serving.check_wrk()
    except ServingBenchError as exc:
        pytest.skip(str(exc))
    cfg = ServingBenchConfig(k=7, device_type="desktop_web")
    run = serving.run_wrk(
        f"http://127.0.0.1:{stub_service.server_address[1]}",
        members=[11, 12, 13],
        connections=4,
        rate=20.0,
        duration_s=2.0,
        cfg=cfg,
        work=tmp_path,
        name="stub",
    )
    n = run.summary["requests"]
    assert 30 <= n <= 42  # 20/s for 2 s, give or take the first and the last slot
    assert len(run.records) == n
    assert all(r.status == 200 for r in run.records)
    bodies = stub_service.bodies  # type: ignore[attr-defined]
    assert bodies[0] == {"member_id": bodies[0]["member_id"], "k": 7, "device_type": "desktop_web"}
    cycle = {11: 12, 12: 13, 13: 11}  # round robin (wrk calls request() once up front to check it)
    assert all(cycle[a["member_id"]] == b["member_id"] for a, b in itertools.pairwise(bodies[:11]))
    slots = sorted(r.sched_ms for r in run.records)
    assert np.median(np.diff(slots)) == pytest.approx(50.0, abs=1.0)  # one slot every 1/20 s
    assert all(r.sent_ms >= r.sched_ms - 2.0 for r in run.records)  # never sent before its slot
    stats = serving.request_stats(run)
    assert stats["fallbacks"]["member_unknown"] == sum(r.member_id % 2 for r in run.records)
    assert all(r.retrieval_ms == pytest.approx(3.5) for r in run.records)


# --- every phase, briefly, against the served home


@pytest.mark.integration
@pytest.mark.slow
def test_quick_run_writes_the_report_contract(served_home: FeedPaths, tmp_path: Path) -> None:
    from feed.config import FeedSettings

    try:
        serving.check_wrk()
    except ServingBenchError as exc:
        pytest.skip(str(exc))
    landing = sorted(str(p) for p in served_home.landing.rglob("*"))
    out = serving.run(
        FeedSettings(home=served_home.home),
        ServingBenchConfig.quick(),
        quick=True,
        reports_dir=tmp_path / "reports",
        work_dir=tmp_path / "work",
    )
    assert out == tmp_path / "reports" / "bench" / "serving_quick.json"
    doc = json.loads(out.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at"} <= doc.keys()
    s = doc["summary"]
    contract = {"p99_ms_at_20rps", "errors", "retrieval_p99_ms", "schemathesis_server_errors"}
    assert contract | {"saturation_rps"} <= s.keys()
    assert s["p99_ms_at_20rps"] > 0
    assert s["achieved_rps"] > 0
    assert s["retrieval_p99_ms"] > 0
    assert s["errors"] == 0
    assert set(s["per_stage"]) >= {"member_features", "retrieval", "post_features", "ranking", "total"}
    assert isinstance(s["schemathesis_server_errors"], int)
    milvus = s["faults"]["milvus"]
    assert milvus["errors"] == 0  # the service answers, degraded, while Milvus is down
    store = s["faults"]["feature_store"]
    if "skipped" not in store:
        assert store["errors"] == 0
        assert store["fallback_share_during"] > 0
    assert out.with_suffix(".png").is_file()
    assert sorted(str(p) for p in served_home.landing.rglob("*")) == landing  # impressions went to a copy
