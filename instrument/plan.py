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
from uuid import UUID

from instrument import budget_check
from instrument.adapters import registry
from instrument.adapters.protocol import Adapter, StreamedItems
from instrument.adapters.registry import UnknownAdapterError, get_adapter
from instrument.binding import (
    ArgumentPlan,
    FieldSpec,
    Literal_,
    _none,
    compile_field,
    compile_value,
)
from instrument.budget import Budget, budgets_from
from instrument.guard import internal_error
from instrument.labels import bounded_metadata, bounded_tags, execution_uuid
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
    tenant_id: FieldSpec = None
    owner_id: FieldSpec = None
    tags: object = None
    metadata: object = None
    budget: object = None
    resumes: object = None


class Plan:
    """Everything about one decorated function that does not change between calls."""

    __slots__ = (
        "adapter", "budgets", "by_keys", "by_type", "capture_content", "engine", "fields",
        "generation", "labels", "name", "no_fields", "no_labels", "qualname", "warned",
        "writers", "writers_checked",
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
            compile_field(args, "tenant_id", opts.tenant_id),
            compile_field(args, "owner_id", opts.owner_id),
        )
        #: nothing to resolve per call (the bare decorator): the call path skips the resolvers
        self.no_fields = all(f is _none for f in self.fields)
        _check_spec("tags", opts.tags, "a sequence of str", lambda v: isinstance(
            v, (list, tuple, set, frozenset)))
        _check_spec("metadata", opts.metadata, "a mapping of str to JSON values",
                    lambda v: isinstance(v, Mapping))
        _check_spec("resumes", opts.resumes, "an execution id (UUID)",
                    lambda v: isinstance(v, UUID))
        resumes = opts.resumes
        if isinstance(resumes, UUID) or (isinstance(resumes, str) and _is_uuid(resumes)):
            resumes = Literal_(str(resumes))  # an execution id itself, not a path
        #: tags, metadata and the execution resumed: getters of non-text values
        self.labels = (
            compile_value(args, "tags", opts.tags, bounded_tags),
            compile_value(args, "metadata", opts.metadata, bounded_metadata),
            compile_value(args, "resumes", resumes, execution_uuid),
        )
        self.no_labels = all(f is _none for f in self.labels)
        #: the budgets checked before each run (None: none, the call path skips the check)
        self.budgets: tuple[Budget, ...] | None = budgets_from(opts.budget, self.qualname)
        if self.budgets is not None:
            budget_check.register(self.budgets)
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


def _check_spec(field: str, spec: object, what: str, is_value: Callable[[object], bool]
                ) -> None:
    """A wrong kind of option is a programming error: say so at decoration time."""
    if spec is None or isinstance(spec, (str, Literal_)) or callable(spec) or is_value(spec):
        return
    raise TypeError(f"{field}= must be {what}, a dotted path into the call's arguments, a "
                    f"callable taking them, or instrument.literal(...); got a "
                    f"{type(spec).__qualname__}")


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


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
