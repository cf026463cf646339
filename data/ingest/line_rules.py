"""The per-line rules of a log's contract, written once: ingestion applies them to every landing line
(in Spark, data/ingest/validation.py), the ranking service to every event it is sent
(`POST /v1/events`), and the stream's consumers to every line they read, so a line one accepts the
others accept (docs/log_contracts.md §1).

A line is judged alone, relative to its landing day, and gets the first reason that applies:
    malformed_json              not one JSON object
    missing_required:<col>      a required field absent or null
    bad_type:<col>              a value its column's type cannot take (the table in the docs)
    bad_enum:<col>              a value outside the contract's / the vocabulary's list
    ts_in_future                the time column more than FUTURE_SKEW past the end of the day
    ts_too_old                  an event log's row more than max_age_days before the day starts
What needs more than the line (references to users and posts, duplicates of a key) is judged by
ingestion over the lake (validation.check_references, assign_status).

Typed values: ids int64 (data.ids), timestamps int microseconds since the epoch (UTC), the rest the
Python value of their Arrow type. Plain Python, no Spark: the service imports it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
import pyarrow as pa

from data.contracts import ID_ENTITIES, LogContract
from data.days import day_end, day_start
from data.ids import HASHED_BASE, INT64_MAX, INT64_MIN, BadId, to_id
from data.vocabulary import Vocabulary

# Clocks drift: an event up to this far past the end of its landing day is still believed.
FUTURE_SKEW = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# The boolean spellings the contract accepts: true/false, 0/1, "true"/"false", "0"/"1".
BOOLEAN_TEXT = {"true": True, "1": True, "false": False, "0": False}
# ISO-8601 date and time, a `T` or a space between, seconds and fraction optional, then `Z`, an
# offset, or nothing (UTC). fromisoformat alone would also take week dates and compact forms.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?")
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class _Bad(Exception):
    """A value its column's type cannot take."""


def _json(line: str) -> Any:
    """`json.loads`, or None for a line that is not JSON."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def _text(value: Any) -> str:
    if type(value) is str and value.isascii():  # the common case, without a call
        return value
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a number in a text column keeps its text
    raise _Bad


def _utf8(text: str) -> str:
    # A lone surrogate (a JSON "\\ud800" escape) cannot be stored: it becomes "?", as the JVM writes it.
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _identifier(value: Any) -> int:
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:  # the common case, as to_id decides it
        return value
    try:
        return to_id(value)
    except BadId:
        raise _Bad from None


def _int32(value: Any) -> int:
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and INT32_MIN <= value <= INT32_MAX:
        return value
    raise _Bad


def _double(value: Any) -> float:
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any double
            raise _Bad from None
        if math.isfinite(number):
            return number
    raise _Bad


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value in BOOLEAN_TEXT:
        return BOOLEAN_TEXT[value]
    raise _Bad


def _timestamp_us(value: Any) -> int:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise _Bad
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:  # a day or an hour that does not exist: 2026-02-30, 25:00
        raise _Bad from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _US


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], list]:
    def convert(value: Any) -> list:
        if not isinstance(value, list):
            raise _Bad
        return [None if v is None else item(v) for v in value]

    return convert


def _number_item(value: Any) -> float:
    if isinstance(value, str):  # a list of numbers holds numbers, not their text
        raise _Bad
    return _double(value)


FLOAT32_MAX = 3.4028234663852886e38


def _float32_item(value: Any) -> float:
    number = _number_item(value)
    if abs(number) > FLOAT32_MAX:  # it would land as infinity
        raise _Bad
    return number


def _float32s(value: Any) -> list:
    """A list<float> column: numbers a float32 holds (ints become floats: Arrow refuses an int a
    float32 cannot hold exactly)."""
    if not isinstance(value, list):
        raise _Bad
    if all(type(v) is float for v in value):  # the common case at C speed: a feature vector
        try:
            if all(map(math.isfinite, value)) and max(map(abs, value), default=0.0) <= FLOAT32_MAX:
                return value
        except OverflowError:
            pass
    return [None if v is None else _float32_item(v) for v in value]


def _converter(name: str, arrow_type: pa.DataType) -> Callable[[Any], Any]:
    if name in ID_ENTITIES:
        return _identifier
    if pa.types.is_timestamp(arrow_type):
        return _timestamp_us
    if pa.types.is_boolean(arrow_type):
        return _boolean
    if pa.types.is_int32(arrow_type):
        return _int32
    if pa.types.is_floating(arrow_type):
        return _double
    if pa.types.is_string(arrow_type):
        return _text
    if pa.types.is_list(arrow_type):
        if pa.types.is_string(arrow_type.value_type):
            return _list_of(_text)
        if pa.types.is_float32(arrow_type.value_type):
            return _float32s
    raise TypeError(f"no line rule for column {name} of type {arrow_type}")


class Checked(NamedTuple):
    values: tuple | None  # typed, in schema order; None when the line failed a rule
    reason: str | None  # the first rule it failed, or None
    bad_enum_value: str | None  # the value of a bad_enum:<col>, to report
    raw_ids: tuple  # a valid line's ids' exported text where the id is in the hashed range (for the id
    # map), else None, in contract.id_columns order; () for a failed line


MALFORMED = Checked(None, "malformed_json", None, ())  # not one JSON object


class LineRules:
    """One log's rules, compiled once: `check(line, day)` judges a line landing on `day`."""

    def __init__(self, contract: LogContract, vocabulary: Vocabulary):
        self.contract = contract
        names = contract.schema.names
        self._names = names
        self._convert_at = [(i, _converter(f.name, f.type)) for i, f in enumerate(contract.schema)]
        # in the contract's order of required columns: the first one missing is the reason
        self._required_at = [names.index(name) for name in contract.required]
        self._missing = {i: f"missing_required:{name}" for i, name in enumerate(names)}
        self._bad_type = {i: f"bad_type:{name}" for i, name in enumerate(names)}
        self._enums = {name: frozenset(values) for name, values in contract.enum_values(vocabulary).items()}
        self._time_index = contract.schema.names.index(contract.time_column)
        self._max_age = None if contract.max_age_days is None else timedelta(days=contract.max_age_days)
        self._bounds: dict[str, tuple[int, int | None]] = {}
        self._enum_at = [(names.index(name), name, allowed) for name, allowed in self._enums.items()]
        self._id_at = [(names.index(name), name) for name in contract.id_columns]
        self._no_raw_ids = (None,) * len(self._id_at)

    def _day_bounds(self, day: str) -> tuple[int, int | None]:
        bounds = self._bounds.get(day)
        if bounds is None:
            latest = (day_end(day) + FUTURE_SKEW - _EPOCH) // _US
            earliest = None if self._max_age is None else (day_start(day) - self._max_age - _EPOCH) // _US
            bounds = self._bounds[day] = (latest, earliest)
        return bounds

    def check(self, line: str, day: str) -> Checked:
        """The verdict on `json.loads(line)`, read by orjson (~3x faster) where that cannot change it.

        orjson refuses some lines json reads (NaN, Infinity, 1e400, lone surrogates), and reads an
        integer beyond 64 bits as a float where json keeps it exact: in a number column that is the
        same value, in any other column it fails a rule. So a line orjson reads into a valid row is
        valid with the same values, and json judges every other line.
        """
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
        else:
            if type(row) is not dict:
                return MALFORMED  # json reads a list, a string or a number too
            checked = self.check_object(row, day)
            if checked.reason is None:
                return checked
        row = _json(line)
        if not isinstance(row, dict):
            return MALFORMED
        return self.check_object(row, day)

    def check_object(self, row: dict[str, Any], day: str) -> Checked:
        """A line already parsed into its JSON object."""
        values = [row.get(name) for name in self._names]
        for i in self._required_at:
            if values[i] is None:
                return Checked(None, self._missing[i], None, ())
        i = -1
        try:  # one try for the whole row: entering it per value costs more than the rule
            for i, convert in self._convert_at:
                value = values[i]
                if value is not None:
                    values[i] = convert(value)
        except _Bad:
            return Checked(None, self._bad_type[i], None, ())
        for i, name, allowed in self._enum_at:
            if values[i] is not None and values[i] not in allowed:
                return Checked(None, f"bad_enum:{name}", values[i], ())
        ts = values[self._time_index]
        if ts is not None:  # (an optional time column left out: no time rule to judge)
            latest, earliest = self._day_bounds(day)
            if ts > latest:
                return Checked(None, "ts_in_future", None, ())
            if earliest is not None and ts < earliest:
                return Checked(None, "ts_too_old", None, ())
        # the id map keeps the exported text of the ids in the hashed range (data.id_map); most rows have none
        raw_ids = self._no_raw_ids
        for i, _ in self._id_at:
            if values[i] is not None and values[i] >= HASHED_BASE:  # then each id's text, or None
                raw_ids = tuple(_utf8(str(row[name])) if values[j] is not None and values[j] >= HASHED_BASE
                                else None for j, name in self._id_at)
                break
        return Checked(tuple(values), None, None, raw_ids)


