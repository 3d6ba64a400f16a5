"""PydanticAI messages read by attribute, without importing PydanticAI: a run's usage, its tool
calls and its prompt.

The ``pydantic_ai`` adapter hands over the messages one run added (``ModelRequest`` /
``ModelResponse``); only metadata is read, never tool arguments or results.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from instrument.adapters._coerce import (
    MAX_ITEMS,
    MAX_NAME,
    MAX_TEXT,
    is_mapping,
    seq,
    to_count,
    to_str,
    truncate,
)
from instrument.record import TokenUsage, ToolCall

__all__ = ["answer", "call", "prompt", "sum_usage", "tool_calls"]

_FAILED_OUTCOMES: Final = {
    "failed": "the tool failed",
    "retried": "the tool asked the model to retry",
    "denied": "the tool call was denied",
    "interrupted": "the run was interrupted before the tool returned",
}
_TOKEN_FIELDS: Final = ("input_tokens", "output_tokens", "total_tokens", "cached_input_tokens",
                        "cache_write_input_tokens", "reasoning_tokens")


def call(obj: object, name: str, *, prop: bool = False) -> Any:
    """``obj.name`` (a property) or ``obj.name()``; None when it is missing or raises."""
    try:
        value = getattr(obj, name, None)
        if prop:
            return value
        return value() if callable(value) else None
    except Exception:  # a result that cannot say (a stream not finished) has nothing there
        return None


def sum_usage(responses: list[object]) -> TokenUsage | None:
    """This run's usage: the responses' own, field by field (None when any lacks it)."""
    if not responses:
        return None
    rows: list[dict[str, int | None]] = []
    for response in responses:
        usage = call(response, "usage", prop=True)
        if usage is None or (to_count(call(usage, "unmeasured_requests", prop=True)) or 0):
            rows.append(dict.fromkeys(_TOKEN_FIELDS))
            continue
        inp = to_count(call(usage, "input_tokens", prop=True))
        out = to_count(call(usage, "output_tokens", prop=True))
        reasoning = to_count(call(usage, "output_reasoning_tokens", prop=True))
        usage_details = call(usage, "details", prop=True)
        if not reasoning and is_mapping(usage_details):
            reasoning = to_count(usage_details.get("reasoning_tokens")) or reasoning
        rows.append({
            "input_tokens": inp, "output_tokens": out,
            "total_tokens": inp + out if inp is not None and out is not None else None,
            "cached_input_tokens": to_count(call(usage, "cache_read_tokens", prop=True)),
            "cache_write_input_tokens": to_count(call(usage, "cache_write_tokens", prop=True)),
            "reasoning_tokens": reasoning,
        })
    summed: dict[str, int | None] = {}
    for key in _TOKEN_FIELDS:
        values = [row[key] for row in rows]
        summed[key] = None if any(v is None for v in values) else sum(v or 0 for v in values)
    if all(v is None for v in summed.values()):
        return None
    return TokenUsage(**summed)


def tool_calls(messages: Sequence[object]) -> list[ToolCall]:
    calls: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for message in messages:
        kind = call(message, "kind", prop=True)
        stamp = call(message, "timestamp", prop=True)
        for part in seq(call(message, "parts", prop=True), MAX_ITEMS * 10) or ():
            part_kind = call(part, "part_kind", prop=True)
            if kind == "response" and part_kind in ("tool-call", "builtin-tool-call",
                                                    "native-tool-call"):
                if call(part, "tool_kind", prop=True) == "output":
                    continue  # the structured-output mechanism, not a tool
                name = to_str(call(part, "tool_name", prop=True), MAX_NAME) or "tool"
                call_id = to_str(call(part, "tool_call_id", prop=True), MAX_NAME)
                entry: dict[str, Any] = {
                    "name": name, "call_id": call_id, "success": None, "error": None,
                    "started_at": stamp if isinstance(stamp, datetime) else None,
                    "duration_ms": None}
                if len(calls) < MAX_ITEMS:
                    calls.append(entry)
                if call_id:
                    by_id[call_id] = entry
            elif part_kind in ("tool-return", "builtin-tool-return", "native-tool-return",
                               "retry-prompt"):
                call_id = to_str(call(part, "tool_call_id", prop=True), MAX_NAME)
                answered = by_id.get(call_id) if call_id else None
                if answered is None:  # asked by an earlier run: approved (deferred), run now
                    ran = to_str(call(part, "tool_name", prop=True), MAX_NAME)
                    if not ran or call(part, "tool_kind", prop=True) == "output":
                        continue
                    answered = {"name": ran, "call_id": call_id, "success": None,
                                "error": None, "started_at": None, "duration_ms": None}
                    if len(calls) < MAX_ITEMS:
                        calls.append(answered)
                answer(answered, part, part_kind)
    return [ToolCall(**c) for c in calls]


def answer(entry: dict[str, Any], part: object, part_kind: object) -> None:
    outcome = "retried" if part_kind == "retry-prompt" else call(part, "outcome", prop=True)
    outcome = outcome if isinstance(outcome, str) else "success"
    entry["success"] = outcome == "success"
    if outcome in _FAILED_OUTCOMES:
        error = _FAILED_OUTCOMES[outcome]
        cause = call(call(part, "retry", prop=True), "cause", prop=True)
        entry["error"] = f"{error} ({cause})" if isinstance(cause, str) else error
    returned = call(part, "timestamp", prop=True)
    started = entry["started_at"]
    if isinstance(returned, datetime) and isinstance(started, datetime):
        try:
            ms = (returned - started).total_seconds() * 1000
        except (TypeError, OverflowError):  # naive vs aware: no duration
            return
        entry["duration_ms"] = ms if ms >= 0 else None


def prompt(messages: Sequence[object]) -> str | None:
    """The user prompt that started the run (its first ``UserPromptPart``)."""
    for message in messages:
        if call(message, "kind", prop=True) != "request":
            continue
        for part in seq(call(message, "parts", prop=True)) or ():
            if call(part, "part_kind", prop=True) != "user-prompt":
                continue
            content = call(part, "content", prop=True)
            if isinstance(content, str):
                return truncate(content, MAX_TEXT)
            texts = [c for c in seq(content) or () if isinstance(c, str)]
            return truncate("".join(texts), MAX_TEXT) if texts else None
    return None
