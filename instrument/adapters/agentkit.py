"""The AgentKit function-calling loop's result (``AgentKitExecutionResult``), mapping or object.

Fields: ``success``, ``response``, ``toolCalls`` (``{plugin, action, parameters, result,
success, executionTime?, error?}``), ``tokensUsed`` (``{prompt, completion, total}``),
``executionTime``, ``iterations``, ``model``, ``provider``, ``memoryData`` (``{tokens,
entryCount, types}``), ``error``; snake_case attribute objects are read too.

Tool calls are reduced to metadata; their ``parameters`` and ``result`` never leave this module.
Nothing is defaulted: a missing model stays ``None`` (the origin wrote ``gpt-4o``), a tool call
without ``success`` has ``success=None`` (the origin assumed ``true``).
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import JsonValue

from instrument.adapters._coerce import (
    MAX_ITEMS,
    MAX_NAME,
    MAX_TEXT,
    MISSING,
    Notes,
    absent,
    error_text,
    field,
    has_field,
    is_a,
    is_mapping,
    length,
    seq,
    str_list,
    to_bool,
    to_count,
    to_datetime,
    to_float,
    to_ms,
    to_str,
    type_name,
)
from instrument.record import ErrorInfo, ExecutionResult, MemoryUsage, TokenUsage, ToolCall

__all__ = ["ADAPTER", "AgentKitAdapter", "items_returned"]

#: Keys only an AgentKit result has (the record's own names, ``tool_calls``, are the mapping
#: adapter's, so a bare ``iterations``/``tool_calls`` dict is left to it).
_SIGNATURE: Final = ("toolCalls", "tokensUsed", "memoryData", "tokens_used", "memory_data")
_OBJECT_PAIR: Final = ("iterations", "tool_calls")
_ERROR_CODE: Final = re.compile(r"[A-Z][A-Z0-9_]{2,63}")
_COLLECTIONS: Final = ("emails", "contacts", "events", "items")


def items_returned(call: object) -> int | None:
    """How many items a tool call returned, like the origin's ``sanitizeToolCalls``.

    The first non-zero length among ``result.emails``/``contacts``/``events``/``items`` or of
    ``result`` itself when it is a list; failing those, 1 when there is any result and 0 when it
    is empty/null. ``None`` when the call has no ``result`` field at all (not measured).
    Deviation: a result that *is* an empty list counts 0 (the origin's JavaScript counted ``[]``
    as "any result", 1).
    """
    result = field(call, "result")
    if result is MISSING:
        return None
    if result is None or result is False or (is_a(result, str) and not result):
        return 0
    own = length(result)
    for name in _COLLECTIONS:
        n = length(field(result, name)) if own is None else None
        if n:
            return n
    if own is not None:
        return own
    if is_a(result, (int, float)) and not is_a(result, bool):
        return 0 if to_float(result, nonneg=False) == 0 else 1
    return 1


def _tool_call(raw: object, notes: Notes, index: int) -> ToolCall | None:
    if raw is None or is_a(raw, (str, bytes, int, float, bool, list, tuple)):
        notes.add(f"toolCalls[{index}]: expected an object, got {type_name(raw)}; dropped")
        return None
    plugin = to_str(field(raw, "plugin", "plugin_name", "pluginName"))
    action = to_str(field(raw, "action", "action_name", "actionName"))
    explicit = to_str(field(raw, "name", "tool", "function"))
    name = explicit or ".".join(p for p in (plugin, action) if p) or "unknown"
    raw_error = field(raw, "error")
    return ToolCall(
        name=name,
        plugin=plugin,
        action=action,
        call_id=to_str(field(raw, "call_id", "callId", "id")),
        success=to_bool(field(raw, "success")),
        duration_ms=to_ms(field(raw, "executionTime", "execution_time", "duration_ms")),
        started_at=to_datetime(field(raw, "startedAt", "started_at", "startTime", "timestamp")),
        error=None if absent(raw_error) else error_text(raw_error, 2_000),
        items_returned=items_returned(raw),
    )


def _tokens(raw: object, notes: Notes) -> TokenUsage | None:
    if absent(raw):
        return None
    total_only = to_count(raw)
    if total_only is not None:  # some executors report a bare total
        return TokenUsage(total_tokens=total_only)
    prompt = to_count(field(raw, "prompt", "prompt_tokens", "input", "input_tokens"))
    completion = to_count(field(raw, "completion", "completion_tokens", "output",
                                "output_tokens"))
    total = to_count(field(raw, "total", "total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion  # derived from two measured numbers, not invented
    if prompt is None and completion is None and total is None:
        notes.add(f"tokensUsed: no usable counts in {type_name(raw)}; dropped")
        return None
    return TokenUsage(input_tokens=prompt, output_tokens=completion, total_tokens=total)


def _memory(raw: object, notes: Notes) -> MemoryUsage | None:
    if absent(raw):
        return None
    tokens = to_count(field(raw, "tokens"))
    entries = to_count(field(raw, "entryCount", "entry_count"))
    types = str_list(field(raw, "types"), 64)
    if tokens is None and entries is None and types is None:
        notes.add(f"memoryData: no usable fields in {type_name(raw)}; dropped")
        return None
    return MemoryUsage(tokens=tokens, entry_count=entries, types=types)


def _error(raw: object) -> ErrorInfo | None:
    if absent(raw):
        return None
    message = error_text(raw)
    if message is None:
        return None
    if is_a(raw, BaseException):
        return ErrorInfo(type=type_name(raw), message=message)
    code = to_str(field(raw, "code", "type")) if not is_a(raw, str) else None
    if code is None and _ERROR_CODE.fullmatch(message):
        code = message  # AgentKit's own codes: NO_PLUGINS_CONNECTED, MAX_ITERATIONS_REACHED
    return ErrorInfo(type=code or "AgentKitError", message=message)


class AgentKitAdapter:
    """``agentkit``: the function-calling loop's result."""

    name = "agentkit"
    #: matches() on a plain dict looks only at its keys (see registry.keys_decide)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if is_a(result, (str, bytes, int, float, list, tuple)) or result is None:
            return False
        if is_a(result, ExecutionResult):
            return False
        if any(has_field(result, n) for n in _SIGNATURE):
            return True
        return not is_mapping(result) and all(has_field(result, n) for n in _OBJECT_PAIR)

    def normalize(self, result: object) -> ExecutionResult:
        if result is None or is_a(result, (str, bytes, int, float, list, tuple)):
            raise TypeError(
                f"agentkit adapter needs an AgentKit result (mapping or object), "
                f"got {type_name(result)}"
            )
        notes = Notes()
        extras: dict[str, JsonValue] = {}
        error = _error(field(result, "error"))
        success = to_bool(field(result, "success"))
        if success is None:
            success = error is None
            notes.add("success: missing or not a boolean; inferred from the error field")

        tool_calls: list[ToolCall] | None = None
        raw_calls = field(result, "toolCalls", "tool_calls")
        if not absent(raw_calls):
            calls = seq(raw_calls)
            if calls is None:
                notes.add(f"toolCalls: expected a list, got {type_name(raw_calls)}; dropped")
            else:
                total_calls = length(raw_calls)
                if total_calls is not None and total_calls > MAX_ITEMS:
                    extras["tool_calls_total"] = total_calls
                    notes.add(f"toolCalls: kept the first {MAX_ITEMS} of {total_calls}")
                tool_calls = [
                    tc for i, c in enumerate(calls) if (tc := _tool_call(c, notes, i)) is not None
                ]

        engine_ms = to_ms(field(result, "executionTime", "execution_time"))
        if engine_ms is not None:
            extras["engine_execution_time_ms"] = engine_ms
        ais = to_float(field(result, "ais_score", "aisScore"))
        if ais is not None:
            extras["ais_score"] = ais

        return ExecutionResult(
            success=success,
            error=error,
            tokens=_tokens(field(result, "tokensUsed", "tokens_used"), notes),
            iterations=to_count(field(result, "iterations")),
            tool_calls=tool_calls,
            model=to_str(field(result, "model"), MAX_NAME),
            provider=to_str(field(result, "provider"), MAX_NAME),
            response=to_str(field(result, "response"), MAX_TEXT, scalars=False),
            memory=_memory(field(result, "memoryData", "memory_data"), notes),
            extras=notes.into(extras),
        )


ADAPTER = AgentKitAdapter()
