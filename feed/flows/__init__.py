"""Task bodies of the Airflow DAGs in ``dags/``: plain functions of a data interval that take and return
paths, versions and small JSON-able summaries (what XCom may carry), never data. The DAG files stay thin and
import these inside their tasks."""

from __future__ import annotations

# Assets (Airflow data-aware scheduling): URIs shared by the producing and the consuming DAG.
FEATURES_PUBLISHED = "feed://features/published"  # feed_features → triggers feed_retrieval_training
RETRIEVAL_PROMOTED = "feed://models/retrieval"  # a new encoder is serving
RANKING_PROMOTED = "feed://models/ranking"  # a new GR is serving
