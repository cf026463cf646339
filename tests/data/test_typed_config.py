"""The typed configs' base: refusals name each offending key as the file spells it."""

from __future__ import annotations

import pytest
from pydantic import Field, ValidationError, model_validator

from data.typed_config import ConfigError, ConfigModel


class Inner(ConfigModel):
    cap: int = Field(3, ge=1)
    names: tuple[str, ...] = ("a",)


class Outer(ConfigModel):
    inner: Inner = Field(default_factory=Inner)
    tables: dict[str, Inner] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, values):
        if "old" in values:
            raise ConfigError("old moved to another file")
        return values


def test_each_problem_is_named_by_its_key():
    raw = {"inner": {"cap": 0, "names": ["x", 3], "capp": 1}, "tables": {"t": {"zz": 1}}, "extra": {}}
    with pytest.raises(ConfigError) as err:
        Outer.parse(raw, "test config")
    message = str(err.value)
    assert message.startswith("test config: ")
    for clause in ("[inner] unknown keys ['capp']", "[tables.t] unknown keys ['zz']", "unknown sections ['extra']",
                   "inner.cap: Input should be greater than or equal to 1 (got 0)", "inner.names[1]: "):
        assert clause in message
    assert isinstance(err.value, ValueError)


def test_a_validators_own_config_error_reaches_the_caller_as_is():
    with pytest.raises(ConfigError, match=r"^old moved to another file$"):
        Outer.parse({"old": 1}, "test config")


def test_lists_become_tuples_and_changed_copies_are_validated():
    inner = Inner.parse({"names": ["x", "y"]}, "test config")
    assert inner.names == ("x", "y") and hash(inner) == hash(Inner(names=("x", "y")))
    assert inner.changed(cap=5).cap == 5
    with pytest.raises(ValidationError, match="cap"):
        inner.changed(cap=0)
    assert inner.model_copy(update={"cap": 0}).cap == 0  # model_copy takes the change as given
