"""Errors of the training package, importable without Feast or Spark (the logged model needs them)."""


class TrainingDataError(ValueError):
    """A training set that cannot train or judge a ranker, said before any training starts."""


class NotEnoughData(TrainingDataError):
    """The data is too small for this surface or ranker (too few requests or positives, a head or a
    whole surface without data): the pipeline skips it and says why, the rest trains. Other
    `TrainingDataError`s (examples not built, a feature column missing) are pipeline faults."""
