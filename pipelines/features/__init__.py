"""Spark feature pipeline: raw Delta tables → daily snapshots → the feature tables of ``schemas.py``.

Entry point: :func:`pipelines.features.build.build_features`. The percentile rule (``percentile.py``) and the
text rules (``text.py``) are plain Python as well, so the nearline path computes exactly what Spark computes.
"""
