"""Any foreign value as a bounded JSON value for ``ExecutionResult.extras``.

Cycles, NaN/inf, non-JSON objects, huge strings and deep or wide containers are replaced by
markers (``"<cycle>"``, ``None``, ``"<TypeName>"``, a truncation note), never raised about.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import math
from collections.abc import Mapping, Sequence, Set
from typing import Final

from pydantic import JsonValue

from instrument.adapters._coerce import (
    MAX_INT,
    MAX_ITEMS,
    MAX_NAME,
    _plain_str,
    _total,
    field,
    to_str,
    truncate,
    type_name,
)

__all__ = ["MAX_EXTRA_STR", "is_json_safe", "json_dict", "json_safe"]

#: Strings inside extras.
MAX_EXTRA_STR: Final = 2_000
#: Nodes of one extras value, and its depth.
_MAX_NODES: Final = 2_000
_MAX_DEPTH: Final = 8


def is_json_safe(value: object, *, _depth: int = 0, _budget: list[int] | None = None) -> bool:
    """Exactly JSON types, finite floats, str keys, no cycles, within the size bounds."""
    budget = _budget if _budget is not None else [_MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0 or _depth > _MAX_DEPTH:
        return False
    t = type(value)
    if value is None or t is bool or t is int:
        return t is not int or abs(value) <= MAX_INT  # type: ignore[arg-type]
    if t is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if t is str:
        return len(value) <= MAX_EXTRA_STR and _plain_str(value) == value  # type: ignore[arg-type]
    if t is list:
        return len(value) <= MAX_ITEMS and all(  # type: ignore[arg-type]
            is_json_safe(v, _depth=_depth + 1, _budget=budget) for v in value  # type: ignore[attr-defined]
        )
    if t is dict:
        return len(value) <= MAX_ITEMS and all(  # type: ignore[arg-type]
            type(k) is str and is_json_safe(v, _depth=_depth + 1, _budget=budget)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    return False


def json_safe(value: object) -> JsonValue:
    """Any value as a bounded JSON value: cycles, NaN, non-JSON objects and overflow replaced.

    Mappings become dicts with str keys, sequences and sets lists, dataclasses dicts of their
    fields, enums their value, datetimes ISO strings, bytes a length marker, anything else its
    type name in angle brackets. Never raises.
    """
    return _Safe().convert(value, 0)


class _Safe:
    __slots__ = ("budget", "path")

    def __init__(self) -> None:
        self.budget = _MAX_NODES
        self.path: set[int] = set()

    def convert(self, value: object, depth: int) -> JsonValue:
        self.budget -= 1
        if self.budget < 0:
            return "<truncated>"
        try:
            return self._convert(value, depth)
        except Exception:  # anything hostile inside a foreign object becomes a marker
            return f"<{type_name(value)}>"

    def _convert(self, value: object, depth: int) -> JsonValue:
        if value is None or isinstance(value, bool):
            return bool(value) if value is not None else None
        if isinstance(value, int):
            n = int(value)
            return n if abs(n) <= MAX_INT else str(n)[:40]
        if isinstance(value, float):
            f = float(value)
            return f if math.isfinite(f) else None
        if isinstance(value, str):
            return truncate(value, MAX_EXTRA_STR)
        if isinstance(value, enum.Enum):
            return self.convert(value.value, depth)
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<bytes len={len(value)}>"
        if depth >= _MAX_DEPTH:
            return "<too deep>"
        key = id(value)
        if key in self.path:
            return "<cycle>"
        self.path.add(key)
        try:
            return self._container(value, depth)
        finally:
            self.path.discard(key)

    def _container(self, value: object, depth: int) -> JsonValue:
        if isinstance(value, Mapping):
            out: dict[str, JsonValue] = {}
            for i, (k, v) in enumerate(value.items()):
                if i >= MAX_ITEMS:
                    out["<truncated>"] = f"{len(value) - MAX_ITEMS} more keys"
                    break
                ks = to_str(k, MAX_NAME)
                out[ks if ks is not None else f"<{type_name(k)}>"] = self.convert(v, depth + 1)
            return out
        if isinstance(value, (list, tuple, Set)) or _is_plain_sequence(value):
            items: list[JsonValue] = []
            for i, v in enumerate(value):  # type: ignore[arg-type]
                if i >= MAX_ITEMS:
                    items.append("<truncated>")
                    break
                items.append(self.convert(v, depth + 1))
            return items
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: self.convert(field(value, f.name), depth + 1)
                for f in dataclasses.fields(value)[:MAX_ITEMS]
            }
        return f"<{type_name(value)}>"


def _is_plain_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


@_total
def json_dict(value: object) -> dict[str, JsonValue] | None:
    """``json_safe(value)`` when that is a dict, else None."""
    out = json_safe(value)
    return out if isinstance(out, dict) else None
