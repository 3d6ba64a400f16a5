"""LangChain messages read by attribute, without importing LangChain: kind, text, usage, tools.

The ``langgraph`` adapter reads a run out of messages: a graph state's ``messages``, the
updates its nodes returned, the ``(chunk, metadata)`` pairs of ``stream_mode="messages"``, or
the chunks of a chat model's own ``stream()``. Each message becomes a :class:`Msg`, a small
view holding only metadata (never tool arguments or results), and :func:`summarize` turns the
messages one run produced into the record's fields.

Tokens: LangChain's ``usage_metadata`` already follows the record's definition, so nothing is
converted. Its ``input_tokens`` is the sum of every input kind, cache reads
(``input_token_details.cache_read``) and cache writes (``cache_creation``) included (each
provider integration converts an API whose input excludes them, such as Anthropic's), and
``output_tokens`` includes ``output_token_details.reasoning``. They map to ``input_tokens``,
``output_tokens``, ``total_tokens`` (input + output when absent), ``cached_input_tokens``,
``cache_write_input_tokens`` and ``reasoning_tokens``. A run's usage is the sum over its AI
messages; a field any of them lacks is ``None`` (unmeasured), never a partial sum.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import JsonValue

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
from instrument.record import ErrorInfo, TokenUsage, ToolCall

__all__ = ["Msg", "Summary", "is_message", "merge_chunks", "read", "summarize"]

_MODULE: Final = "langchain_core.messages"
#: ``type`` of each LangChain message class (chunks included) -> the kind we use.
_KINDS: Final = {
    "ai": "ai", "AIMessageChunk": "ai", "human": "human", "HumanMessageChunk": "human",
    "tool": "tool", "ToolMessageChunk": "tool", "system": "system",
    "SystemMessageChunk": "system", "function": "tool",
    # OpenAI-style dicts, which a state without the add_messages reducer may hold
    "assistant": "ai", "user": "human",
}
#: Finish reasons that mean the answer is cut short or withheld, per provider spelling.
_TRUNCATED: Final = frozenset({"length", "max_tokens", "MAX_TOKENS", "model_length"})
_BLOCKED: Final = frozenset({"content_filter", "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST",
                             "SPII", "refusal", "RECITATION"})
#: ToolNode's default error text: ``Error: RuntimeError('...')\n Please fix your mistakes.``
_TOOL_ERROR: Final = re.compile(r"Error: ([A-Za-z_][\w.]{0,127})\(")


def is_message(obj: object) -> bool:
    """A LangChain message (any ``langchain_core.messages`` class or a subclass of one)."""
    try:
        cls = type(obj)
        if cls.__module__.startswith(_MODULE):
            return True
        return any(base.__module__.startswith(_MODULE) for base in cls.__mro__[1:])
    except Exception:  # a hostile metaclass: not a message
        return False


@dataclass
class Msg:
    """What a run's record needs from one message; no content but the final text."""

    kind: str
    id: str | None = None
    chunk: bool = False
    text: str | None = None
    usage: dict[str, int | None] | None = None
    #: (name, call id, parsed): the tool calls an AI message asked for
    calls: list[tuple[str, str | None, bool]] = field(default_factory=list)
    #: a tool message: the call it answers, and its status ("success" / "error")
    answers: str | None = None
    status: str | None = None
    tool_error: str | None = None
    model: str | None = None
    provider: str | None = None
    service_tier: str | None = None
    finish_reason: str | None = None


def _get(obj: object, name: str) -> Any:
    """A message attribute (or dict key), None when absent or when reading it raises."""
    try:
        if isinstance(obj, Mapping):
            return obj.get(name)
        return getattr(obj, name, None)
    except Exception:  # a hostile attribute is simply not there
        return None


