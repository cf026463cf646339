"""POST /v1/search: posts matching a query in their hashtags and captions (candidate_gen/search's
index), through the feed's privacy filters, ranked for the viewer (docs/serving.md, "Search")."""
