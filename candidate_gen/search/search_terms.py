"""SearchTerms: a user's query as a safe FTS5 match expression.

The user's text is never handed to FTS5 as query syntax: only its words are kept (runs of letters
and digits; `#`, quotes, `*`, `:`, `^`, parentheses and every other sign are separators), each
word is quoted (so `NEAR`, `AND`, `OR`, `NOT` are plain words), optionally made a prefix (`"food"*`
finds food, foodlover, foodgram; not instafood: `[search] prefix`, off by default, as reading every
word's expansions costs several times more), and the words are ANDed. `#foo` and `foo` are the
same query. A query with no word at all is `EmptyQuery` (the service's 422).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+")  # letters and digits (any script); the index's tokenizer splits on the rest


class EmptyQuery(ValueError):
    """The query holds no word to search for."""


@dataclass(frozen=True)
class SearchTerms:
    words: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, max_words: int = 8) -> SearchTerms:
        """The first `max_words` distinct words of `text` (case folded); EmptyQuery if none."""
        words = tuple(dict.fromkeys(w.casefold() for w in _WORD.findall(text)))[:max_words]
        if not words:
            raise EmptyQuery("the query holds no word to search for (letters or digits)")
        return cls(words)

    def expression(self, prefix: bool = False) -> str:
        """The FTS5 MATCH expression: every word quoted (a prefix with `prefix`), all of them
        required."""
        star = "*" if prefix else ""
        return " ".join(f'"{w}"{star}' for w in self.words)  # a word holds no `"`: _WORD keeps none
