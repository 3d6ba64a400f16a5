"""A decorated function's plan: everything about it that does not change between calls.

Built once, at decoration time: the argument getters (:mod:`instrument.binding`), the adapter
named by ``engine=``, and the memo of auto-detection by result type or key set.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from instrument.adapters import registry
from instrument.adapters.protocol import Adapter, StreamedItems
from instrument.adapters.registry import UnknownAdapterError, get_adapter
from instrument.binding import ArgumentPlan, FieldSpec, Literal_, _none, compile_field
from instrument.guard import internal_error
from instrument.record import ExecutionResult, bounded_key, unmeasured_result

__all__ = ["PREBUILT", "Options", "Plan", "unrecognized"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Options:
    engine: str | None = None
    agent_id: FieldSpec = None
    user_id: FieldSpec = None
    agent_name: FieldSpec = None
    session_id: FieldSpec = None
    execution_type: FieldSpec = None
    name: str | None = None
    writers: tuple[str, ...] | None = None
    capture_content: bool | None = None


class Plan:
    """Everything about one decorated function that does not change between calls."""

    __slots__ = (
        "adapter", "by_keys", "by_type", "capture_content", "engine", "fields", "generation",
        "name", "no_fields", "qualname", "warned", "writers", "writers_checked",
    )

    def __init__(self, fn: Callable[..., Any], opts: Options, *, static: bool) -> None:
        qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        self.qualname: str = bounded_key(qualname if isinstance(qualname, str) else repr(fn))
        self.name: str | None = bounded_key(str(opts.name)) if opts.name is not None else None
        self.engine: str | None = opts.engine
        self.writers: tuple[str, ...] | None = opts.writers
        self.writers_checked = opts.writers is None
        self.capture_content: bool | None = opts.capture_content
        self.adapter: Adapter | None = None
        if opts.engine is not None:
            try:
                self.adapter = get_adapter(opts.engine)
            except UnknownAdapterError:
                # Never break the host: fall back to auto-detection and say so once (strict
                # mode raises it here, at decoration time).
                known = registry.available_adapters()
                close = difflib.get_close_matches(opts.engine, known, n=1)
                internal_error(
                    f"@logged_execution on {self.qualname}: unknown engine {opts.engine!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; known adapters: {', '.join(known)}. Each result's engine is detected "
                    "instead; fix engine=, or register an adapter (docs/adapters.md)",
                    decoration=True)
        args = ArgumentPlan(fn, static=static, owner=self.qualname)
        et = opts.execution_type
        if isinstance(et, str):
            et = Literal_(et)  # a plain string is a literal for execution_type
        self.fields = (
            compile_field(args, "agent_id", opts.agent_id),
            compile_field(args, "user_id", opts.user_id),
            compile_field(args, "agent_name", opts.agent_name),
            compile_field(args, "session_id", opts.session_id),
            compile_field(args, "execution_type", et),
        )
        #: nothing to resolve per call (the bare decorator): the call path skips the resolvers
        self.no_fields = all(f is _none for f in self.fields)
        self.warned: set[str] = set()
        # Auto-detection memo for non-mapping result types (a type's shape does not change);
        # `None` marks a type no adapter understands. Reset when adapters are (un)registered.
        self.by_type: dict[type, Adapter | None] = {}
        #: plain dict results: detection per key set, when every adapter decides by keys
        self.by_keys: dict[frozenset[Any], Adapter | None] = {}
        self.generation = registry.generation()

    def check_writers(self, writers: Any, custom_writers: Any) -> None:
        """Once per function, at its first call: every name in ``writers=`` must be a configured
        writer, or the record would silently reach nothing under that name."""
        self.writers_checked = True
        known = set(writers) | {w.name for w in custom_writers}
        unknown = [w for w in self.writers or () if w not in known]
        if unknown:
            internal_error(
                f"@logged_execution on {self.qualname}: writers={list(self.writers or ())} "
                f"names {unknown}, which is not a configured writer; configured: "
                f"{sorted(known)} (configure(writers=...) or INSTRUMENT_WRITERS)")

    def detect(self, result: object) -> Adapter | None:
        if self.generation != registry.generation():
            self.by_type.clear()
            self.by_keys.clear()
            self.generation = registry.generation()
        tp = type(result)
        found = self.by_type.get(tp, _UNCACHED)
        if found is _BY_SHAPE:
            if isinstance(result, dict) and tp is dict and len(result) <= 64 \
                    and registry.keys_decide():
                keys = frozenset(result)
                hit = self.by_keys.get(keys, _UNCACHED)
                if hit is _UNCACHED:
                    if len(self.by_keys) >= 64:
                        self.by_keys.clear()
                    hit = self.by_keys[keys] = registry.match_adapter(result)
                return hit  # type: ignore[no-any-return]
            return registry.match_adapter(result)
        if found is not _UNCACHED:
            return found  # type: ignore[no-any-return]
        # dict results are told apart by shape, and streams by their items, per call: one
        # function's stream may be empty (closed before its first item) one time, not the next
        if isinstance(result, (Mapping, StreamedItems)):
            self.by_type[tp] = _BY_SHAPE
            return registry.match_adapter(result)
        found = self.by_type[tp] = registry.match_adapter(result)
        return found


_UNCACHED: Any = object()
_BY_SHAPE: Any = object()


_UNRECOGNIZED: dict[type, ExecutionResult] = {}
PREBUILT: set[int] = set()  # ids of the results above: our own text, nothing to redact


def unrecognized(plan: Plan, outcome: object) -> ExecutionResult:
    """A record for a result no adapter understands: success from "no exception", and a note.

    Built once per type (records are immutable, so the result object is shared) and warned
    about once per function and type: the fallback path does no per-call formatting.
    """
    tp = type(outcome)
    result = _UNRECOGNIZED.get(tp)
    if result is None:
        note = (f"no adapter recognizes a {tp.__module__}.{tp.__qualname__} result; pass "
                "engine=... or register an adapter (docs/adapters.md)")
        result = _UNRECOGNIZED[tp] = unmeasured_result(
            True, extras={"normalization_error": note})
        PREBUILT.add(id(result))
    key = f"unrecognized:{tp.__qualname__}"
    if key not in plan.warned:
        plan.warned.add(key)
        _log.warning("logged-execution: %s returned a %s.%s that no adapter recognizes; the "
                     "record has success=True and extras.normalization_error", plan.qualname,
                     tp.__module__, tp.__qualname__)
    return result
