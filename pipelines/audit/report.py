"""``reports/audit/audit.json`` (report contract: ``summary`` beside ``config``, ``device``, ``git_commit``,
``created_at``, ``notes``), ``audit.md`` and the plots, from the parts the audit computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

JSON_NAME = "audit"  # reports/audit/audit.json
SHARES_PLOT = "exposure_vs_post_share.png"
LORENZ_PLOT = "lorenz_creator_exposure.png"

DEFINITIONS = """\
- **Exposure** of a feed item at 0-based position p is `1 / log2(p + 2)` (rank r = p + 1: `1 / log2(1 + r)`):
  1 for the top item, 0.29 for the 10th, 0.18 for the 50th. *Raw* exposure counts every item as 1.
- **Creator group**: the author's value of the audited attribute in `audit_attributes` (authors are members;
  `unknown` when none). It is read by the audit only — never by a feature view, prompt or model.
- **Exposure share** of group g: exposure of items by g's authors / all exposure. **Post share**: g's share of
  all posts; **eligible post share**: of the posts the served index can return. **Ratio** = exposure share /
  post share (1 = exposure in proportion to output, < 1 = under-exposed).
- **Gini** of position-discounted exposure over every creator with ≥ 1 post (never-shown creators count as 0):
  0 = equal exposure, (n − 1)/n = one creator gets everything.
- **Engagement share**: g's share of the lake's engaged impressions (what a feed mirroring past engagement
  would give g).
- **Popularity bias**: the top 1% of creators by engaged impressions of their posts (≥ 1 creator; ties by
  author id): their share of feed exposure vs their share of engagements.
- **Quality per member group**: retrieval Recall@k and ranker AUC per task of the promoted models, on the test
  split of the training sets they were trained from, split by the member's group (see notes for the source).
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_of(
    exposure: Mapping[str, Any] | None, quality: Mapping[str, Any] | None, static: Mapping[str, Any]
) -> dict[str, Any]:
    """The contract summary: the issue's headline figures (null when not measured; notes say why)."""
    exposure = exposure or {}
    popularity = exposure.get("popularity") or {}
    return {
        "exposure_share_by_group": exposure.get("exposure_share_by_group"),
        "post_share_by_group": exposure.get("post_share_by_group"),
        "exposure_ratio_by_group": exposure.get("exposure_ratio_by_group"),
        "gini_exposure": exposure.get("gini_exposure"),
        "top1pct_author_exposure_share": popularity.get("exposure_share"),
        "top1pct_author_engagement_share": popularity.get("engagement_share"),
        "quality_by_member_group": (quality or {}).get("by_group"),
        "quality_source": (quality or {}).get("source"),
        "quality_gap_by_metric": (quality or {}).get("gaps"),
        "exposure_share_by_group_raw": exposure.get("exposure_share_by_group_raw"),
        "eligible_post_share_by_group": exposure.get("eligible_post_share_by_group"),
        "exposure_ratio_by_group_eligible": exposure.get("exposure_ratio_by_group_eligible"),
        "gini_exposure_raw": exposure.get("gini_exposure_raw"),
        "engagement_share_by_group": exposure.get("engagement_share_by_group"),
        "exposure_by_path": exposure.get("by_path") or None,
        "feeds": exposure.get("feeds"),
        "items": exposure.get("items"),
        "static_check_passed": static.get("passed"),
        "static_check_violations": len(static.get("violations") or []),
    }


