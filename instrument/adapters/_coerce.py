"""Total, never-raising coercions shared by the adapters.

Engine results are foreign data: dicts with the wrong types, NaN, huge strings, cycles, objects
whose attributes raise. Every helper here returns a clean value or ``None`` ("not measured") and
never lets an exception from the foreign object escape.
``instrument.adapters._jsonsafe`` does the same for values destined for ``ExecutionResult.extras``.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
import re
from collections.abc import Callable, Mapping, Set
from functools import wraps
from typing import Any, Final, ParamSpec, TypeGuard, TypeVar, overload

from pydantic import JsonValue

__all__ = [
    "MAX_INT",
    "MAX_ITEMS",
    "MAX_NAME",
    "MAX_TEXT",
    "MISSING",
    "Notes",
    "absent",
    "field",
    "has_field",
    "is_a",
    "is_mapping",
    "seq",
    "to_bool",
    "to_count",
    "to_datetime",
    "to_float",
    "to_ms",
    "to_str",
    "truncate",
]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: "The result has no such field" (distinct from a field whose value is None).
MISSING: Final = _Missing()

#: Names, models, plugins, ids.
MAX_NAME: Final = 256
#: Response text, error messages.
MAX_TEXT: Final = 65_536
#: Items of one list kept (tool calls, extras lists, memory types).
MAX_ITEMS: Final = 1_000
#: Largest integer kept (Postgres bigint).
MAX_INT: Final = 2**63 - 1

_TRUE: Final = frozenset({"true", "yes", "1", "ok", "success", "succeeded", "completed"})
_FALSE: Final = frozenset({"false", "no", "0", "error", "failed", "failure"})
_NUMBER: Final = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _total(fn: Callable[_P, _R | None]) -> Callable[_P, _R | None]:
    """Make a coercion total: any exception from the foreign value means "no value" (None)."""

    @wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        try:
            return fn(*args, **kwargs)
        except Exception:  # hostile __class__/__eq__/__int__...: the value is unusable
            return None

    return wrapper


class Notes:
    """Normalization notes collected into ``extras["normalization_notes"]``."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        if len(self.items) < 50:
            self.items.append(truncate(text, 300))

    def into(self, extras: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if self.items:
            extras["normalization_notes"] = list(self.items)
        return extras


_T = TypeVar("_T")


@overload
def is_a(value: object, types: type[_T]) -> TypeGuard[_T]: ...


@overload
def is_a(value: object, types: tuple[type, ...]) -> bool: ...


def is_a(value: object, types: type | tuple[type, ...]) -> bool:
    """``isinstance`` that is False instead of raising (a hostile ``__class__`` raises)."""
    try:
        return isinstance(value, types)
    except Exception:  # hostile __class__ property
        return False


def is_mapping(value: object) -> TypeGuard[Mapping[Any, Any]]:
    """``isinstance(value, Mapping)`` that is False instead of raising."""
    try:
        return isinstance(value, Mapping)
    except Exception:  # hostile __class__ property
        return False


def type_name(value: object) -> str:
    try:
        return type(value).__name__
    except Exception:  # a hostile metaclass; a name is only used in notes
        return "object"


def _plain_str(value: str) -> str:
    """An exact ``str`` (a str subclass may override slicing/encoding), valid UTF-8."""
    s = str.__str__(value)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates would break JSON encoders downstream
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s


def truncate(value: str, limit: int) -> str:
    if type(value) is str and len(value) <= limit and value.isascii():
        return value  # the common case: short, plain, nothing to check
    s = _plain_str(value)
    if len(s) <= limit:
        return s
    cut = len(s) - limit
    return f"{s[:limit]}…[truncated {cut} chars]"


# --------------------------------------------------------------------------------------------
# Field access on mappings and attribute objects
# --------------------------------------------------------------------------------------------


def _instance_dict(obj: object) -> Mapping[str, Any] | None:
    try:
        d = object.__getattribute__(obj, "__dict__")
    except Exception:  # slotted objects and hostile __getattribute__ have no usable __dict__
        return None
    return d if isinstance(d, dict) else None


def absent(value: object) -> bool:
    """MISSING or None (identity checks only: a foreign ``__eq__`` may raise)."""
    return value is MISSING or value is None


def has_field(obj: object, name: str) -> bool:
    """Whether a mapping has the key, or an object declares the attribute.

    Never evaluates properties or ``__getattr__`` (a catch-all proxy must not match
    everything), so it is cheap and cannot raise.
    """
    try:
        if isinstance(obj, Mapping):
            return name in obj
        d = _instance_dict(obj)
        if d is not None and name in d:
            return True
        return any(name in vars(k) for k in type(obj).__mro__)
    except Exception:  # foreign __contains__/__mro__; treat as absent
        return False


def field(obj: object, *names: str) -> object:
    """The first present field among `names` (mapping key or attribute), else MISSING."""
    if type(obj) is dict:  # the common case, without the ABC check
        for name in names:
            if name in obj:
                return obj[name]
        return MISSING
    is_map = False
    try:
        is_map = isinstance(obj, Mapping)
    except Exception:  # hostile __class__
        return MISSING
    for name in names:
        try:
            if is_map:
                if name in obj:  # type: ignore[operator]
                    return obj[name]  # type: ignore[index]
            elif has_field(obj, name):
                return getattr(obj, name)
        except Exception:  # noqa: S112  # an attribute or key whose access raises is absent
            continue
    return MISSING


@_total
def seq(value: object, limit: int = MAX_ITEMS) -> list[object] | None:
    """A list/tuple (not str/bytes/mapping) as a bounded list, else None."""
    try:
        if isinstance(value, (list, tuple)):
            return list(value[:limit])
        if isinstance(value, Set):
            out: list[object] = []
            for i, item in enumerate(value):
                if i >= limit:
                    break
                out.append(item)
            return out
    except Exception:  # a list subclass with a hostile __getitem__/__iter__
        return None
    return None


@_total
def length(value: object) -> int | None:
    """len() of a list/tuple/set, None for anything else or when it raises."""
    try:
        if isinstance(value, (list, tuple, Set)):
            n = len(value)
            return n if n >= 0 else None
    except Exception:  # hostile __len__
        return None
    return None


# --------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------


@_total
def to_float(value: object, *, nonneg: bool = True) -> float | None:
    """A finite float (non-negative unless told), from int/float/numeric str; else None."""
    try:
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, (int, float)):
            f = float(value)
        elif isinstance(value, str):
            s = _plain_str(value)
            if len(s) > 64 or not _NUMBER.fullmatch(s):
                return None
            f = float(s)
        else:
            return None
    except (OverflowError, ValueError, TypeError):
        return None
    if not math.isfinite(f) or (nonneg and f < 0):
        return None
    return f


