"""Fixtures for the docs tests: the feature-table fabricator shared with tests/feature_repo."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def fabricate() -> ModuleType:
    """tests/ is not a package (--import-mode=importlib): load tests/feature_repo/fabricate.py by path."""
    name = "feed_tests_fabricate"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "feature_repo" / "fabricate.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]
