"""The ``pydantic_ai`` adapter: PydanticAI agent runs, finished or streamed.

Understands:

- ``AgentRunResult`` from ``agent.run`` / ``run_sync``, and the ``AgentRun`` of
  ``agent.iter`` (its ``result`` once it ended; what it got to otherwise);
- ``StreamedRunResult`` / ``StreamedRunResultSync`` from ``run_stream`` / ``run_stream_sync``,
  returned after the stream was read (a stream left unfinished records what it got to, with
  ``extras["complete"] = False``);
- what a generator executor yielded (as :class:`~instrument.adapters.protocol.StreamedItems`):
  the events of ``run_stream_events`` (the final ``AgentRunResultEvent`` holds the run; without
  it, tool calls and text come from the events and usage is unmeasured), or the nodes of
  ``agent.iter`` (their requests and responses rebuild the run).

Usage is this run's own: the sum of the ``RequestUsage`` of the model responses the run added
(``new_messages()``), not ``result.usage``. That ``RunUsage`` includes the usage the run started
with: a ``conversation=`` carried from an earlier run brings that run's usage along, and a
delegate agent given ``usage=ctx.usage`` counts its parent's. When the two differ,
``extras["run_usage"]`` has ``RunUsage``'s totals. Token definition: PydanticAI's matches
ours, so nothing is converted: ``input_tokens`` already includes ``cache_read_tokens`` and
``cache_write_tokens`` (its model classes convert providers whose API excludes them), and
``output_tokens`` includes ``output_reasoning_tokens`` (``details["reasoning_tokens"]`` in
older releases and custom models). A response that reported no usage (``unmeasured_requests``)
makes the token fields ``None``, not a lower bound. PydanticAI's own 0 defaults are kept as
reported.

Also: iterations (the run's model responses), tool calls from ``ToolCallPart`` matched with
their ``ToolReturnPart`` by call id (``outcome`` ``success``; ``failed``, ``retried`` (the tool
raised ``ModelRetry``), ``denied`` and ``interrupted`` are failures, as is a deprecated
``RetryPromptPart``), each with ``started_at`` (when the model response asking for it arrived)
and ``duration_ms`` (from then to the tool's return); output tools (``tool_kind == "output"``,
the structured-output mechanism) are not tool calls. Model: ``model_name`` of the last response
(what answered); ``request_model``: its ``model_id`` (what the agent asked for, without the
``provider:`` prefix); provider: ``provider_name``, else that prefix. An output of
``DeferredToolRequests`` (tools awaiting approval or external execution) is a ``paused`` run.
A final response cut off (``finish_reason`` ``length``) or filtered (``content_filter``) is a
failure. Exceptions (``UsageLimitExceeded``, ``UnexpectedModelBehavior``, a tool's own error)
are recorded by the decorator as failed executions; :meth:`PydanticAIAdapter.normalize_error`
adds the tokens and tool calls PydanticAI attached to them (``exc.conversation``).

Nothing here imports ``pydantic_ai`` until an object from that package is seen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    type_name,
)
from instrument.adapters._openai import ends
from instrument.adapters._pydantic_messages import answer, call, prompt, sum_usage, tool_calls
from instrument.adapters.protocol import StreamedItems
from instrument.record import ErrorInfo, ExecutionResult, TokenUsage, ToolCall

__all__ = ["ADAPTER", "PydanticAIAdapter"]

_RESULTS: Final = frozenset({"AgentRunResult", "StreamedRunResult", "StreamedRunResultSync",
                             "AgentRun"})


def _ours(obj: object) -> bool:
    try:
        return type(obj).__module__.startswith(("pydantic_ai", "pydantic_graph"))
    except Exception:  # a hostile metaclass: not ours
        return False


def _kind(obj: object) -> str | None:
    """The PydanticAI class a result is (or derives from), by name, else None."""
    if not _ours(obj):
        return None
    return next((base.__name__ for base in type(obj).__mro__ if base.__name__ in _RESULTS), None)


def _is_item(obj: object) -> bool:
    """A streamed event or an ``iter`` node."""
    if not _ours(obj):
        return False
    name = type(obj).__name__
    return name.endswith(("Event", "Node")) or name == "End"


class PydanticAIAdapter:
    """``pydantic_ai``: run results, streamed results, run events and ``iter`` nodes."""

    name = "pydantic_ai"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_is_item(item) for item in ends(result))
        return _kind(result) is not None

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_items(result)
        kind = _kind(result)
        if kind == "AgentRunResult":
            return _from_run(result, {})
        if kind in ("StreamedRunResult", "StreamedRunResultSync"):
            return _from_streamed(result)
        if kind == "AgentRun":
            finished = call(result, "result", prop=True)
            if finished is not None:
                return _from_run(finished, {"iterated": True})
            return _partial(result, {"iterated": True, "complete": False})
        raise TypeError(f"pydantic_ai cannot normalize a {type_name(result)}; it reads "
                        "AgentRunResult, StreamedRunResult, AgentRun and run events")

    def normalize_error(self, exc: BaseException) -> ExecutionResult | None:
        """What a run that raised had done: PydanticAI attaches the run's conversation to its
        ``AgentRunError`` exceptions (``exc.conversation``), with the messages it got to."""
        if not _ours(exc):
            return None
        conversation = call(exc, "conversation", prop=True)
        if conversation is None:
            return None
        messages = list(seq(call(conversation, "messages", prop=True), 100_000) or ())
        start = to_count(call(conversation, "new_message_index", prop=True))
        if start is not None:
            messages = messages[start:]
        elif messages:  # this run's messages: those stamped with the last one's run id
            run_id = call(messages[-1], "run_id", prop=True)
            if isinstance(run_id, str):
                messages = [m for m in messages if call(m, "run_id", prop=True) == run_id]
        return _build(messages, output=None, run_usage=None,
                      extras={"recovered_from": type_name(exc)})


# --------------------------------------------------------------------------------------------


def _usage_of(obj: object) -> Any:
    """``result.usage``: a property in 2.x (whose ``RunUsage`` is still callable, deprecated),
    a method in 1.x."""
    value = call(obj, "usage", prop=True)
    if callable(value) and not hasattr(value, "input_tokens"):
        try:
            return value()
        except Exception:  # a usage we cannot read is unmeasured
            return None
    return value


def _from_run(result: object, extras: dict[str, JsonValue]) -> ExecutionResult:
    messages = list(seq(call(result, "new_messages"), 100_000) or ())
    extras = dict(extras)
    for key in ("run_id", "conversation_id"):
        value = to_str(call(result, key, prop=True), MAX_NAME, scalars=False)
        if value:
            extras[key] = value
    return _build(messages, output=call(result, "output", prop=True),
                  run_usage=_usage_of(result), extras=extras)


def _from_streamed(result: object) -> ExecutionResult:
    extras: dict[str, JsonValue] = {"streamed": True}
    complete = call(result, "is_complete", prop=True) is True
    if complete:
        # The sync wrapper has no `result`: its async StreamedRunResult settles the run.
        inner = call(result, "_streamed_run_result", prop=True) or result
        settled = call(inner, "result", prop=True)  # raises (None) if the run stopped early
        if settled is not None:
            return _from_run(settled, extras)
    return _partial(result, {**extras, "complete": False}, in_flight=not complete)


def _partial(result: object, extras: dict[str, JsonValue], *, in_flight: bool = False
             ) -> ExecutionResult:
    """A run that did not finish: its messages so far, and no output. With `in_flight`, the
    response being streamed (read so far, with its usage so far), which the run has not
    added to its messages yet, is counted too."""
    messages = list(seq(call(result, "new_messages"), 100_000) or ())
    current = call(result, "response", prop=True) if in_flight else None
    if (call(current, "kind", prop=True) == "response"
            and not any(m is current for m in messages)):
        messages.append(current)
    return _build(messages, output=None, run_usage=_usage_of(result), extras=extras)


def _build(messages: Sequence[object], *, output: object, run_usage: object,
           extras: dict[str, JsonValue]) -> ExecutionResult:
    responses = [m for m in messages if call(m, "kind", prop=True) == "response"]
    tokens = sum_usage(responses)
    extras = dict(extras)
    _note_run_usage(extras, run_usage, tokens, len(responses))
    last = responses[-1] if responses else None
    paused = type(output).__name__ == "DeferredToolRequests" and _ours(output)
    if paused:
        extras["deferred_approvals"] = len(seq(call(output, "approvals", prop=True)) or ())
        extras["deferred_calls"] = len(seq(call(output, "calls", prop=True)) or ())
    elif output is not None and not isinstance(output, str):
        extras["output_type"] = type_name(output)
    error: ErrorInfo | None = None
    finish = to_str(call(last, "finish_reason", prop=True), MAX_NAME, scalars=False)
    if finish:
        extras["finish_reason"] = finish
        if not paused and finish == "length":
            error = ErrorInfo(type="max_tokens", message=(
                "the model stopped at its output token limit (finish reason 'length'); the "
                "answer is cut off. Raise max_tokens in the model settings."))
        elif not paused and finish == "content_filter":
            error = ErrorInfo(type="content_filter", message=(
                "the provider withheld the answer (finish reason 'content_filter')."))
    model_id = to_str(call(last, "model_id", prop=True), MAX_NAME, scalars=False)
    prefix, colon, asked = (model_id or "").partition(":")
    if not colon:  # no "provider:" prefix: the id is the model
        prefix, asked = "", prefix
    details = call(last, "provider_details", prop=True)
    tier = details.get("service_tier") if is_mapping(details) else None
    return ExecutionResult(
        success=error is None,
        error=error,
        tokens=tokens,
        iterations=len(responses) if responses else None,
        tool_calls=tool_calls(messages) if responses else None,
        model=to_str(call(last, "model_name", prop=True), MAX_NAME, scalars=False),
        request_model=asked or None,
        provider=(to_str(call(last, "provider_name", prop=True), MAX_NAME, scalars=False)
                  or prefix.rpartition("/")[2] or None),
        service_tier=to_str(tier, MAX_NAME, scalars=False),
        response=None if paused else _output_text(output),
        input=prompt(messages),
        paused=paused,
        extras=extras,
    )


def _note_run_usage(extras: dict[str, JsonValue], run_usage: object, tokens: TokenUsage | None,
                    responses: int) -> None:
    """``RunUsage``'s requests and tool calls, and its token totals when they are not this
    run's own (a carried conversation, a shared ``usage=``)."""
    if run_usage is None:
        return
    requests = to_count(call(run_usage, "requests", prop=True))
    if requests is not None:
        extras["requests"] = requests
    inp = to_count(call(run_usage, "input_tokens", prop=True))
    out = to_count(call(run_usage, "output_tokens", prop=True))
    own = (tokens.input_tokens, tokens.output_tokens) if tokens is not None else (None, None)
    if (inp, out) != own or (requests is not None and requests != responses):
        extras["run_usage"] = {"requests": requests, "input_tokens": inp, "output_tokens": out,
                               "tool_calls": to_count(call(run_usage, "tool_calls", prop=True))}


