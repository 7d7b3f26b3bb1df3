"""Task bodies of ``dags/feed_audit.py`` and of ``feed audit``: the Responsible-AI audit.

static check → exposure audit → quality by member group → publish report

Each step reads the home (``FeedPaths``) and writes its result as JSON into the run's work folder
``<data>/audit/<run>/`` (``static.json``, ``feeds.parquet``, ``exposure.json``, ``quality.json``), returning
paths and a few headline numbers (what XCom may carry). ``publish_report`` merges them into
``reports/audit/audit.{json,md}`` and the plots. Re-running a run replaces its work folder's files and the
report: idempotent.

The static check fails the DAG run at once (:class:`pipelines.audit.static.SensitiveAttributeError`: a
sensitive attribute reached a feature service, prompt or model input — retrying cannot fix that). ``feed
audit`` runs every step anyway, writes the report with ``static_check_passed: false`` and exits non-zero.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipelines.audit.static import SensitiveAttributeError

if TYPE_CHECKING:
    from feed.config import FeedPaths
    from pipelines.audit.exposure import ExposureConfig
    from pipelines.audit.feeds import AuditFeeds, FeedSampleConfig
    from pipelines.audit.quality import QualityConfig

log = logging.getLogger(__name__)

__all__ = ["SensitiveAttributeError"]  # the DAG fails static_check on it

AUDIT_DIR = "audit"  # <data>/audit/<run>/: the steps' intermediate results
STATIC_FILE = "static.json"
FEEDS_FILE = "feeds.parquet"
EXPOSURE_FILE = "exposure.json"
QUALITY_FILE = "quality.json"
REPORT_SUBDIR = "audit"  # reports/audit/


@dataclass(frozen=True)
class AuditRunConfig:
    """``feed audit`` options and the DAG's run conf (``--conf '{"members": 100}'``; unknown keys fail)."""

    members: int = 200  # members whose feeds are served (seeded sample)
    seed: int = 0  # member sample and retrieval test-anchor sample
    k: int = 50  # feed length
    source: Literal["served", "logged"] = "served"
    attribute: str = "group"  # the audit_attributes attribute that defines creator and member groups
    max_anchors: int | None = 500  # retrieval test anchors (per-group Recall@k)
    max_eval_days: int | None = None  # retrieval: only the last n test days (each day's pool is encoded)
    device: str = "auto"  # where the promoted models are evaluated
    top_fraction: float = 0.01  # popularity bias: the top 1% of creators by engagements
    reports_dir: str | None = None  # default: the repository's reports/audit
    quality: bool = True  # per-member-group Recall/AUC (the slow part: encodes the test pools)

    def __post_init__(self) -> None:
        if self.source not in ("served", "logged"):
            raise ValueError(f"source must be 'served' or 'logged', got {self.source!r}")

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any] | None) -> AuditRunConfig:
        from feed.flows import config_from_conf

        return config_from_conf(cls, conf, "feed_audit")

    def feed_sample(self) -> FeedSampleConfig:
        from pipelines.audit.feeds import FeedSampleConfig

        return FeedSampleConfig(members=self.members, seed=self.seed, k=self.k)

    def exposure(self) -> ExposureConfig:
        from pipelines.audit.exposure import ExposureConfig

        return ExposureConfig(top_fraction=self.top_fraction)

    def quality_config(self) -> QualityConfig:
        from pipelines.audit.quality import QualityConfig

        return QualityConfig(
            max_anchors=self.max_anchors, max_eval_days=self.max_eval_days, seed=self.seed, device=self.device
        )

    def out_dir(self) -> Path:
        from feed.config import REPORTS_DIR

        return Path(self.reports_dir) if self.reports_dir else REPORTS_DIR / REPORT_SUBDIR


