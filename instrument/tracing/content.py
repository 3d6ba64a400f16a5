"""Captured content for spans: redacted, truncated, and still valid JSON.

Only used when content capture is on for spans (``INSTRUMENT_CAPTURE_CONTENT=true|spans`` or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true|SPAN_ONLY|SPAN_AND_EVENT``).

- Response text -> ``gen_ai.output.messages``:
  ``[{"role": "assistant", "parts": [{"type": "text", "content": "..."}]}]``.
- Input (prompt) text -> ``gen_ai.input.messages``:
  ``[{"role": "user", "parts": [{"type": "text", "content": "..."}]}]``.
- Tool-call arguments, when an adapter put them in ``result.extras["tool_arguments"]`` (a list
  aligned with ``result.tool_calls``, or a mapping keyed by ``call_id``) ->
  ``gen_ai.tool.call.arguments`` on the ``execute_tool`` span.

The record arrives masked: the decorator cuts the response and input text and masks them, and
masks the extras (where tool arguments live), once, before any sink sees them
(``instrument.call``). So masking is not repeated here, except for what the record could not
mask: arguments given as a JSON *string* are parsed here, and their keys (``"cookie": ...``)
are masked then. Strings are
shortened (with a marker) until the encoded JSON fits the limit, so the SDK's raw attribute
truncation never cuts a document in half.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from instrument.record import ExecutionResult, ToolCall
from instrument.redact import Redactor

__all__ = ["DEFAULT_MAX_CHARS", "TRUNCATED", "ContentEncoder"]

#: Largest attribute we write by default (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT lowers it).
DEFAULT_MAX_CHARS = 8192
TRUNCATED = "…[truncated]"


class ContentEncoder:
    __slots__ = ("limit", "redactor")

    def __init__(self, redactor: Redactor, attribute_value_limit: int | None = None) -> None:
        self.redactor = redactor
        self.limit = DEFAULT_MAX_CHARS if attribute_value_limit is None else min(
            DEFAULT_MAX_CHARS, attribute_value_limit)

    def output_messages(self, result: ExecutionResult) -> str | None:
        if result.response is None:
            return None
        return self._fit(lambda t: [{"role": "assistant",
                                     "parts": [{"type": "text", "content": t}]}],
                         result.response)  # masked by the decorator already

    def input_messages(self, result: ExecutionResult) -> str | None:
        if result.input is None:
            return None
        return self._fit(lambda t: [{"role": "user", "parts": [{"type": "text", "content": t}]}],
                         result.input)  # masked by the decorator already

    def tool_arguments(self, result: ExecutionResult, call: ToolCall) -> str | None:
        args = _arguments_for(result, call)
        if args is None:
            return None
        return self._encode_value(args)

    def tool_arguments_list(self, result: ExecutionResult, calls: Sequence[ToolCall]
                            ) -> str | None:
        """Arguments of tool calls that get no span of their own, as one JSON array."""
        entries = []
        for call in calls:
            args = _arguments_for(result, call)
            if args is not None:
                entries.append({"name": call.name, "call_id": call.call_id, "arguments": args})
        return self._encode_value(entries) if entries else None

    # ------------------------------------------------------------------------------------

    def _encode_value(self, value: object) -> str | None:
        if isinstance(value, str):  # OpenAI-style pre-serialized arguments: parse, then redact
            text = value
            try:
                value = self.redactor.json(json.loads(text))  # keys are only seen once parsed
            except ValueError:  # not JSON: kept as a JSON string literal (masked as text)
                return self._fit(lambda t: t, text)
        encoded = _dumps(value)
        if len(encoded) <= self.limit:
            return encoded
        # Too long: keep the attribute valid JSON by shortening the serialized form as text.
        return self._fit(lambda t: {"truncated": True, "json": t}, encoded)

    def _fit(self, build: Callable[[str], object], text: str) -> str | None:
        """``json(build(text))``, with `text` shortened (and marked) until it fits the limit."""
        candidate = text
        for _ in range(32):  # bounded; each round removes at least the overflow
            encoded = _dumps(build(candidate))
            if len(encoded) <= self.limit:
                return encoded
            keep = len(candidate) - (len(encoded) - self.limit) - len(TRUNCATED)
            if keep <= 0:
                return None
            candidate = text[:keep] + TRUNCATED
        return None


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _arguments_for(result: ExecutionResult, call: ToolCall) -> object | None:
    source = result.extras.get("tool_arguments")
    if isinstance(source, Mapping):
        return source.get(call.call_id) if call.call_id is not None else None
    if isinstance(source, list) and result.tool_calls:
        for i, c in enumerate(result.tool_calls):
            if c is call:
                return source[i] if i < len(source) else None
    return None