def _output_text(output: object) -> str | None:
    if output is None:
        return None
    if isinstance(output, str):
        return truncate(output, MAX_TEXT)
    dump = getattr(output, "model_dump_json", None)
    try:
        if callable(dump):
            return truncate(str(dump()), MAX_TEXT)
        return truncate(json.dumps(output, default=str), MAX_TEXT)
    except Exception:  # an output that cannot serialize is still a result
        return None


# --------------------------------------------------------------------------------------------
# Yielded events and iter nodes
# --------------------------------------------------------------------------------------------


def _from_items(items: StreamedItems) -> ExecutionResult:
    messages: list[object] = []
    text: list[str] = []
    calls: list[object] = []
    returns: dict[str, object] = {}
    output: object = None
    for item in items:
        if not _is_item(item):
            continue
        name = type(item).__name__
        if name == "AgentRunResultEvent":
            run = call(item, "result", prop=True)
            if run is not None:
                return _from_run(run, {"streamed": True})
        elif name == "ModelRequestNode":
            messages.append(call(item, "request", prop=True))
        elif name == "CallToolsNode":
            messages.append(call(item, "model_response", prop=True))
        elif name == "End":
            output = call(call(item, "data", prop=True), "output", prop=True)
        elif name == "FunctionToolCallEvent":
            calls.append(call(item, "part", prop=True))
        elif name == "FunctionToolResultEvent":
            part = call(item, "part", prop=True) or call(item, "result", prop=True)
            call_id = to_str(call(part, "tool_call_id", prop=True), MAX_NAME)
            if call_id:
                returns[call_id] = part
        elif name in ("PartStartEvent", "PartDeltaEvent"):
            if name == "PartStartEvent":
                piece = call(item, "part", prop=True)
                kind, attr = call(piece, "part_kind", prop=True), "content"
            else:
                piece = call(item, "delta", prop=True)
                kind, attr = call(piece, "part_delta_kind", prop=True), "content_delta"
            value = call(piece, attr, prop=True)
            if kind == "text" and isinstance(value, str):
                text.append(value)
    if messages:
        return _build([m for m in messages if m is not None], output=output, run_usage=None,
                      extras={"iterated": True})
    return _from_events(calls, returns, text)


