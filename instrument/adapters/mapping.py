"""The fallback adapter: a plain mapping with the record's own field names.

``{"success": True, "tokens": {"input_tokens": 10}, "iterations": 2, "model": "m"}`` becomes
the same :class:`ExecutionResult`. It is tolerant, because it is what an unknown result falls
back to: a value of the wrong type is coerced when that is unambiguous ("3" -> 3) and dropped
otherwise, with a note in ``extras["normalization_notes"]``. Keys that are not fields are *not*
persisted (they may hold user content, which is only stored with content capture on): their
names are listed in ``extras["ignored_keys"]``; put data to keep under ``"extras"``. A returned
``ExecutionResult`` passes through unchanged, and ``None`` (an executor that returns nothing)
is a success with nothing measured. Anything else raises ``TypeError``, which the decorator
records as a ``normalization_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from pydantic import BaseModel, JsonValue

from instrument.adapters._coerce import (
    MAX_ITEMS,
    MAX_NAME,
    MAX_TEXT,
    Notes,
    absent,
    error_text,
    field,
    is_a,
    is_mapping,
    length,
    seq,
    str_list,
    to_bool,
    to_count,
    to_datetime,
    to_ms,
    to_str,
    type_name,
)
from instrument.adapters._jsonsafe import json_dict
from instrument.record import (
    ErrorInfo,
    ExecutionResult,
    MemoryUsage,
    StepCounts,
    TokenUsage,
    ToolCall,
    WorkflowShape,
)

__all__ = ["ADAPTER", "MappingAdapter"]

_FIELDS: Final = frozenset(ExecutionResult.model_fields)


def _model_counts(raw: object, model: type[BaseModel], where: str, notes: Notes,
                  convert: Callable[[object], object] = to_count) -> dict[str, object] | None:
    """Coerce a sub-object's numeric fields; None (noted) when it is not a mapping."""
    if absent(raw):
        return None
    if not is_mapping(raw):
        notes.add(f"{where}: expected an object, got {type_name(raw)}; dropped")
        return None
    out: dict[str, object] = {}
    for key in model.model_fields:
        value = field(raw, key)
        if absent(value):
            continue
        coerced = convert(value)
        if coerced is None:
            notes.add(f"{where}.{key}: {type_name(value)} is not a valid count; dropped")
        out[key] = coerced
    _unknown(raw, model, where, notes)
    return out


def _unknown(
    raw: Mapping[object, object], model: type[BaseModel], where: str, notes: Notes
) -> None:
    try:
        extra = [k for k in raw if k not in model.model_fields]
    except Exception:  # hostile keys; nothing to report
        return
    if extra:
        names = ", ".join(sorted(str(to_str(k) or type_name(k)) for k in extra[:10]))
        notes.add(f"{where}: unknown keys dropped: {names}")


def _error(raw: object, notes: Notes) -> ErrorInfo | None:
    if absent(raw):
        return None
    if is_a(raw, str):
        return ErrorInfo(type="Error", message=to_str(raw, MAX_TEXT) or "")
    if is_a(raw, BaseException):
        return ErrorInfo(type=type_name(raw), message=error_text(raw) or "")
    message = error_text(raw)
    if message is None:
        notes.add(f"error: {type_name(raw)} has no message; dropped")
        return None
    return ErrorInfo(type=to_str(field(raw, "type", "code")) or "Error", message=message)




def _tool_calls(raw: object, notes: Notes) -> list[ToolCall] | None:
    if absent(raw):
        return None
    calls = seq(raw)
    if calls is None:
        notes.add(f"tool_calls: expected a list, got {type_name(raw)}; dropped")
        return None
    n = length(raw)
    if n is not None and n > MAX_ITEMS:
        notes.add(f"tool_calls: kept the first {MAX_ITEMS} of {n}")
    out: list[ToolCall] = []
    for i, c in enumerate(calls):
        if not is_mapping(c):
            notes.add(f"tool_calls[{i}]: expected an object, got {type_name(c)}; dropped")
            continue
        plugin = to_str(field(c, "plugin"))
        action = to_str(field(c, "action"))
        name = to_str(field(c, "name")) or ".".join(p for p in (plugin, action) if p)
        if not name:
            notes.add(f"tool_calls[{i}]: no name; named 'unknown'")
            name = "unknown"
        err = field(c, "error")
        out.append(ToolCall(
            name=name,
            plugin=plugin,
            action=action,
            call_id=to_str(field(c, "call_id")),
            success=to_bool(field(c, "success")),
            duration_ms=to_ms(field(c, "duration_ms")),
            started_at=to_datetime(field(c, "started_at")),
            error=None if absent(err) else error_text(err, 2_000),
            items_returned=to_count(field(c, "items_returned")),
        ))
    return out


