"""Training data sets built from the lake and the feature store (retrieval anchors, posts as of a time)."""
