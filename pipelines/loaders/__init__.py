"""Real-data loaders: MovieLens (.dat, .csv, RecBole atomic files) and MIND, into the landing layout that
:mod:`pipelines.ingest` validates and commits. Mappings and id rules: docs/data.md."""