def read(obj: object) -> Msg | None:
    """The :class:`Msg` view of a LangChain message or an OpenAI-style message dict, else None."""
    if is_message(obj):
        raw_kind = _get(obj, "type")
        chunk = type(obj).__name__.endswith("Chunk")
    elif is_mapping(obj):
        raw_kind = _get(obj, "type") or _get(obj, "role")
        chunk = False
    else:
        return None
    kind = _KINDS.get(raw_kind, "other") if isinstance(raw_kind, str) else "other"
    msg = Msg(kind=kind, id=to_str(_get(obj, "id"), MAX_NAME, scalars=False), chunk=chunk)
    if kind == "ai":
        msg.text = _text(_get(obj, "content"))
        msg.usage = _usage(_get(obj, "usage_metadata"))
        msg.calls = _calls(obj, chunk)
        meta = _get(obj, "response_metadata")
        if is_mapping(meta):
            msg.model = _name(meta.get("model_name")) or _name(meta.get("model"))
            msg.provider = _name(meta.get("model_provider"))
            msg.service_tier = _name(meta.get("service_tier"))
            msg.finish_reason = (_name(meta.get("finish_reason"))
                                 or _name(meta.get("stop_reason")))
    elif kind == "human":
        msg.text = _text(_get(obj, "content"))
    elif kind == "tool":
        msg.answers = to_str(_get(obj, "tool_call_id"), MAX_NAME, scalars=False)
        status = _get(obj, "status")
        msg.status = status if status in ("success", "error") else None
        if msg.status == "error":
            content = _get(obj, "content")
            found = _TOOL_ERROR.match(content) if isinstance(content, str) else None
            # The content is what the model is told; only the exception's type is kept.
            msg.tool_error = (f"the tool raised {found.group(1)}" if found
                              else "the tool message has status 'error'")
    return msg


def _name(value: object) -> str | None:
    return to_str(value, MAX_NAME, scalars=False) or None


def _text(content: object) -> str | None:
    """A message's text: a str, or the text blocks of a content list."""
    if isinstance(content, str):
        return truncate(content, MAX_TEXT) if content else None
    parts: list[str] = []
    for block in seq(content) or ():
        if isinstance(block, str):
            parts.append(block)
        elif is_mapping(block) and _get(block, "type") == "text":
            value = _get(block, "text")
            if isinstance(value, str):
                parts.append(value)
    joined = "".join(parts)
    return truncate(joined, MAX_TEXT) if joined else None


def _usage(meta: object) -> dict[str, int | None] | None:
    if not is_mapping(meta):
        return None
    inp = to_count(_get(meta, "input_tokens"))
    out = to_count(_get(meta, "output_tokens"))
    total = to_count(_get(meta, "total_tokens"))
    if total is None and inp is not None and out is not None:
        total = inp + out
    in_details = _get(meta, "input_token_details")
    out_details = _get(meta, "output_token_details")
    return {
        "input_tokens": inp, "output_tokens": out, "total_tokens": total,
        "cached_input_tokens": to_count(_get(in_details, "cache_read")),
        "cache_write_input_tokens": to_count(_get(in_details, "cache_creation")),
        "reasoning_tokens": to_count(_get(out_details, "reasoning")),
    }


def _calls(obj: object, chunk: bool) -> list[tuple[str, str | None, bool]]:
    """The tool calls an AI message asks for. A chunk names a call only in its first piece."""
    out: list[tuple[str, str | None, bool]] = []
    sources = (("tool_call_chunks", True),) if chunk else (("tool_calls", True),
                                                          ("invalid_tool_calls", False))
    for attr, parsed in sources:
        for call in seq(_get(obj, attr), MAX_ITEMS) or ():
            name = to_str(_get(call, "name"), MAX_NAME, scalars=False)
            if name:
                out.append((name, to_str(_get(call, "id"), MAX_NAME, scalars=False), parsed))
    return out


def merge_chunks(pieces: Iterable[Msg]) -> Msg:
    """One AI message from the chunks of one streamed answer (LangChain adds usage up, chunk by
    chunk: each chunk carries only its own part, so the sum is the answer's usage)."""
    merged = Msg(kind="ai")
    texts: list[str] = []
    usages: list[dict[str, int | None]] = []
    for piece in pieces:
        merged.id = merged.id or piece.id
        if piece.text:
            texts.append(piece.text)
        if piece.usage is not None:
            usages.append(piece.usage)
        merged.calls.extend(piece.calls)
        merged.model = piece.model or merged.model
        merged.provider = piece.provider or merged.provider
        merged.service_tier = piece.service_tier or merged.service_tier
        merged.finish_reason = piece.finish_reason or merged.finish_reason
    merged.text = truncate("".join(texts), MAX_TEXT) if texts else None
    merged.usage = _add(usages, all_present=False) if usages else None
    return merged


