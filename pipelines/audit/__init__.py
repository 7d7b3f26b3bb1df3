"""Responsible-AI audit of the feed (``feed audit``, the weekly ``feed_audit`` DAG).

- :mod:`pipelines.audit.static`: no feature service, prompt template or model input names a sensitive
  attribute (the ``audit_attributes`` names plus a fixed list) — a violation fails the audit and the build;
- :mod:`pipelines.audit.feeds`: the feeds audited — served now by the real service for a seeded member
  sample, or the served impressions already logged to ``raw_impressions``;
- :mod:`pipelines.audit.exposure`: exposure share by creator group vs post share, Gini of creator exposure,
  popularity bias (top-1% authors);
- :mod:`pipelines.audit.quality`: Recall@k and AUC per member group on the training sets' test splits;
- :mod:`pipelines.audit.report` / :mod:`pipelines.audit.plots`: ``reports/audit/audit.{json,md}`` + plots.

The sensitive attributes are read here, for the audit, and nowhere on a model's path (DESIGN.md). Light to
import: numpy/pandas/Feast/torch are imported inside the functions that need them.
"""
