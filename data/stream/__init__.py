"""The event stream: what happens while the platform runs (served impressions, client engagements,
posts, graph changes), durable and partitioned, on Valkey Streams (docs/event_stream.md).

    entries.py        Event (a landing-contract line and the entity it is about) and Entry (an
                      event as the stream delivered it, with its id: its arrival time)
    valkey_stream.py  the transport: partitioned stream keys, durable appends, consumer groups,
                      acknowledgements, reclaiming a dead consumer's entries, trimming
    routing.py        where its commands go: the one server, or each key's node on a Redis Cluster
    archiver.py       lands the stream in the landing folder, once per entry, so the batch lake
                      stays the source of truth; trims only what it has archived
"""
