"""The ``openai_chat`` adapter: Chat Completions results, whole or streamed.

Understands three shapes an executor can hand over:

- a ``ChatCompletion`` (or ``ParsedChatCompletion``) it returned;
- the ``ChatCompletionChunk`` items a generator executor yielded (the decorator passes them as
  :class:`~instrument.adapters.protocol.StreamedItems`), or the events of the
  ``client.chat.completions.stream()`` helper (its ``chunk`` events carry the chunks); usage
  comes from the final chunk, which the API sends only when the request set
  ``stream_options={"include_usage": True}``;
- an ``openai.Stream`` / ``openai.AsyncStream`` of chunks it returned unread: the adapter is
  deferred and finishes the record when the caller has consumed, closed or dropped the stream
  (see :mod:`instrument.adapters._openai`); the caller gets the identical stream object. The
  same holds for such a stream wrapped by an instrumentation (OpenTelemetry's
  ``ChatStreamWrapper``, OpenInference's wrapt proxy): the record is finished after the
  wrapper's own span ends.

The record has: model (what answered, as the API reported it: often a dated snapshot such as
``gpt-4o-mini-2025-01-01`` for a request of ``gpt-4o-mini``; a completion does not echo the
model asked for, so ``request_model`` stays ``None``), provider ``"openai"``, token usage (input,
output, total, cached input, reasoning), the tool calls the model asked for (function name and
call id; ``success`` is ``None`` because the API does not run them), one iteration (one model
request), the response text (kept only when content capture is on) and, in extras, the
completion id, finish reasons and system fingerprint. A reply cut off by the content filter is
still a successful call; its finish reason says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import JsonValue

from instrument.adapters._openai import (
    count,
    ends,
    openai_stream_in,
    text,
    usage_from,
    watch_stream,
)
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult, ToolCall

__all__ = ["ADAPTER", "OpenAIChatAdapter"]

_PROVIDER = "openai"
_COMPLETION_MODULES = ("openai.types.chat.chat_completion", "openai.types.chat.parsed_chat")
_CHUNK_MODULE = "openai.types.chat.chat_completion_chunk"
#: ``client.chat.completions.stream()`` yields these; its ``chunk`` events wrap the raw chunks.
_HELPER_EVENTS_MODULE = "openai.lib.streaming.chat._events"


def _is_completion(obj: object) -> bool:
    cls = type(obj)
    return cls.__module__.startswith(_COMPLETION_MODULES) and "ChatCompletion" in cls.__name__


def _is_chunk(obj: object) -> bool:
    return type(obj).__module__ == _CHUNK_MODULE


def _as_chunk(obj: object) -> object | None:
    """The raw chunk in a yielded item: a chunk itself, or the stream helper's chunk event."""
    if _is_chunk(obj):
        return obj
    if type(obj).__module__ == _HELPER_EVENTS_MODULE and getattr(obj, "type", None) == "chunk":
        inner = getattr(obj, "chunk", None)
        return inner if _is_chunk(inner) else None
    return None


def _is_chunk_stream(obj: object) -> bool:
    """A chunk stream, bare or inside an instrumentation's wrapper (OpenTelemetry's
    ``ChatStreamWrapper``, OpenInference's proxy), recognized by behaviour."""
    stream = openai_stream_in(obj)
    if stream is None:
        return False
    cast_to = getattr(stream, "_cast_to", None)
    return getattr(cast_to, "__module__", None) == _CHUNK_MODULE


class OpenAIChatAdapter:
    """ChatCompletion objects, yielded chunks, and returned chunk streams."""

    name = "openai_chat"
    #: matches() on a plain dict looks only at its keys (see registry.keys_decide)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_as_chunk(item) is not None for item in ends(result))
        return _is_completion(result) or _is_chunk_stream(result)

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_chunks(result)
        if _is_chunk_stream(result):
            # Not consumed yet: what is known now. `watch` supplies the real outcome later.
            return ExecutionResult(success=True, provider=_PROVIDER, iterations=1,
                                   extras={"stream": "pending"})
        if _is_completion(result):
            return _from_completion(result)
        raise TypeError(f"openai_chat cannot normalize {type(result).__qualname__}")

    def watch(self, result: object,
              done: Callable[[ExecutionResult | BaseException], None]) -> bool:
        if not _is_chunk_stream(result):
            return False
        return watch_stream(result, _from_chunks, done)