def _group_table(summary: Mapping[str, Any]) -> list[str]:
    columns = [
        ("post_share_by_group", "post share"),
        ("eligible_post_share_by_group", "eligible post share"),
        ("engagement_share_by_group", "engagement share"),
        ("exposure_share_by_group", "exposure share"),
        ("exposure_share_by_group_raw", "raw exposure share"),
        ("exposure_ratio_by_group", "ratio (exposure / posts)"),
        ("exposure_ratio_by_group_eligible", "ratio (exposure / eligible)"),
    ]
    columns = [(k, t) for k, t in columns if summary.get(k) is not None]
    groups = sorted({g for k, _ in columns for g in summary[k]})
    lines = [
        "| creator group | " + " | ".join(t for _, t in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(_fmt(summary[k].get(g)) for k, _ in columns) + " |")
    return lines


def _quality_table(by_group: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    if not by_group:
        return ["Not measured (see notes)."]
    keys: list[str] = []
    for metrics in by_group.values():
        keys += [k for k in metrics if k not in keys]
    lines = ["| member group | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for group, metrics in by_group.items():
        lines.append(f"| {group} | " + " | ".join(_fmt(metrics.get(k)) for k in keys) + " |")
    return lines


def _static_lines(static: Mapping[str, Any]) -> list[str]:
    scanned = static.get("scanned") or {}
    verdict = "PASSED" if static.get("passed") else "FAILED"
    per_kind = ", ".join(f"{k}: {v}" for k, v in scanned.items())
    lines = [
        "## Static sensitive-attribute check",
        "",
        f"**{verdict}**: attributes {', '.join(static.get('attributes', []))}; "
        f"{sum(scanned.values())} names scanned in {static.get('places')} places ({per_kind}).",
    ]
    return lines + [f"- {v['message']}" for v in static.get("violations", [])]


def _exposure_lines(s: Mapping[str, Any], details: Mapping[str, Any]) -> list[str]:
    exposure = details.get("exposure") or {}
    feeds = details.get("feeds") or {}
    pop = exposure.get("popularity") or {}
    return [
        "## Creator exposure",
        "",
        f"Feeds: {feeds.get('requests')} requests ({feeds.get('source')}), {s.get('items')} items; "
        f"fallbacks {feeds.get('fallbacks') or {}}; cold-start requests {feeds.get('cold_start')}.",
        "",
        *_group_table(s),
        "",
        f"- Gini of creator exposure: **{_fmt(s.get('gini_exposure'))}** (raw counts "
        f"{_fmt(s.get('gini_exposure_raw'))}) over {exposure.get('n_creators')} creators, "
        f"{exposure.get('n_creators_exposed')} of them shown at least once.",
        f"- Popularity bias: the top {pop.get('n_top')} creator(s) (1% of {pop.get('n_creators')}) by "
        f"engagements hold **{_fmt(s.get('top1pct_author_engagement_share'))}** of engagements and "
        f"**{_fmt(s.get('top1pct_author_exposure_share'))}** of feed exposure.",
        *_path_lines(s.get("exposure_by_path")),
    ]


def _path_lines(by_path: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Per serving path (personalized retrieval vs the popular fallback): feeds, shares, Gini."""
    if not by_path:
        return []
    groups = sorted({g for v in by_path.values() for g in v["exposure_share_by_group"]})
    head = [
        "path",
        "feeds",
        *(f"exposure share {g}" for g in groups),
        *(f"ratio {g}" for g in groups),
        "Gini",
    ]
    lines = ["", "By serving path:", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for path, v in by_path.items():
        cells = [path, str(v["feeds"])]
        cells += [_fmt(v["exposure_share_by_group"].get(g)) for g in groups]
        cells += [_fmt(v["exposure_ratio_by_group"].get(g)) for g in groups]
        lines.append("| " + " | ".join([*cells, _fmt(v["gini_exposure"])]) + " |")
    return lines


def markdown(doc: Mapping[str, Any], plots: Sequence[str]) -> str:
    s = doc["summary"]
    details = doc.get("details", {})
    lines = [
        "# Responsible-AI audit",
        "",
        f"Created {doc['created_at']} · commit `{doc['git_commit']}` · {doc['device']}",
        "",
        *_static_lines(details.get("static", {})),
    ]
    if s.get("exposure_share_by_group") is not None:
        lines += ["", *_exposure_lines(s, details)]
    lines += ["", f"## Quality per member group (source: {s.get('quality_source') or 'not measured'})", ""]
    lines += _quality_table(s.get("quality_by_member_group"))
    if s.get("quality_gap_by_metric"):
        gap = ", ".join(f"{k} {v:.3f}" for k, v in s["quality_gap_by_metric"].items())
        lines += ["", f"Gap between the best and the worst member group: {gap}."]
    lines += ["", "## Plots", ""] if plots else []
    lines += [f"![{name}]({name})" for name in plots]
    lines += ["", "## Definitions", "", DEFINITIONS, "## Notes", ""]
    lines += [f"- {n}" for n in doc.get("notes", [])]
    return "\n".join(lines) + "\n"


def write_audit_report(
    out_dir: Path,
    *,
    static: Mapping[str, Any],
    exposure: Mapping[str, Any] | None,
    quality: Mapping[str, Any] | None,
    feeds: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    notes: Sequence[str],
    creator_exposure: Any = None,
) -> dict[str, Path]:
    """Write ``audit.json``, ``audit.md`` and (when feeds were audited) the two plots into ``out_dir``."""
    import json

    import numpy as np

    from feed.reports import write_report
    from pipelines.audit import plots
    from pipelines.audit.exposure import lorenz

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    plot_names: list[str] = []
    if exposure is not None:
        attribute = str(config.get("attribute", "group"))
        written["shares_plot"] = plots.share_bars(
            exposure["exposure_share_by_group"],
            exposure["post_share_by_group"],
            out_dir / SHARES_PLOT,
            eligible=exposure.get("eligible_post_share_by_group"),
            attribute=attribute,
        )
        values = np.asarray(creator_exposure if creator_exposure is not None else [], dtype=np.float64)
        people, cum = (
            lorenz(values)
            if values.size
            else (np.asarray(exposure["lorenz"]["creators"]), np.asarray(exposure["lorenz"]["exposure"]))
        )
        written["lorenz_plot"] = plots.lorenz_curve(
            people, cum, exposure.get("gini_exposure"), out_dir / LORENZ_PLOT
        )
        plot_names = [SHARES_PLOT, LORENZ_PLOT]
    details = {
        "static": dict(static),
        "feeds": dict(feeds or {}),
        "exposure": dict(exposure or {}),
        "quality": dict(quality or {}),
    }
    path = write_report(
        JSON_NAME,
        summary_of(exposure, quality, static),
        config,
        notes=list(notes),
        details=details,
        subdir="",
        reports_dir=out_dir,
    )
    written["json"] = path
    doc = json.loads(path.read_text())
    md = out_dir / f"{JSON_NAME}.md"
    md.write_text(markdown(doc, plot_names))
    written["markdown"] = md
    return written
