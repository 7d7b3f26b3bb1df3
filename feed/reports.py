"""Report JSON contract (DESIGN.md): ``summary`` beside ``config``, ``device``, ``git_commit``,
``created_at``."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from feed.config import PROJECT_ROOT, REPORTS_DIR


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The commit the measured code came from, with ``-dirty`` when the tree has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def device_name() -> str:
    """CPU model (or GPU name when torch sees CUDA) for the report's ``device`` field."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"CPU: {cpu} ({os.cpu_count()} cores)"


def write_report(
    name: str,
    summary: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    notes: list[str] | None = None,
    details: Mapping[str, Any] | None = None,
    subdir: str = "bench",
    reports_dir: Path = REPORTS_DIR,
) -> Path:
    """Write ``reports/<subdir>/<name>.json`` and return its path."""
    out = reports_dir / subdir / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "summary": dict(summary),
        "config": dict(config),
        "device": device_name(),
        "git_commit": git_commit(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "notes": list(notes or []),
    }
    if details:
        doc["details"] = dict(details)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return out