def _from_completion(completion: Any) -> ExecutionResult:
    choices = list(getattr(completion, "choices", None) or [])
    tool_calls: list[ToolCall] = []
    finish: list[JsonValue] = []
    response: str | None = None
    for choice in choices:
        finish.append(getattr(choice, "finish_reason", None))
        message = getattr(choice, "message", None)
        if response is None:
            response = text(getattr(message, "content", None))
        for call in getattr(message, "tool_calls", None) or []:
            function = getattr(call, "function", None)
            name = getattr(function, "name", None) or getattr(getattr(call, "custom", None),
                                                              "name", None)
            tool_calls.append(ToolCall(name=str(name or getattr(call, "type", "tool")),
                                       call_id=getattr(call, "id", None)))
    extras: dict[str, JsonValue] = {"finish_reasons": finish}
    _put(extras, "completion_id", getattr(completion, "id", None))
    _put(extras, "system_fingerprint", getattr(completion, "system_fingerprint", None))
    _put(extras, "service_tier", getattr(completion, "service_tier", None))
    if len(choices) > 1:
        extras["choices"] = len(choices)
    return ExecutionResult(
        success=True,
        tokens=usage_from(getattr(completion, "usage", None)),
        iterations=1,
        tool_calls=tool_calls,
        model=text(getattr(completion, "model", None)),
        provider=_PROVIDER,
        response=response,
        extras=extras,
    )


def _from_chunks(items: StreamedItems) -> ExecutionResult:
    model: str | None = None
    completion_id: str | None = None
    fingerprint: str | None = None
    usage: object = None
    parts: list[str] = []
    finish: dict[int, JsonValue] = {}
    calls: dict[tuple[int, int], dict[str, Any]] = {}
    chunks = 0
    for item in items:
        chunk = _as_chunk(item)
        if chunk is None:
            continue
        chunks += 1
        model = model or text(getattr(chunk, "model", None))
        completion_id = completion_id or text(getattr(chunk, "id", None))
        fingerprint = fingerprint or text(getattr(chunk, "system_fingerprint", None))
        chunk_usage = getattr(chunk, "usage", None)
        if chunk_usage is not None:
            usage = chunk_usage
        for choice in getattr(chunk, "choices", None) or []:
            index = count(getattr(choice, "index", 0)) or 0
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if index == 0 and isinstance(content, str):
                parts.append(content)
            for call in getattr(delta, "tool_calls", None) or []:
                key = (index, count(getattr(call, "index", 0)) or 0)
                slot = calls.setdefault(key, {"id": None, "name": None})
                slot["id"] = slot["id"] or getattr(call, "id", None)
                function = getattr(call, "function", None)
                slot["name"] = slot["name"] or getattr(function, "name", None)
            reason = getattr(choice, "finish_reason", None)
            if reason is not None:
                finish[index] = reason
    extras: dict[str, JsonValue] = {
        "finish_reasons": [finish[i] for i in sorted(finish)],
        "stream_chunks": chunks,
    }
    _put(extras, "completion_id", completion_id)
    _put(extras, "system_fingerprint", fingerprint)
    if usage is None and chunks:
        extras["usage_reported"] = False  # the request did not set include_usage
    tool_calls = [ToolCall(name=str(slot["name"] or "tool"), call_id=slot["id"])
                  for _, slot in sorted(calls.items())]
    return ExecutionResult(
        success=True,
        tokens=usage_from(usage),
        iterations=1 if chunks else None,
        tool_calls=tool_calls if chunks else None,
        model=model,
        provider=_PROVIDER,
        response="".join(parts) if parts else None,
        extras=extras,
    )


def _put(extras: dict[str, JsonValue], key: str, value: object) -> None:
    if isinstance(value, str) and value:
        extras[key] = value


ADAPTER = OpenAIChatAdapter()


def conformance_samples() -> list[object]:
    """Results the API really returns, for :func:`instrument.adapters.conformance.check_adapter`.

    Run: ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k openai_chat``.
    """
    from openai.types.chat import ChatCompletionChunk

    from instrument.adapters.conformance import Sample

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any
              ) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate({
            "id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    usage = {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40,
             "prompt_tokens_details": {"cached_tokens": 16},
             "completion_tokens_details": {"reasoning_tokens": 3}}
    text_stream = StreamedItems([
        chunk({"role": "assistant", "content": "Hello"}), chunk({"content": " there"}),
        chunk({}, "stop"),
        ChatCompletionChunk.model_validate({
            "id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": usage}),
    ])
    tool_stream = StreamedItems([
        chunk({"role": "assistant", "tool_calls": [{
            "index": 0, "id": "call_7", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {
            "arguments": "{\"city\": \"Lisbon, Portugal\"}"}}]}),
        chunk({}, "tool_calls"),
    ])
    return [
        Sample(text_stream, unmeasured={"retries", "steps", "memory"}, label="text stream"),
        Sample(tool_stream, unmeasured={"tokens", "retries"}, label="tool stream, no usage"),
    ]