@_total
def to_count(value: object) -> int | None:
    """A non-negative integer count; integral floats and digit strings accepted; else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            n = int(value)
        except Exception:  # an int subclass with a hostile __int__
            return None
        return n if 0 <= n <= MAX_INT else None
    f = to_float(value)
    if f is None or f != int(f) or f > MAX_INT:
        return None
    return int(f)


def to_ms(value: object) -> float | None:
    """A non-negative finite duration in milliseconds, else None."""
    return to_float(value)


#: epoch numbers at or above this are milliseconds (JavaScript's Date.now()), below it seconds
_EPOCH_MS_FROM = 1e11


@_total
def to_datetime(value: object) -> _dt.datetime | None:
    """An aware UTC-or-offset datetime from a datetime, an ISO 8601 string, or epoch seconds or
    milliseconds (JavaScript's ``Date.now()``); naive values are taken as UTC. Else None."""
    if is_a(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        n = to_float(value)
        if n is None or n == 0:
            return None
        return _dt.datetime.fromtimestamp(n / 1000 if n >= _EPOCH_MS_FROM else n, _dt.UTC)
    s = to_str(value, 64, scalars=False)
    if s is None:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.UTC)


@_total
def to_bool(value: object) -> bool | None:
    """True/False from bool, 0/1 and the usual words; None for anything else."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        try:
            n = int(value)
        except Exception:  # hostile int subclass
            return None
        return {0: False, 1: True}.get(n)
    if isinstance(value, str):
        low = _plain_str(value)[:16].strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


@_total
def to_str(value: object, limit: int = MAX_NAME, *, scalars: bool = True) -> str | None:
    """A bounded str from str (and, with `scalars`, finite numbers and enums); else None."""
    try:
        if isinstance(value, str):
            return truncate(value, limit)
        if isinstance(value, enum.Enum):
            return to_str(value.value, limit, scalars=scalars)
        if scalars and isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return truncate(repr(float(value) if isinstance(value, float) else int(value)),
                            limit)
    except Exception:  # hostile subclasses
        return None
    return None


@_total
def error_text(value: object, limit: int = MAX_TEXT) -> str | None:
    """A message from a str, an exception, or a mapping/object with ``message``."""
    s = to_str(value, limit)
    if s is not None:
        return s
    if isinstance(value, BaseException):
        try:
            return truncate(str(value), limit) or type_name(value)
        except Exception:  # an exception whose __str__ raises
            return type_name(value)
    msg = field(value, "message", "error", "detail")
    if msg is not MISSING and msg is not value:
        return to_str(msg, limit)
    return None


@_total
def str_list(value: object, limit: int = MAX_ITEMS) -> list[str] | None:
    """A list of bounded strings from a list/tuple/set (non-strings dropped), else None."""
    items = seq(value, limit)
    if items is None:
        return None
    return [s for s in (to_str(v, MAX_NAME, scalars=False) for v in items) if s is not None]