def _arrow_type(name: str, arrow_type: pa.DataType) -> pa.DataType:
    # Timestamps leave as microseconds, the precision Spark's TimestampType holds.
    return pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(arrow_type) else arrow_type


def checked_schema(contract: LogContract) -> pa.Schema:
    """What `check_batch` adds to a batch: the typed columns, `reason`, the bad enum value and each id
    column's exported text (`_raw_<col>`)."""
    from data import columns as c  # here, not at import: the names only matter to a batch

    return pa.schema(
        [pa.field(f.name, _arrow_type(f.name, f.type)) for f in contract.schema]
        + [pa.field(c.REASON, pa.string()), pa.field(BAD_ENUM_VALUE, pa.string())]
        + [pa.field(raw_id(name), pa.string()) for name in contract.id_columns]
    )


BAD_ENUM_VALUE = "_bad_enum_value"  # the offending value of a bad_enum row (to report), else null


def raw_id(column: str) -> str:
    """The column keeping an id's exported text, for the id map."""
    return f"_raw_{column}"


def check_batch(rules: LineRules, lines: list[str | None], days: list[str]) -> pa.RecordBatch:
    """`rules.check` of each (line, landing day), as the columns of `checked_schema`."""
    schema = checked_schema(rules.contract)
    fields, typed = list(schema), len(rules.contract.schema)
    checked = [rules.check(line or "", day) for line, day in zip(lines, days, strict=True)]
    # Rows to columns in Arrow: each row's tuple is one struct value, then split (a failed line's
    # None is a null struct, null in every column).
    values = pa.array([x.values for x in checked], type=pa.struct(fields[:typed])).flatten()
    raw_ids = pa.array([x.raw_ids or None for x in checked], type=pa.struct(fields[typed + 2:])).flatten()
    reasons = pa.array([x.reason for x in checked], type=pa.string())
    bad_values = pa.array([x.bad_enum_value for x in checked], type=pa.string())
    return pa.RecordBatch.from_arrays([*values, reasons, bad_values, *raw_ids], schema=schema)
