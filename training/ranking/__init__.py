"""The generative recommender (GR) ranker: features, model, metrics and training."""
