"""Tags and metadata as the record stores them: bounded, JSON-safe, never an error for the host.

Tags and metadata come from the caller's own data (a path into the call's arguments, a
callable, ``execution_context(...)``), so an odd value must not break the call, and a huge one
must not reach the span, the spool and every row. Each function here returns the stored form
and hands any problem to ``warn`` (the caller logs it once per function), never raises:

* tags: at most :data:`MAX_TAGS` distinct strings, each a bounded key (at most 256
  characters; a longer one keeps a prefix and its hash, like ids), first occurrence first;
* metadata: a mapping of ``str`` to JSON values (strings cut at :data:`MAX_METADATA_STR`
  characters, containers :data:`MAX_METADATA_DEPTH` deep), at most :data:`MAX_METADATA_BYTES`
  of compact JSON; keys that do not fit are dropped, in order, and a ``"_truncated"`` key says
  how many.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from uuid import UUID

from pydantic import JsonValue

from instrument.record import bounded_key, bounded_text, clean_text, exception_text

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "MAX_METADATA_STR",
    "MAX_TAGS",
    "TRUNCATED_KEY",
    "Warn",
    "bounded_metadata",
    "bounded_tags",
    "execution_uuid",
    "merge_metadata",
    "merge_tags",
]

#: Most tags one record keeps.
MAX_TAGS: Final = 64
#: Most bytes of compact JSON one record's metadata takes.
MAX_METADATA_BYTES: Final = 16 * 1024
#: Longest string kept inside metadata (a key or a value).
MAX_METADATA_STR: Final = 4096
#: Deepest nesting kept inside metadata; deeper containers become a marker string.
MAX_METADATA_DEPTH: Final = 8
#: The key that says metadata was cut, and by how much.
TRUNCATED_KEY: Final = "_truncated"

#: Receives a sentence about a value that was changed or dropped (logged once per function).
Warn = Callable[[str], None]


def _type_name(value: object) -> str:
    try:
        return type(value).__qualname__
    except Exception:  # a hostile metaclass; the name only goes into a message
        return "object"


def _tag(item: object, warn: Warn) -> str | None:
    if type(item) is str:
        return bounded_key(item)
    if item is None or isinstance(item, (bytes, bytearray)):
        warn(f"tags: a {_type_name(item)} is not a tag; dropped")
        return None
    try:
        return bounded_key(item if isinstance(item, str) else str(item))
    except Exception as exc:  # a hostile __str__ is the caller's data, never our error
        warn(f"tags: str() of a {_type_name(item)} raised {type(exc).__name__}; dropped")
        return None


def bounded_tags(value: object, warn: Warn) -> tuple[str, ...] | None:
    """`value` (one string, or an iterable of them) as stored tags; ``None`` when empty."""
    if value is None:
        return None
    items: Iterable[object]
    if isinstance(value, str):
        items = (value,)
    elif isinstance(value, (Mapping, bytes, bytearray)) or not isinstance(value, Iterable):
        warn(f"tags: expected a string or a sequence of strings, got a {_type_name(value)}; "
             "no tags kept")
        return None
    else:
        items = value
    out: dict[str, None] = {}
    dropped = read = 0
    try:
        for item in items:
            read += 1
            if read > 16 * MAX_TAGS:  # an endless or huge iterable: stop reading it
                dropped += 1
                break
            tag = _tag(item, warn)
            if tag is None or tag in out:
                continue
            if len(out) >= MAX_TAGS:
                dropped += 1
                continue
            out[tag] = None
    except Exception as exc:  # a raising iterator: keep what was read
        warn(f"tags: iterating the value raised {type(exc).__name__}; kept the tags before it")
    if dropped:
        warn(f"tags: more than {MAX_TAGS} tags (or {16 * MAX_TAGS} items); kept the first "
             f"{len(out)}")
    return tuple(out) or None


def merge_tags(outer: tuple[str, ...] | None, inner: tuple[str, ...] | None
               ) -> tuple[str, ...] | None:
    """The union, `outer`'s first, at most :data:`MAX_TAGS` (both are already bounded)."""
    if not inner:
        return outer
    if not outer:
        return inner
    merged = tuple(dict.fromkeys((*outer, *inner)))
    return merged[:MAX_TAGS]


