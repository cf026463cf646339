"""ModelRef: which model a surface serves, written as the service names models elsewhere.

    @challenger            the surface's registered model ([model] home / explore) at an alias
    feed_ranker_v2@champion  another registered model at an alias
    :7                     version 7 of the surface's registered model
    feed_ranker:7          a version of a named model (a response's `model_version`, as it says it)
    heuristic              no model: the affinity/recency heuristic (serving.heuristic)

Aliases follow MLflow's `models:/<name>@<alias>`; versions the `<name>:<version>` label every
response and served impression carries, so a version seen in a response can be pinned as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

HEURISTIC = "heuristic"
# a registered model's name and an alias: MLflow allows more, the config keeps to what reads unambiguously
_NAME = r"[A-Za-z0-9_.\-]+"
_REF = re.compile(rf"(?P<name>{_NAME})?(?:@(?P<alias>{_NAME})|:(?P<version>[1-9][0-9]*))")


@dataclass(frozen=True)
class ModelRef:
    name: str | None = None  # None: the surface's registered model (filled in by `for_model`)
    alias: str | None = None  # exactly one of alias and version, unless `heuristic`
    version: str | None = None

    @property
    def heuristic(self) -> bool:
        return self.alias is None and self.version is None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if text == HEURISTIC:
            return cls()
        found = _REF.fullmatch(text)
        if found is None:
            raise ValueError(f"{text!r} is not a model reference: write @<alias>, <name>@<alias>, :<version>, "
                             f"<name>:<version> or {HEURISTIC}")
        return cls(found["name"], found["alias"], found["version"])

    @classmethod
    def coerce(cls, value: Any) -> Any:
        """A config value (text, or a ModelRef already) as a ModelRef; pydantic's before-validator."""
        return cls.parse(value) if isinstance(value, str) else value

    def for_model(self, name: str) -> ModelRef:
        """This reference with the registered model filled in where it names none."""
        return self if self.heuristic or self.name else ModelRef(name, self.alias, self.version)

    def __str__(self) -> str:
        if self.heuristic:
            return HEURISTIC
        at = f"@{self.alias}" if self.alias is not None else f":{self.version}"
        return f"{self.name or ''}{at}"
