"""Served impressions go back into the lake, so training sees what was shown.

Each served item becomes a ``raw_impressions`` row (request_id, position, device, session, labels 0 — nothing
has happened yet; engagement arrives later as its own events) in a *landing batch*: a folder
``<landing>/served-<utc>-<pid>-<n>/raw_impressions.parquet`` written under a hidden temporary name and
renamed into place when complete, so the ingest step (``feed data ingest`` / the ``feed_features`` DAG) never
sees half a file and validates every row (schema, ids, times) before it reaches the published table. A
malformed batch stays in landing, refused with the reason; it never reaches ``raw_impressions``.

Per request, one row goes to the Delta table ``serving_requests`` in the lake (the service's own log: model
versions, fallbacks, candidates, latency) — the "which models served this impression" half, joined by
``request_id``.

A background thread flushes every ``flush_s`` seconds or ``flush_rows`` rows; the request path only appends to
a queue. Rows that cannot be written are counted (``feed_impressions_dropped_total``) and logged, never raised
into a request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from feed.config import FeedPaths

log = logging.getLogger(__name__)

REQUESTS_TABLE = "serving_requests"
SERVING_REQUESTS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC"), nullable=False),  # the request time
        pa.field("served_at", pa.timestamp("us", tz="UTC"), nullable=False),  # wall clock
        pa.field("device_type", pa.string(), nullable=False),
        pa.field("k", pa.int32(), nullable=False),
        pa.field("items", pa.int32(), nullable=False),
        pa.field("candidates", pa.int32(), nullable=False),
        pa.field("retrieval_version", pa.string()),
        pa.field("ranking_version", pa.string()),
        pa.field("collection", pa.string()),
        pa.field("fallbacks", pa.list_(pa.string())),
        pa.field("cold_start", pa.bool_(), nullable=False),
        pa.field("total_ms", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ServedFeed:
    request_id: str
    member_id: int
    request_ts: float  # epoch s (the serving clock)
    device_type: str
    k: int
    post_ids: Sequence[int]  # in served order (position 1, 2, …)
    candidates: int
    retrieval_version: str | None
    ranking_version: str | None
    collection: str | None
    fallbacks: Sequence[str]
    cold_start: bool
    total_ms: float


def session_id(request_id: str) -> int:
    """A stable positive int64 per request (a served feed is one session of impressions)."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little") >> 1


class ImpressionLogger:
    def __init__(
        self,
        paths: FeedPaths,
        *,
        flush_s: float = 10.0,
        flush_rows: int = 5000,
        on_logged: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.paths = paths
        self.flush_s, self.flush_rows = flush_s, flush_rows
        self._pending: list[ServedFeed] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = itertools.count()
        self._event_seq = itertools.count()
        self._on_logged = on_logged or (lambda n: None)
        self._on_dropped = on_dropped or (lambda n: None)
        self.batches_written = 0
        self._thread = threading.Thread(target=self._run, name="impression-logger", daemon=True)
        self._thread.start()

    def log(self, feed: ServedFeed) -> None:
        with self._lock:
            self._pending.append(feed)
            self._rows += len(feed.post_ids)
            full = self._rows >= self.flush_rows
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> Path | None:
        """Write what is pending now (also called at shutdown); returns the landing batch written."""
        with self._lock:
            feeds, self._pending, self._rows = self._pending, [], 0
        if not feeds:
            return None
        rows = sum(len(f.post_ids) for f in feeds)
        try:
            batch = self._write_landing(feeds)
            self._write_requests(feeds)
        except Exception:
            log.exception("could not log %d served impressions", rows)
            self._on_dropped(rows)
            return None
        self.batches_written += 1
        self._on_logged(rows)
        return batch

    def _event_id(self) -> int:
        # time-ordered and unique per process: ms since epoch << 22 | pid bits | counter
        return (
            (int(time.time() * 1000) << 22) | ((os.getpid() & 0x3FF) << 12) | (next(self._event_seq) & 0xFFF)
        )

    def _impressions(self, feeds: Sequence[ServedFeed]) -> pa.Table:
        from pipelines.schemas import LABELS, RAW_SCHEMAS

        cols: dict[str, list] = {name: [] for name in RAW_SCHEMAS["raw_impressions"].names}
        for f in feeds:
            at = dt.datetime.fromtimestamp(f.request_ts, tz=dt.UTC)
            sid = session_id(f.request_id)
            for position, post_id in enumerate(f.post_ids, start=1):
                cols["event_id"].append(self._event_id())
                cols["member_id"].append(f.member_id)
                cols["post_id"].append(int(post_id))
                cols["event_timestamp"].append(at)
                cols["session_id"].append(sid)
                cols["device_type"].append(f.device_type)
                cols["position"].append(position)
                cols["request_id"].append(f.request_id)
                for label in LABELS:
                    cols[label].append(0)
        return pa.Table.from_pydict(cols, schema=RAW_SCHEMAS["raw_impressions"])

    def _write_landing(self, feeds: Sequence[ServedFeed]) -> Path:
        import pyarrow.parquet as pq

        table = self._impressions(feeds)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        name = f"served-{stamp}-{os.getpid()}-{next(self._seq):05d}"
        tmp = self.paths.landing / f".{name}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp / "raw_impressions.parquet")
        final = self.paths.landing / name
        tmp.rename(final)  # atomic on one file system: ingest sees the whole batch or nothing
        return final

    def _write_requests(self, feeds: Sequence[ServedFeed]) -> None:
        from pipelines import delta_io

        now = dt.datetime.now(dt.UTC)
        table = pa.Table.from_pylist(
            [
                {
                    "request_id": f.request_id,
                    "member_id": f.member_id,
                    "event_timestamp": dt.datetime.fromtimestamp(f.request_ts, tz=dt.UTC),
                    "served_at": now,
                    "device_type": f.device_type,
                    "k": f.k,
                    "items": len(f.post_ids),
                    "candidates": f.candidates,
                    "retrieval_version": f.retrieval_version,
                    "ranking_version": f.ranking_version,
                    "collection": f.collection,
                    "fallbacks": list(f.fallbacks),
                    "cold_start": f.cold_start,
                    "total_ms": f.total_ms,
                }
                for f in feeds
            ],
            schema=SERVING_REQUESTS,
        )
        delta_io.write(self.paths.table(REQUESTS_TABLE), table, mode="append", schema=SERVING_REQUESTS)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