def _add(usages: list[dict[str, int | None]], *, all_present: bool = True
         ) -> dict[str, int | None]:
    """Field-wise sums; a field is None when every one lacks it, or (`all_present`) any one."""
    out: dict[str, int | None] = {}
    for key in ("input_tokens", "output_tokens", "total_tokens", "cached_input_tokens",
                "cache_write_input_tokens", "reasoning_tokens"):
        values = [u.get(key) for u in usages]
        present = [v for v in values if v is not None]
        missing = len(present) < len(values)
        out[key] = None if not present or (all_present and missing) else sum(present)
    return out


@dataclass
class Summary:
    """The record's fields for one run's messages."""

    tokens: TokenUsage | None
    iterations: int | None
    tool_calls: list[ToolCall] | None
    model: str | None
    provider: str | None
    service_tier: str | None
    response: str | None
    error: ErrorInfo | None
    extras: dict[str, JsonValue]


def summarize(messages: list[Msg], *, final: bool = True) -> Summary:
    """The record's fields for the messages one run produced, in order.

    Tool calls are matched with their tool messages by call id: status ``error`` is a failed
    call, ``success`` a successful one, and a call nobody answered (yet) has ``success=None``.
    `final`: the last AI message is the run's answer (False for a paused run), so a finish
    reason saying it was cut off (``length``/``max_tokens``) or withheld (a content filter) is
    a failure of the run.
    """
    ai = [m for m in messages if m.kind == "ai"]
    answered = {m.answers: m for m in messages if m.kind == "tool" and m.answers}
    calls: list[ToolCall] = []
    for m in ai:
        for name, call_id, parsed in m.calls:
            if len(calls) >= MAX_ITEMS:
                break
            reply = answered.get(call_id) if call_id else None
            success: bool | None = None
            error: str | None = None
            if not parsed:
                success, error = False, "the model's tool call arguments did not parse"
            elif reply is not None and reply.status is not None:
                success = reply.status == "success"
                error = reply.tool_error
            elif reply is not None:
                success = True  # a tool message without status: ToolNode's success default
            calls.append(ToolCall(name=name, call_id=call_id, success=success, error=error))
    extras: dict[str, JsonValue] = {}
    last = ai[-1] if ai else None
    error_info: ErrorInfo | None = None
    if last is not None and last.finish_reason:
        extras["finish_reason"] = last.finish_reason
        if final and not last.calls:
            error_info = _stopped(last.finish_reason)
    with_usage = [m.usage for m in ai if m.usage is not None]
    if ai and len(with_usage) < len(ai):
        extras["messages_without_usage"] = len(ai) - len(with_usage)
    tokens: TokenUsage | None = None
    if ai and with_usage:
        summed = _add([m.usage or {} for m in ai])
        if any(v is not None for v in summed.values()):
            tokens = TokenUsage(**summed)
    model = next((m.model for m in reversed(ai) if m.model), None)
    provider = next((m.provider for m in reversed(ai) if m.provider), None)
    tier = next((m.service_tier for m in reversed(ai) if m.service_tier), None)
    return Summary(
        tokens=tokens, iterations=len(ai) if ai else None,
        tool_calls=calls if ai else None, model=model, provider=provider, service_tier=tier,
        response=last.text if last is not None else None, error=error_info, extras=extras)


def _stopped(reason: str) -> ErrorInfo | None:
    if reason in _TRUNCATED:
        return ErrorInfo(type="max_tokens", message=(
            f"the model stopped at its output token limit (finish reason {reason!r}); the "
            "answer is cut off. Raise max_tokens or shorten the task."))
    if reason in _BLOCKED:
        return ErrorInfo(type="content_filter", message=(
            f"the provider withheld the answer (finish reason {reason!r})."))
    return None

