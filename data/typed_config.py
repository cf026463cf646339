"""The base of Loupe's typed configs (serving, candidate generation, the Explore sections, training,
the celebrity rule): frozen pydantic models that refuse unknown keys, and the error a config file's
values raise, which names each offending key as the file spells it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A config's values refused. Raised by a validator, it reaches the caller as is (with its own
    message and type); pydantic's own refusals are summarised by `ConfigError.of`."""

    @classmethod
    def of(cls, where: str, exc: ValidationError) -> ConfigError:
        """One clause per problem: `budget.total_ms: Input should be ...`, `[budget] unknown keys [...]`."""
        unknown: dict[str, list[str]] = {}
        problems = []
        for error in exc.errors(include_url=False):
            *parent, key = error["loc"] or ("",)
            if error["type"] == "extra_forbidden":
                # an unknown key holding a table is an unknown section ([budgets], [trending.weightz])
                kind = "sections" if isinstance(error["input"], dict) else "keys"
                table = f"[{_path(parent)}] " if parent else ""
                unknown.setdefault(f"{table}unknown {kind}", []).append(str(key))
                continue
            message = error["msg"].removeprefix("Value error, ")
            if not error["loc"]:  # a model validator's: its message names the keys
                problems.append(message)
            elif error["type"] == "missing":
                problems.append(f"{_path(error['loc'])}: missing")
            else:
                problems.append(f"{_path(error['loc'])}: {message} (got {error['input']!r})")
        problems = [f"{what} {sorted(keys)}" for what, keys in unknown.items()] + problems
        return cls(f"{where}: " + "; ".join(problems))


def _path(loc: Any) -> str:
    """('sources', 'popular', 'cap') -> sources.popular.cap; ('windows_hours', 0) -> windows_hours[0]."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


class ConfigModel(BaseModel):
    """A config section: frozen (and hashable when its values are), unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, values: Mapping[str, Any], where: str) -> Self:
        """The config from a file's table; `where` (e.g. "serving config") leads the error message."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            own = [e["ctx"]["error"] for e in exc.errors() if isinstance(e.get("ctx", {}).get("error"), ConfigError)]
            if own:  # e.g. RenamedKeyError: callers may catch its type
                raise own[0] from exc
            raise ConfigError.of(where, exc) from exc

    def changed(self, **changes: Any) -> Self:
        """A copy with some fields changed, validated like a file's values (`model_copy(update=)`
        is not: it takes the changes as given)."""
        return self.model_validate({**dict(self), **changes})