def work_dir(paths: FeedPaths, run: str) -> Path:
    """``<data>/audit/<run>/`` (created)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run)
    out = paths.data / AUDIT_DIR / safe
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_json(path: Path, doc: Mapping[str, Any]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


# --- static check


def static_check(paths: FeedPaths | None, work: Path | None = None) -> dict[str, Any]:
    """Run the sensitive-attribute check over the repository and (when given) the home; writes
    ``static.json`` into ``work``. Returns the result's dict; never raises on a violation."""
    from pipelines.audit.static import run_static_check

    result = run_static_check(paths)
    log.info(result.message())
    doc = result.as_dict()
    if work is not None:
        _write_json(work / STATIC_FILE, doc)
    return doc


def raise_if_failed(static: Mapping[str, Any]) -> None:
    """Raise :class:`SensitiveAttributeError` naming every violation of a failed check."""
    if not static["passed"]:
        lines = [f"  - {v['message']}" for v in static["violations"]]
        raise SensitiveAttributeError("static sensitive-attribute check FAILED:\n" + "\n".join(lines))


# --- exposure


@contextmanager
def index_server(paths: FeedPaths) -> Iterator[bool]:
    """The home's Milvus Lite server for the duration: started when none runs (yields True) and stopped
    again afterwards; a server already running is left alone."""
    from serving.index import lite

    started = lite.running_server(paths) is None
    if started:
        lite.ensure_server(paths)
    try:
        yield started
    finally:
        if started:
            lite.stop_server(paths)


