"""DraftReport <-> JSON, losslessly, for the ``report_versions.payload`` column.

The codec walks the frozen ``core`` dataclasses by their type hints rather
than naming each field by hand: when someone adds a field (with a default) to
a core record it is stored and restored without a change here, and a payload
written before the field existed still loads (the default fills it in).
Decoding goes through the records' constructors, so a stored payload is
validated again on the way out.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``datetime``,
``date``, ``Path``, enums, ``core`` dataclasses (``Code`` included),
``tuple[X, ...]``, fixed tuples and ``X | None``.  Anything else raises
:class:`core.errors.StoreError` naming the record and field.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from datetime import date, datetime
from pathlib import Path
from typing import Any

from core.errors import MmdxError, StoreError
from core.records import DraftReport

#: Written into every payload under FORMAT_KEY; bump on an incompatible change and keep a reader for the old one.
FORMAT = "mmdx.report/1"
FORMAT_KEY = "_format"

_JsonValue = Any


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _encode(value: Any, tp: Any, where: str) -> _JsonValue:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(arms) != 1:
            raise StoreError(f"{where}: cannot serialise a union of {arms}")
        return _encode(value, arms[0], where)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return [_encode(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        return [_encode(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _encode_dataclass(value, tp, where)
        if issubclass(tp, enum.Enum):
            return value.value
        if tp is datetime or tp is date:
            return value.isoformat()
        if tp is Path:
            return str(value)
        if tp in (str, int, float, bool):
            return value
    raise StoreError(f"{where}: cannot serialise a field of type {tp!r}")


def _encode_dataclass(value: Any, cls: type, where: str) -> dict[str, _JsonValue]:
    hints = _hints(cls)
    return {
        f.name: _encode(getattr(value, f.name), hints[f.name], f"{where}.{f.name}")
        for f in dataclasses.fields(cls)
        if f.init
    }


def _decode(data: _JsonValue, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(arms) != 1:
            raise StoreError(f"{where}: cannot read a union of {arms}")
        return _decode(data, arms[0], where)
    if origin is tuple:
        if not isinstance(data, list):
            raise StoreError(f"{where}: expected a list, got {type(data).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(data))
        if len(data) != len(args):
            raise StoreError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(_decode(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(data, args, strict=True)))
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _decode_dataclass(data, tp, where)
        try:
            if issubclass(tp, enum.Enum):
                return tp(data)
            if tp is datetime:
                return datetime.fromisoformat(data)
            if tp is date:
                return date.fromisoformat(data)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{where}: {data!r} is not a valid {tp.__name__} ({exc})") from None
        if tp is Path:
            return Path(data)
        if tp is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if tp in (str, int, float, bool):
            if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
                raise StoreError(f"{where}: expected {tp.__name__}, got {type(data).__name__}")
            return data
    raise StoreError(f"{where}: cannot read a field of type {tp!r}")


def _decode_dataclass(data: _JsonValue, cls: type, where: str) -> Any:
    if not isinstance(data, dict):
        raise StoreError(f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise StoreError(f"{where}: unknown fields {sorted(unknown)} for {cls.__name__}")
    kwargs = {name: _decode(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except MmdxError as exc:
        raise StoreError(f"{where}: stored {cls.__name__} is not valid: {exc}") from exc
    except TypeError as exc:
        raise StoreError(f"{where}: stored {cls.__name__} is incomplete: {exc}") from exc


def report_to_json(report: DraftReport) -> dict[str, Any]:
    """A JSON-ready dict: one key per DraftReport field (same names), plus ``"_format"``."""
    if not isinstance(report, DraftReport):
        raise StoreError(f"report_to_json: expected a DraftReport, got {type(report).__name__}")
    return {FORMAT_KEY: FORMAT, **_encode_dataclass(report, DraftReport, "DraftReport")}


def report_from_json(data: dict[str, Any]) -> DraftReport:
    """The DraftReport :func:`report_to_json` wrote (validated again by the record constructors)."""
    if not isinstance(data, dict) or data.get(FORMAT_KEY) != FORMAT:
        got = data.get(FORMAT_KEY) if isinstance(data, dict) else type(data).__name__
        raise StoreError(f"report payload: expected {FORMAT_KEY} {FORMAT!r}, got {got!r}")
    fields = {k: v for k, v in data.items() if k != FORMAT_KEY}
    report = _decode_dataclass(fields, DraftReport, "DraftReport")
    assert isinstance(report, DraftReport)
    return report
