"""The ``anthropic`` adapter: Anthropic Messages API results, whole or streamed.

Understands:

- a ``Message`` (or ``ParsedMessage``, ``BetaMessage``) an executor returned
  (``client.messages.create(...)``, ``stream.get_final_message()``);
- the events a generator executor yielded: the raw events of ``messages.create(stream=True)``
  or the events of the ``messages.stream(...)`` helper (whose ``message_stop`` carries the
  accumulated message), as :class:`~instrument.adapters.protocol.StreamedItems`. Events of
  several messages in one stream (an agent loop) make one record, usage added up;
- an ``anthropic.Stream`` / ``AsyncStream`` returned unread (``create(stream=True)``), or a
  ``MessageStream`` returned from inside the helper: the adapter is deferred and finishes the
  record when the caller has consumed, closed or dropped the stream (in place: see
  :mod:`instrument.adapters._stainless`). The request is known then, so the record also has
  the model asked for (``request_model``) and the prompt (``input``, the last user text).

Tokens, converted to the record's definition. The API's ``usage.input_tokens`` EXCLUDES the
tokens read from the cache (``cache_read_input_tokens``) and written to it
(``cache_creation_input_tokens``); the record's ``input_tokens`` is the sum of all three, with
``cached_input_tokens`` = the reads and ``cache_write_input_tokens`` = the writes.
``output_tokens`` already includes thinking; ``reasoning_tokens`` is
``output_tokens_details.thinking_tokens`` when the API reports it. In a stream,
``message_start`` has the input counts and ``message_delta`` the final (cumulative) output
count: the latest value of each field counts, never their sum.

Stop reasons: ``end_turn``, ``stop_sequence``, ``tool_use`` (the caller runs the tools) and
``pause_turn`` are successes. ``pause_turn`` is the API pausing a long server-tool turn for
the application to send back at once; nobody is waited for, so it is not ``paused`` (which
means waiting for a human or an approval); ``extras["stop_reason"]`` says it. ``max_tokens``
and ``model_context_window_exceeded`` (the answer was cut off) and ``refusal`` (the model
declined; ``stop_details`` gives the category) are failures:
``ErrorInfo(type=<stop reason>, ...)``.

Also: ``model`` as answered (``claude-sonnet-4-5-20250929`` for an alias), provider
``anthropic``, ``service_tier``, one iteration per message, tool calls (``tool_use``: name and
id, ``success=None`` as the caller runs them; server tools such as web search: success from
their result block, else its error code), the answer text, and in extras the message id, stop
reason, refusal category, server tool request counts, ``inference_geo`` and ``speed``.

The client's own span per API call (``anthropic.messages.create``) is a child of the
execution's; for a returned stream it ends before the record is finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from pydantic import JsonValue

from instrument.adapters._coerce import MAX_NAME, MAX_TEXT, to_count, to_str, truncate
from instrument.adapters._openai import ends
from instrument.adapters._stainless import watch_stream
from instrument.adapters._wrapped import unwrap
from instrument.adapters.protocol import StreamedItems
from instrument.record import ErrorInfo, ExecutionResult, TokenUsage, ToolCall

__all__ = ["ADAPTER", "AnthropicAdapter"]

Done = Callable[[ExecutionResult | BaseException], None]

_PROVIDER: Final = "anthropic"
_MESSAGES: Final = frozenset({"Message", "ParsedMessage", "BetaMessage", "ParsedBetaMessage"})
_EVENT_TYPES: Final = frozenset({
    "message_start", "message_delta", "message_stop", "content_block_start",
    "content_block_delta", "content_block_stop"})
_HELPERS: Final = frozenset({"MessageStream", "AsyncMessageStream", "BetaMessageStream",
                             "BetaAsyncMessageStream"})
#: stop reason -> what the error message says
_FAILED: Final = {
    "max_tokens": "the answer was cut off: max_tokens was reached",
    "model_context_window_exceeded": "the answer was cut off: the context window is full",
    "refusal": "the model declined to answer",
}
_MAX_IDS: Final = 100


def _get(obj: object, name: str) -> Any:
    """``getattr(obj, name, None)`` that never raises (a hostile property is "absent")."""
    try:
        return getattr(obj, name, None)
    except Exception:  # foreign objects must not break normalization
        return None


def _from_anthropic(obj: object) -> bool:
    return type(obj).__module__.startswith("anthropic")


def _is_message(obj: object) -> bool:
    cls = type(obj)
    return cls.__module__.startswith("anthropic.types") and cls.__name__ in _MESSAGES


def _is_event(obj: object) -> bool:
    return _from_anthropic(obj) and _get(obj, "type") in _EVENT_TYPES


def _is_raw_stream(obj: object) -> bool:
    """An ``anthropic.Stream``/``AsyncStream`` of message events (by module and behaviour)."""
    cls = type(obj)
    if not (cls.__module__.startswith("anthropic") and cls.__name__ in ("Stream", "AsyncStream")):
        return False
    return "MessageStartEvent" in repr(getattr(obj, "_cast_to", ""))


def _stream_in(obj: object) -> Any | None:
    """The raw message stream `obj` is, wraps, or (a ``MessageStream``) reads from."""
    cls = type(obj)
    if cls.__module__.startswith("anthropic.lib.streaming") and cls.__name__ in _HELPERS:
        raw = _get(obj, "_raw_stream")
        return raw if _is_raw_stream(raw) else None
    return unwrap(obj, _is_raw_stream)


class AnthropicAdapter:
    """``Message`` objects, yielded stream events, and returned message streams."""

    name = "anthropic"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        try:
            if isinstance(result, StreamedItems):
                return any(_is_event(item) for item in ends(result))
            return _is_message(result) or _stream_in(result) is not None
        except Exception:  # a foreign type whose module or name is not a str: not ours
            return False

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_events(result)
        if _is_message(result):
            return _result([_Msg.of(result)], extras={})
        if _stream_in(result) is not None:
            # Not consumed yet: what is known now. `watch` supplies the real outcome later.
            return ExecutionResult(success=True, provider=_PROVIDER, iterations=1,
                                   extras={"stream": "pending"})
        raise TypeError(f"anthropic cannot normalize {type(result).__qualname__}")

    def watch(self, result: object, done: Done) -> bool:
        stream = _stream_in(result)
        if stream is None:
            return False
        request = _get(_get(stream, "_options"), "json_data")
        request = request if isinstance(request, dict) else {}

        def normalize(items: StreamedItems) -> ExecutionResult:
            return _with_request(_from_events(items), request)

        return watch_stream(result, stream, normalize, done)


# --------------------------------------------------------------------------------------------


class _Msg:
    """One message's facts, from a ``Message`` or accumulated from its stream events."""

    __slots__ = ("blocks", "id", "model", "stop_details", "stop_reason", "texts", "usage")

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.stop_details: object = None
        self.blocks: list[Any] = []
        self.texts: dict[int, list[str]] = {}

    @classmethod
    def of(cls, message: object) -> _Msg:
        msg = cls()
        msg.id = to_str(_get(message, "id"), MAX_NAME)
        msg.model = to_str(_get(message, "model"), MAX_NAME)
        msg.update_usage(_get(message, "usage"))
        msg.stop_reason = to_str(_get(message, "stop_reason"), MAX_NAME)
        msg.stop_details = _get(message, "stop_details")
        content = _get(message, "content")
        msg.blocks = list(content) if isinstance(content, list) else []
        for i, block in enumerate(msg.blocks):
            text = _get(block, "text") if _get(block, "type") == "text" else None
            if isinstance(text, str):
                msg.texts[i] = [text]
        return msg

    def update_usage(self, usage: object) -> None:
        """Fields present in `usage` replace earlier ones: stream counts are cumulative."""
        for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                     "output_tokens", "service_tier", "inference_geo", "speed"):
            value = _get(usage, name)
            if value is not None:
                self.usage[name] = value
        thinking = _get(_get(usage, "output_tokens_details"), "thinking_tokens")
        if thinking is not None:
            self.usage["thinking_tokens"] = thinking
        server = _get(usage, "server_tool_use")
        if server is not None:
            self.usage["server_tool_use"] = server

    def tokens(self) -> TokenUsage | None:
        u = self.usage
        fresh = to_count(u.get("input_tokens"))
        read = to_count(u.get("cache_read_input_tokens"))
        write = to_count(u.get("cache_creation_input_tokens"))
        out = to_count(u.get("output_tokens"))
        inp = None if fresh is None else fresh + (read or 0) + (write or 0)
        tokens = TokenUsage(
            input_tokens=inp, output_tokens=out,
            total_tokens=inp + out if inp is not None and out is not None else None,
            cached_input_tokens=read, cache_write_input_tokens=write,
            reasoning_tokens=to_count(u.get("thinking_tokens")))
        return None if tokens == TokenUsage() else tokens

    def text(self) -> str | None:
        parts = ["".join(self.texts[i]) for i in sorted(self.texts)]
        return truncate("".join(parts), MAX_TEXT) if parts else None


