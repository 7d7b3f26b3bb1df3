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


class NoPreviousVersionError(RuntimeError):
    """A rollback was asked for, but ``PREVIOUS`` names no version to go back to."""


def previous_version(model_dir: Path) -> str | None:
    """The version served before CURRENT (the rollback target), or None."""
    previous = model_dir / PREVIOUS_FILE
    if not previous.is_file():
        return None
    return previous.read_text().strip() or None


def rollback(model_dir: Path) -> tuple[str, str | None]:
    """Swap ``CURRENT`` and ``PREVIOUS``: the previous version serves again and the rolled-back one becomes
    ``PREVIOUS`` (so a second rollback undoes the first). Each file is replaced atomically (write + rename),
    CURRENT first: a crash in between leaves both naming the restored version, never a missing CURRENT.
    Returns ``(restored, rolled_back)``. Raises :class:`NoPreviousVersionError` when there is no PREVIOUS,
    and FileNotFoundError when the previous version's folder is gone (nothing is changed then)."""
    restored = previous_version(model_dir)
    if restored is None:
        raise NoPreviousVersionError(
            f"nothing to roll back to: {model_dir / PREVIOUS_FILE} is missing or empty "
            f"(CURRENT is {current_version(model_dir)!r}; a version is kept as PREVIOUS only once another "
            "one has been promoted after it)"
        )
    if not (model_dir / restored).is_dir():
        raise FileNotFoundError(
            f"cannot roll back to {restored!r}: {model_dir / restored} does not exist; CURRENT unchanged"
        )
    rolled_back = current_version(model_dir)
    _write_atomic(model_dir / CURRENT_FILE, restored)
    if rolled_back and rolled_back != restored:
        _write_atomic(model_dir / PREVIOUS_FILE, rolled_back)
    return restored, rolled_back


def _write_atomic(path: Path, value: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n")
    tmp.replace(path)