def _from_events(calls: list[object], returns: dict[str, object], text: list[str]
                 ) -> ExecutionResult:
    """A run streamed without its final event: tool calls and text; usage unmeasured."""
    entries: list[dict[str, Any]] = []
    for part in calls[:MAX_ITEMS]:
        call_id = to_str(call(part, "tool_call_id", prop=True), MAX_NAME)
        entry = {"name": to_str(call(part, "tool_name", prop=True), MAX_NAME) or "tool",
                 "call_id": call_id, "success": None, "error": None, "started_at": None,
                 "duration_ms": None}
        reply = returns.get(call_id) if call_id else None
        if reply is not None:
            answer(entry, reply, call(reply, "part_kind", prop=True))
        entries.append(entry)
    joined = "".join(text)
    return ExecutionResult(
        success=True, tool_calls=[ToolCall(**e) for e in entries],
        response=truncate(joined, MAX_TEXT) if joined else None,
        extras={"streamed": True, "complete": False})


ADAPTER = PydanticAIAdapter()


def conformance_samples() -> list[object]:
    """Real runs with PydanticAI's ``FunctionModel`` (exact usage, a tool that retries, one
    that works) and ``TestModel`` (a tool awaiting approval: paused), offline, for
    :func:`instrument.adapters.conformance.check_adapter`. Run:
    ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k pydantic_ai``.
    """
    from pydantic_ai import Agent, DeferredToolRequests, ModelRetry
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.models.test import TestModel
    from pydantic_ai.usage import RequestUsage

    from instrument.adapters.conformance import Sample

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(1 for m in messages if isinstance(m, ModelResponse))
        usage = RequestUsage(input_tokens=120, output_tokens=30, cache_read_tokens=64,
                             output_reasoning_tokens=12)
        if turn == 0:
            return ModelResponse(parts=[
                ToolCallPart("lookup_order", {"order_id": "A-1001"}, tool_call_id="call_1"),
                ToolCallPart("cancel_order", {"order_id": "A-1001"}, tool_call_id="call_2"),
            ], usage=usage, model_name="gpt-4.1-mini-2025-04-14")
        return ModelResponse(parts=[TextPart("Your order has shipped.")], usage=usage,
                             model_name="gpt-4.1-mini-2025-04-14")

    agent = Agent(FunctionModel(script, model_name="gpt-4.1-mini"))

    @agent.tool_plain
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: shipped to 221B Baker Street"

    @agent.tool_plain
    def cancel_order(order_id: str) -> str:
        """Cancel an order."""
        raise ModelRetry(f"order {order_id} is locked by the warehouse")

    approvals = Agent(TestModel(), output_type=[str, DeferredToolRequests])

    @approvals.tool_plain(requires_approval=True)
    def send_email(to: str) -> str:
        """Send an email."""
        return f"sent to {to}"

    return [
        Sample(agent.run_sync("Where is order A-1001?"), unmeasured={"retries", "steps"},
               label="FunctionModel run"),
        Sample(approvals.run_sync("Email Ana"), unmeasured={"retries", "response"},
               label="paused for approval"),
    ]