def _from_events(items: StreamedItems) -> ExecutionResult:
    messages: list[_Msg] = []
    current: _Msg | None = None
    events = 0
    for event in items:
        if not _is_event(event):
            continue
        events += 1
        kind = _get(event, "type")
        if kind == "message_start":
            current = _Msg.of(_get(event, "message"))
            current.blocks, current.texts = [], {}
            messages.append(current)
            continue
        if current is None:  # joined midway: what follows still counts
            current = _Msg()
            messages.append(current)
        if kind == "content_block_start":
            current.blocks.append(_get(event, "content_block"))
        elif kind == "content_block_delta":
            delta = _get(event, "delta")
            index = to_count(_get(event, "index"))
            text = _get(delta, "text")
            if _get(delta, "type") == "text_delta" and isinstance(text, str) and index is not None:
                current.texts.setdefault(index, []).append(text)
        elif kind == "content_block_stop":
            whole = _get(event, "content_block")  # the helper's stop event has the whole block
            index = to_count(_get(event, "index"))
            if whole is not None and index is not None and index < len(current.blocks):
                current.blocks[index] = whole
        elif kind == "message_delta":
            delta = _get(event, "delta")
            current.stop_reason = to_str(_get(delta, "stop_reason"), MAX_NAME) \
                or current.stop_reason
            current.stop_details = _get(delta, "stop_details") or current.stop_details
            current.update_usage(_get(event, "usage"))
        elif kind == "message_stop":
            whole = _get(event, "message")  # the helper's stop event has the whole message
            if whole is not None:
                messages[-1] = current = _Msg.of(whole)
    extras: dict[str, JsonValue] = {"stream_events": events}
    if messages and all(m.tokens() is None for m in messages):
        extras["usage_reported"] = False
    return _result(messages, extras=extras)


