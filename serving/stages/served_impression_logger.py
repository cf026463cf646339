"""ServedImpressionLogger: what was served, with the model version, its score, the feature vector it
scored, (exploration share) the logging propensity and the experiment's arm, into the landing folder
in the impressions contract (log and learn; serving.impression_log writes off the request path)."""

from __future__ import annotations

from serving.impression_log import ImpressionLogWriter
from serving.pipeline import FeedQuery, FeedState


class ServedImpressionLogger:
    name = "impression_log"

    def __init__(self, writer: ImpressionLogWriter):
        self.writer = writer

    def apply(self, query: FeedQuery, state: FeedState) -> None:
        idx = state.selected
        if not len(idx):
            return
        self.writer.log(
            request_id=query.request_id,
            viewer_id=query.viewer_id,
            surface=query.surface,
            ts_ms=query.now_ms,
            post_ids=state.candidates.post[idx].tolist(),
            positions=list(range(query.offset, query.offset + len(idx))),
            sources=state.candidates.source_names(idx),
            scores=None if state.model_scores is None else state.model_scores[idx],
            model_version=state.model_version,  # a champion's name:version, or heuristic / chronological
            features=None if state.model_features is None else state.model_features[idx],
            propensities=state.propensities,  # per served slot; None unless the page was randomised
            experiment=query.experiment,  # the A/B and the viewer's arm: later training tells the arms apart
            arm=query.arm,
        )
