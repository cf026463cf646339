"""Post search: a SQLite FTS5 index of the posts' hashtags and captions (post_text_index), the safe
reading of a user's query (search_terms), its builds from the lake (lake_refresh) and its updates
from the event stream (search_stream_consumer). The ranking service queries it, filters what it
finds with the shared privacy filters and ranks it (serving/search/; docs/serving.md, "Search")."""
