"""The newest day's embedding index for the EmbeddingSource, picked up when a newer day appears.

`candidates/embeddings` (Dagster) writes `dt=<day>/` folders; the service checks for a newer one at
most every `check_s` seconds and loads it off to the side, so requests always see a whole model.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from candidate_gen.explore.embeddings import EmbeddingModel, load

logger = logging.getLogger(__name__)


class LatestEmbeddings:
    def __init__(self, root: Path, check_s: float = 60.0):
        self.root, self.check_s = Path(root), check_s
        self._model: EmbeddingModel | None = None
        self._day: str | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> EmbeddingModel | None:
        now = time.monotonic()
        if now - self._checked >= self.check_s and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                self._refresh()
            finally:
                self._lock.release()
        return self._model

    def _refresh(self) -> None:
        days = sorted(p for p in self.root.glob("dt=*") if (p / "meta.json").exists()) if self.root.exists() else []
        if not days or days[-1].name == self._day:
            return
        try:
            model = load(days[-1])
        except Exception:  # a bad index never replaces a working one
            logger.exception("loading the embedding index %s failed", days[-1])
            return
        self._model, self._day = model, days[-1].name
        logger.info("embedding index %s loaded", self._day)