def _sum(tokens: list[TokenUsage | None]) -> TokenUsage | None:
    """Usage over messages: input/output are None when any message lacks them; the details
    are None only when no message reported them."""
    found = [t for t in tokens if t is not None]
    if not found:
        return None

    def strict(name: str) -> int | None:
        values = [getattr(t, name) for t in found]
        return None if any(v is None for v in values) else sum(values)

    def loose(name: str) -> int | None:
        values = [v for v in (getattr(t, name) for t in found) if v is not None]
        return sum(values) if values else None

    return TokenUsage(input_tokens=strict("input_tokens"), output_tokens=strict("output_tokens"),
                      total_tokens=strict("total_tokens"),
                      cached_input_tokens=loose("cached_input_tokens"),
                      cache_write_input_tokens=loose("cache_write_input_tokens"),
                      reasoning_tokens=loose("reasoning_tokens"))


def _tool_calls(messages: list[_Msg]) -> list[ToolCall]:
    calls: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for msg in messages:
        for block in msg.blocks:
            kind = _get(block, "type")
            if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
                entry: dict[str, Any] = {
                    "name": to_str(_get(block, "name"), MAX_NAME) or "tool",
                    "call_id": to_str(_get(block, "id"), MAX_NAME), "success": None,
                    "error": None}
                calls.append(entry)
                if entry["call_id"]:
                    by_id[entry["call_id"]] = entry
            elif isinstance(kind, str) and kind.endswith("_tool_result"):
                found = by_id.get(to_str(_get(block, "tool_use_id"), MAX_NAME) or "")
                if found is None:
                    continue
                content = _get(block, "content")
                code = _get(content, "error_code")
                failed = _get(block, "is_error") is True or code is not None or str(
                    _get(content, "type") or "").endswith("_error")
                found["success"] = not failed
                found["error"] = (to_str(code, MAX_NAME) or "error") if failed else None
    return [ToolCall(**c) for c in calls]