class MappingAdapter:
    """``mapping``: the fallback; a dict shaped like :class:`ExecutionResult`."""

    name = "mapping"
    #: matches() on a plain dict looks only at its keys (see registry.keys_decide)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        # None too: an executor that returns nothing succeeded with nothing measured.
        return result is None or is_a(result, (Mapping, ExecutionResult))

    def normalize(self, result: object) -> ExecutionResult:
        if result is None:
            return ExecutionResult(success=True)
        if is_a(result, ExecutionResult):
            return result
        if not is_mapping(result):
            raise TypeError(
                f"no adapter understands a {type_name(result)} result; return a mapping with "
                "ExecutionResult's field names, or register an adapter for it "
                "(see docs/adapters.md)"
            )
        notes = Notes()
        extras: dict[str, JsonValue] = {}

        explicit = field(result, "extras")
        if not absent(explicit):
            converted = json_dict(explicit)
            if converted is None:
                notes.add(f"extras: expected an object, got {type_name(explicit)}; dropped")
            else:
                extras.update(converted)
        try:
            keys = list(result.keys())[: MAX_ITEMS * 2]
        except Exception:  # a hostile mapping: only the fields reachable by key are used
            keys = []
        ignored: list[JsonValue] = []
        for key in keys:
            if is_a(key, str) and key in _FIELDS:
                continue
            ignored.append(to_str(key, MAX_NAME, scalars=False) or type_name(key))
        if ignored:
            extras["ignored_keys"] = ignored

        error = _error(field(result, "error"), notes)
        raw_success = field(result, "success")
        success = to_bool(raw_success)
        if success is None:
            success = error is None
            notes.add("success: missing or not a boolean; inferred from the error field"
                      if absent(raw_success) else
                      f"success: {type_name(raw_success)} is not a boolean; inferred")

        tokens = _model_counts(field(result, "tokens"), TokenUsage, "tokens", notes)
        steps = _model_counts(field(result, "steps"), StepCounts, "steps", notes)
        workflow = _model_counts(field(result, "workflow"), WorkflowShape, "workflow", notes)
        memory = self._memory(field(result, "memory"), notes)

        scalars: dict[str, object] = {}
        for key, convert in (
            ("iterations", to_count), ("retries", to_count), ("orchestration_ms", to_ms),
            ("model", to_str), ("provider", to_str), ("request_model", to_str),
            ("service_tier", to_str), ("paused", to_bool),
            ("response", lambda v: to_str(v, MAX_TEXT, scalars=False)),
            # the prompt: kept or dropped by the decorator under the content policy, like
            # the response
            ("input", lambda v: to_str(v, MAX_TEXT, scalars=False)),
        ):
            value = field(result, key)
            if absent(value):
                continue
            coerced = convert(value)
            if coerced is None:
                notes.add(f"{key}: {type_name(value)} is not valid here; dropped")
            scalars[key] = coerced
        if scalars.get("paused") is None:  # not a boolean: not paused (the note says why)
            scalars.pop("paused", None)

        return ExecutionResult(
            success=success,
            error=error,
            tokens=TokenUsage(**tokens) if tokens else None,
            tool_calls=_tool_calls(field(result, "tool_calls"), notes),
            memory=memory,
            steps=StepCounts(**steps) if steps else None,
            workflow=WorkflowShape(**workflow) if workflow else None,
            extras=notes.into(extras),
            **scalars,
        )

    @staticmethod
    def _memory(raw: object, notes: Notes) -> MemoryUsage | None:
        if absent(raw):
            return None
        if not is_mapping(raw):
            notes.add(f"memory: expected an object, got {type_name(raw)}; dropped")
            return None
        types = field(raw, "types")
        out = MemoryUsage(
            tokens=to_count(field(raw, "tokens")),
            entry_count=to_count(field(raw, "entry_count")),
            types=None if absent(types) else str_list(types, 64),
        )
        _unknown(raw, MemoryUsage, "memory", notes)
        return out


ADAPTER = MappingAdapter()
