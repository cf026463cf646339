"""Errors of the training package, importable without Feast or Spark (the logged model needs them)."""


class TrainingDataError(ValueError):
    """A training set that cannot train or judge a ranker, said before any training starts."""
