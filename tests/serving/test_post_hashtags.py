"""The fatigue rescorer's posts' hashtags: read from the search index once, then kept in-process
until the TTL passes (then an edit is seen); a post the index lacks is kept as having none."""

from __future__ import annotations

import pytest

from candidate_gen.search.post_text_index import IndexMissing, PostText, PostTextIndex, SearchIndexReader
from serving.post_hashtags import PostHashtags
from tests.candidates.helpers import T0, FakeClock


def test_hashtags_are_read_once_and_kept_until_the_ttl_passes(tmp_path):
    path = tmp_path / "posts.sqlite"
    with PostTextIndex(path) as index:
        index.upsert([PostText(1, 10, T0, ["Cats"], None), PostText(2, 10, T0, [], "none")])
    clock = FakeClock()
    hashtags = PostHashtags(SearchIndexReader(path), ttl_s=60.0, timer=clock)
    assert hashtags.of([1, 2, 3, 1]) == {1: ("cats",), 2: (), 3: ()}

    with PostTextIndex(path) as index:  # edited, and a post indexed that was asked for before
        index.upsert([PostText(1, 10, T0, ["dogs"], None), PostText(3, 11, T0, ["art"], None)])
    clock.advance(59_000)
    assert hashtags.of([1, 3]) == {1: ("cats",), 3: ()}  # kept: no read
    clock.advance(2_000)
    assert hashtags.of([1, 3]) == {1: ("dogs",), 3: ("art",)}


def test_a_missing_index_raises_for_each_post_not_kept(tmp_path):
    hashtags = PostHashtags(SearchIndexReader(tmp_path / "absent.sqlite"))
    assert hashtags.of([]) == {}
    with pytest.raises(IndexMissing):
        hashtags.of([1])
