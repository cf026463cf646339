"""The stream processor: seconds-fresh features from the event stream's engagements, kept in the
online store (Feast's layout and the packed view) for the real-time views of the Feast repo
(docs/streaming_features.md).

    spec.py     the views, their features and windows (the Feast repo declares them from these), the state keys
    rows.py     an engagement line -> the fields counted, or the reason it cannot be
    state.py    the counters on the online store's server, the apply and write scripts, the sums
    writer.py   the online rows, encoded by the batch writer's encoders, written over older versions
    worker.py   the consumer-group worker: leases, reclaim, apply, write, dead-letter, ack
"""