def _device(cfg: AuditRunConfig) -> str:
    """The service's device for the audit (``auto``: CUDA when present)."""
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def collect_feeds(
    paths: FeedPaths,
    cfg: AuditRunConfig,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> AuditFeeds:
    """The audited feeds: served now for the seeded member sample, or the logged served impressions."""
    from pipelines.audit import feeds, lake

    if cfg.source == "logged":
        return feeds.logged_feeds(paths, since=since, until=until)
    members = feeds.sample_members(lake.member_ids(paths), cfg.members, cfg.seed)
    with index_server(paths) as started:
        out = feeds.serve_feeds(
            paths, members, cfg.feed_sample(), settings_overrides={"device": _device(cfg)}
        )
    if started:
        out.notes.append("started this home's Milvus Lite server for the audit and stopped it afterwards")
    return out


def exposure_audit(
    paths: FeedPaths,
    cfg: AuditRunConfig,
    work: Path,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> dict[str, Any]:
    """Collect the feeds, compute the exposure metrics; writes ``feeds.parquet`` and ``exposure.json``."""
    from pipelines.audit import exposure, lake

    audited = collect_feeds(paths, cfg, since=since, until=until)
    audited.items.to_parquet(work / FEEDS_FILE, index=False)
    post_authors = lake.posts(paths)
    groups = lake.member_groups(paths, cfg.attribute)
    eligible, eligible_note = lake.eligible_post_ids(paths)
    metrics = exposure.exposure_audit(
        audited.items,
        post_authors,
        groups,
        eligible_post_ids=eligible,
        engagements=lake.author_engagements(paths, post_authors),
        cfg=cfg.exposure(),
    )
    metrics["by_path"] = exposure.exposure_by_path(audited.items, post_authors, groups)
    creator = exposure.creator_exposure(audited.items, post_authors)
    notes = [*audited.notes, f"eligible posts: {eligible_note}"]
    if audited.source == "served":
        notes.append(
            f"feeds served in-process by serving.pipeline.FeedService for {audited.requests} members sampled "
            f"with seed {cfg.seed} from raw_members, k={cfg.k}; positions are the response order (0-based)"
        )
    by_path = {p: v["feeds"] for p, v in metrics["by_path"].items()}
    if by_path.get("popular"):
        notes.append(
            f"{by_path['popular']} of {metrics['feeds']} feeds came from the recent-popular fallback (no "
            "member vector, unknown member or retrieval down) — exposure_by_path splits the figures by path"
        )
    doc = {
        "metrics": metrics,
        "feeds": audited.summary(),
        "creator_exposure": [float(x) for x in creator],
        "notes": notes,
    }
    path = _write_json(work / EXPOSURE_FILE, doc)
    return {
        "path": str(path),
        "feeds": metrics["feeds"],
        "items": metrics["items"],
        "gini_exposure": metrics["gini_exposure"],
        "exposure_ratio_by_group": metrics["exposure_ratio_by_group"],
    }


# --- quality


def quality_audit(paths: FeedPaths, cfg: AuditRunConfig, work: Path) -> dict[str, Any]:
    """Recall@k / AUC per member group (``pipelines.audit.quality``); writes ``quality.json``."""
    import pandas as pd

    from pipelines.audit import lake, quality

    feeds_file = work / FEEDS_FILE
    feeds = pd.read_parquet(feeds_file) if feeds_file.exists() else None
    result = quality.quality_by_group(
        paths, lake.member_groups(paths, cfg.attribute), cfg.quality_config(), feeds=feeds
    )
    path = _write_json(work / QUALITY_FILE, result)
    return {"path": str(path), "source": result["source"], "by_group": result["by_group"]}


# --- publish


def _read(work: Path, name: str) -> dict[str, Any] | None:
    path = work / name
    return json.loads(path.read_text()) if path.exists() else None


def publish_report(
    paths: FeedPaths, cfg: AuditRunConfig, work: Path, *, extra_notes: list[str] | None = None
) -> dict[str, Any]:
    """Merge the steps' results into ``reports/audit/audit.{json,md}`` + plots (the steps that did not run
    are null, with a note). Returns the written paths and the headline summary."""
    from pipelines.audit.report import summary_of, write_audit_report

    static = _read(work, STATIC_FILE) or {"passed": None, "violations": [], "notes": ["static check not run"]}
    exposure = _read(work, EXPOSURE_FILE)
    quality = _read(work, QUALITY_FILE)
    notes = list(extra_notes or [])
    if static.get("passed") is False:
        notes.append("STATIC CHECK FAILED: " + "; ".join(v["message"] for v in static["violations"]))
    notes += static.get("notes", [])
    notes += exposure["notes"] if exposure else ["exposure audit not run: exposure figures are null"]
    notes += quality["notes"] if quality else ["quality audit not run: quality_by_member_group is null"]
    config = {**dataclasses.asdict(cfg), "home": str(paths.home)}
    written = write_audit_report(
        cfg.out_dir(),
        static=static,
        exposure=(exposure or {}).get("metrics"),
        quality=quality,
        feeds=(exposure or {}).get("feeds"),
        config=config,
        notes=notes,
        creator_exposure=(exposure or {}).get("creator_exposure"),
    )
    summary = summary_of((exposure or {}).get("metrics"), quality, static)
    return {
        "report": {k: str(v) for k, v in written.items()},
        "static_check_passed": summary["static_check_passed"],
        "gini_exposure": summary["gini_exposure"],
        "exposure_ratio_by_group": summary["exposure_ratio_by_group"],
    }


# --- everything (feed audit)


@dataclass(frozen=True)
class AuditOutcome:
    static: dict[str, Any]
    published: dict[str, Any] | None  # None for --static-only
    work: Path | None

    @property
    def passed(self) -> bool:
        return bool(self.static["passed"])


def run_audit(
    paths: FeedPaths,
    cfg: AuditRunConfig,
    *,
    static_only: bool = False,
    run: str | None = None,
    work: Path | None = None,
) -> AuditOutcome:
    """``feed audit``: every step in order into a fresh work folder (``work``, default
    ``<data>/audit/<run>``), then the report. The static check's verdict is in the outcome (the CLI exits
    non-zero when it failed); the other steps still run."""
    if static_only:
        return AuditOutcome(static_check(paths), None, None)
    if work is None:
        work = work_dir(paths, run or dt.datetime.now(dt.UTC).strftime("cli-%Y%m%dT%H%M%S"))
    work.mkdir(parents=True, exist_ok=True)
    static = static_check(paths, work)
    exposure_audit(paths, cfg, work)
    if cfg.quality:
        quality_audit(paths, cfg, work)
    extra = [] if cfg.quality else ["quality audit skipped (--no-quality): quality_by_member_group is null"]
    return AuditOutcome(static, publish_report(paths, cfg, work, extra_notes=extra), work)