class _Budget:
    """Nodes left to convert: a metadata value with a million items costs a bounded walk."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 4 * MAX_METADATA_BYTES


def _json_value(value: object, depth: int, budget: _Budget, where: str, warn: Warn
                ) -> JsonValue:
    budget.nodes -= 1
    if budget.nodes < 0:
        return "<omitted: too many items>"
    t = type(value)
    if value is None or t is bool or t is int:
        return value  # type: ignore[return-value]
    if t is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        warn(f"metadata{where}: {value!r} is not JSON; stored as null")
        return None
    if isinstance(value, str):
        return bounded_text(value, MAX_METADATA_STR)
    if isinstance(value, bool | int):  # subclasses (IntEnum): their plain value
        return int(value) if not isinstance(value, bool) else bool(value)
    if isinstance(value, float):
        return _json_value(float(value), depth, budget, where, warn)
    if depth >= MAX_METADATA_DEPTH:
        return f"<{_type_name(value)} nested deeper than {MAX_METADATA_DEPTH}>"
    if isinstance(value, Mapping):
        return _json_object(value, depth + 1, budget, where, warn)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_json_value(v, depth + 1, budget, f"{where}[{i}]", warn)
                for i, v in enumerate(items)]
    if isinstance(value, UUID):
        return str(value)
    # Anything else (a datetime, a Decimal, an object): its text, like a log line would show.
    try:
        return bounded_text(str(value), MAX_METADATA_STR)
    except Exception as exc:  # a hostile __str__ is the caller's data
        warn(f"metadata{where}: str() of a {_type_name(value)} raised {type(exc).__name__}; "
             "stored as a marker")
        return f"<{_type_name(value)}>"


def _json_object(value: Mapping[Any, Any], depth: int, budget: _Budget, where: str,
                 warn: Warn) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for k, v in list(value.items()):
        if isinstance(k, str):
            key = clean_text(k)[:MAX_METADATA_STR]
        else:
            try:
                key = clean_text(str(k))[:MAX_METADATA_STR]
            except Exception:  # a hostile key: skipped, the rest is kept
                warn(f"metadata{where}: a {_type_name(k)} key has no text; dropped")
                continue
        out[key] = _json_value(v, depth, budget, f"{where}.{key}", warn)
    return out


def _fit(data: dict[str, JsonValue], warn: Warn, prefer: Iterable[str] = ()
         ) -> dict[str, JsonValue]:
    """`data`, or the keys that fit :data:`MAX_METADATA_BYTES` (those in `prefer` first, then
    the others in order) and a marker; the kept keys stay in `data`'s order."""
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    if size <= MAX_METADATA_BYTES:
        return data
    chosen: set[str] = set()
    used = 2 + 120  # the braces, and room for the marker
    for key in (*(k for k in prefer if k in data), *data):
        if key in chosen:
            continue
        item = len(json.dumps({key: data[key]}, separators=(",", ":"),
                              ensure_ascii=False).encode()) - 1  # its "key":value, and a comma
        if used + item > MAX_METADATA_BYTES:
            continue
        chosen.add(key)
        used += item
    kept = {k: v for k, v in data.items() if k in chosen}
    dropped = len(data) - len(kept)
    kept[TRUNCATED_KEY] = (f"{dropped} of {len(data)} keys dropped: metadata is limited to "
                           f"{MAX_METADATA_BYTES} bytes of JSON ({size} given)")
    warn(f"metadata: {size} bytes of JSON is over the {MAX_METADATA_BYTES}-byte limit; "
         f"dropped {dropped} key(s) and kept a {TRUNCATED_KEY!r} key saying so")
    return kept


def bounded_metadata(value: object, warn: Warn) -> dict[str, JsonValue] | None:
    """`value` (a mapping) as stored metadata; ``None`` when empty or not a mapping."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        warn(f"metadata: expected a mapping of str to JSON values, got a {_type_name(value)}; "
             "no metadata kept")
        return None
    try:
        data = _json_object(value, 0, _Budget(), "", warn)
    except Exception as exc:  # a hostile mapping (items() raises): nothing kept, said once
        warn(f"metadata: reading the mapping raised {type(exc).__name__}: "
             f"{bounded_text(exception_text(exc), 200)}; no metadata kept")
        return None
    return _fit(data, warn) if data else None


def merge_metadata(outer: dict[str, JsonValue] | None, inner: dict[str, JsonValue] | None,
                   warn: Warn) -> dict[str, JsonValue] | None:
    """`outer` updated with `inner` (inner wins per key), bounded again when both are set:
    past the limit, `inner`'s keys are kept first (they are the more specific)."""
    if not inner:
        return outer
    if not outer:
        return inner
    merged = {**outer, **inner}
    merged.pop(TRUNCATED_KEY, None)
    return _fit(merged, warn, prefer=inner)


def execution_uuid(value: object, warn: Warn) -> UUID | None:
    """An execution id given as a UUID or its text; ``None`` (warned) for anything else."""
    if value is None:
        return None
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.strip())
        except ValueError:
            pass
    warn(f"resumes: {bounded_text(_safe_repr(value), 80)} is not an execution id (a UUID or "
         "its text); the record's resumes_execution_id is None")
    return None


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a hostile __repr__
        return f"<{_type_name(value)}>"