def _error(msg: _Msg) -> ErrorInfo | None:
    reason = msg.stop_reason
    if reason not in _FAILED:
        return None
    message = _FAILED[reason]
    if reason == "refusal":
        category = to_str(_get(msg.stop_details, "category"), MAX_NAME)
        explanation = to_str(_get(msg.stop_details, "explanation"), MAX_TEXT)
        message += f" ({category})" if category else ""
        message += f": {explanation}" if explanation else ""
    return ErrorInfo(type=reason, message=message)


def _result(messages: list[_Msg], *, extras: dict[str, JsonValue]) -> ExecutionResult:
    last = messages[-1] if messages else None
    if last is not None:
        _put(extras, "message_id", last.id)
        _put(extras, "stop_reason", last.stop_reason)
        if len(messages) > 1:
            extras["message_ids"] = [m.id for m in messages[:_MAX_IDS]]
        category = to_str(_get(last.stop_details, "category"), MAX_NAME)
        if category:
            extras["refusal_category"] = category
        for name in ("inference_geo", "speed"):
            _put(extras, name, last.usage.get(name))
        server = _server_tool_use(messages)
        if server:
            extras["server_tool_use"] = server
    error = _error(last) if last is not None else None
    return ExecutionResult(
        success=error is None,
        error=error,
        tokens=_sum([m.tokens() for m in messages]),
        iterations=len(messages) if messages else None,
        tool_calls=_tool_calls(messages) if messages else None,
        model=last.model if last is not None else None,
        provider=_PROVIDER if messages else None,
        service_tier=to_str(last.usage.get("service_tier"), MAX_NAME) if last else None,
        response=last.text() if last is not None else None,
        extras=extras,
    )


def _server_tool_use(messages: list[_Msg]) -> dict[str, JsonValue]:
    totals: dict[str, JsonValue] = {}
    for msg in messages:
        server = msg.usage.get("server_tool_use")
        for name in ("web_search_requests", "web_fetch_requests"):
            n = to_count(_get(server, name))
            if n:
                previous = totals.get(name)
                totals[name] = n + (previous if isinstance(previous, int) else 0)
    return totals


def _with_request(result: ExecutionResult, request: dict[str, Any]) -> ExecutionResult:
    """What only the request knows: the model asked for, and the prompt."""
    update: dict[str, Any] = {"request_model": to_str(request.get("model"), MAX_NAME)}
    prompt = _last_user_text(request.get("messages"))
    if prompt is not None:
        update["input"] = prompt
    if result.provider is None:
        update["provider"] = _PROVIDER
    return result.model_copy(update=update)


def _last_user_text(messages: object) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return to_str(content, MAX_TEXT)
        texts: list[str] = [
            b["text"] for b in (content if isinstance(content, list) else ())
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
        if texts:
            return to_str("\n".join(texts), MAX_TEXT)
    return None


def _put(extras: dict[str, JsonValue], key: str, value: object) -> None:
    text = to_str(value, MAX_NAME, scalars=False)
    if text:
        extras[key] = text


ADAPTER = AnthropicAdapter()
