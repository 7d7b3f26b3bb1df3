"""feed: a feature-store-centric LLM feed recommender (the console script's package)."""

__version__ = "0.1.0"
