"""CURRENT / PREVIOUS pointers: promotion keeps the previous version, rollback swaps them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.versions import (
    NoPreviousVersionError,
    current_version,
    previous_version,
    rollback,
    write_current,
)


def _versions(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_rollback_restores_the_previous_pointer_and_can_be_undone(tmp_path: Path) -> None:
    root = _versions(tmp_path / "retrieval", "r20260901", "r20260908")
    write_current(root, "r20260901")
    write_current(root, "r20260908")
    assert (current_version(root), previous_version(root)) == ("r20260908", "r20260901")

    assert rollback(root) == ("r20260901", "r20260908")
    assert (current_version(root), previous_version(root)) == ("r20260901", "r20260908")
    assert not list(root.glob("*.tmp"))  # written through a temp file + rename

    assert rollback(root) == ("r20260908", "r20260901")  # a second rollback undoes the first
    assert current_version(root) == "r20260908"


def test_rollback_without_previous_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    root = _versions(tmp_path / "ranking", "v1")
    write_current(root, "v1")
    with pytest.raises(NoPreviousVersionError, match="nothing to roll back to"):
        rollback(root)
    assert current_version(root) == "v1"
    with pytest.raises(NoPreviousVersionError):
        rollback(tmp_path / "never_promoted")


def test_rollback_to_a_deleted_version_changes_nothing(tmp_path: Path) -> None:
    root = _versions(tmp_path / "retrieval", "b")
    write_current(root, "a")
    write_current(root, "b")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rollback(root)
    assert (current_version(root), previous_version(root)) == ("b", "a")
