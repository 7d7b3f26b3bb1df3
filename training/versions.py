"""Model versions under ``artifacts/<model>/<version>/``: which one is served (``CURRENT``) and the one before
it (``PREVIOUS``, for rollback). Shared by the retrieval encoder and the ranker."""

from __future__ import annotations

from pathlib import Path

CURRENT_FILE = "CURRENT"
PREVIOUS_FILE = "PREVIOUS"


def write_current(model_dir: Path, version: str) -> Path:
    """Point ``model_dir/CURRENT`` at ``version`` atomically; the replaced value goes to ``PREVIOUS``."""
    current = model_dir / CURRENT_FILE
    if current.is_file():
        previous = current.read_text().strip()
        if previous and previous != version:
            (model_dir / PREVIOUS_FILE).write_text(previous + "\n")
    tmp = current.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    tmp.replace(current)
    return current


def current_version(model_dir: Path) -> str | None:
    """The served version, or None when nothing was promoted yet."""
    current = model_dir / CURRENT_FILE
    if not current.is_file():
        return None
    return current.read_text().strip() or None
