"""Task bodies of the Airflow DAGs in ``dags/``: plain functions of a data interval that take and return
paths, versions and small JSON-able summaries (what XCom may carry), never data. The DAG files stay thin and
import these inside their tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

ConfT = TypeVar("ConfT")

# Assets (Airflow data-aware scheduling): URIs shared by the producing and the consuming DAG.
FEATURES_PUBLISHED = "feed://features/published"  # feed_features → triggers feed_retrieval_training
RETRIEVAL_PROMOTED = "feed://models/retrieval"  # a new encoder is serving
RANKING_PROMOTED = "feed://models/ranking"  # a new GR is serving


def config_from_conf(cls: type[ConfT], conf: Mapping[str, Any] | None, dag_id: str) -> ConfT:
    """A DAG run's conf as the frozen config dataclass ``cls``; unknown keys are an error (a typo must not
    silently train the default)."""
    conf = dict(conf or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(conf) - known)
    if unknown:
        raise ValueError(f"unknown {dag_id} conf keys {unknown}; known: {sorted(known)}")
    return cls(**conf)
