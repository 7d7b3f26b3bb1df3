"""Prometheus metrics of the feed service, on a registry of its own (one per app: tests build several apps).

* ``feed_stage_seconds{stage}``: per-stage latency histogram (member_features, cold_start, retrieval,
  post_features, ranking, assemble, total);
* ``feed_requests_total{outcome}``: served / rejected (422) / error;
* ``feed_fallbacks_total{kind}``: each degraded path taken (serving.schemas.FALLBACKS);
* ``feed_errors_total{stage}``: exceptions caught inside a stage (the request still answered);
* ``feed_candidates``: candidates retrieved per request; ``feed_post_cache_hits_total`` / ``_misses_total``;
* ``feed_impressions_logged_total`` / ``feed_impressions_dropped_total``; ``feed_model_info{model,version}``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGES = ("member_features", "cold_start", "retrieval", "post_features", "ranking", "assemble", "total")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_seconds = Histogram(
            "feed_stage_seconds", "Latency of each request stage", ["stage"], buckets=BUCKETS, registry=r
        )
        self.requests = Counter("feed_requests_total", "Feed requests by outcome", ["outcome"], registry=r)
        self.fallbacks = Counter("feed_fallbacks_total", "Degraded paths taken", ["kind"], registry=r)
        self.errors = Counter("feed_errors_total", "Exceptions caught per stage", ["stage"], registry=r)
        self.candidates = Histogram(
            "feed_candidates",
            "Candidates retrieved per request",
            buckets=(0, 10, 50, 100, 200, 300, 500, 1000),
            registry=r,
        )
        self.cache_hits = Counter("feed_post_cache_hits_total", "Post feature cache hits", registry=r)
        self.cache_misses = Counter("feed_post_cache_misses_total", "Post feature cache misses", registry=r)
        self.impressions_logged = Counter(
            "feed_impressions_logged_total", "Served impressions written to landing", registry=r
        )
        self.impressions_dropped = Counter(
            "feed_impressions_dropped_total", "Served impressions that could not be written", registry=r
        )
        self.score_batch = Histogram(
            "feed_score_batch_members",
            "Members per GR forward (model-stage batching)",
            buckets=(1, 2, 4, 8, 16, 32),
            registry=r,
        )
        self.model_info = Gauge("feed_model_info", "Loaded model versions", ["model", "version"], registry=r)
        for stage in STAGES:  # export zero series up front so dashboards see every stage
            self.stage_seconds.labels(stage=stage)

    def render(self) -> bytes:
        return generate_latest(self.registry)
