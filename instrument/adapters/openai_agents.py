"""The ``openai_agents`` adapter: OpenAI Agents SDK runs, finished or streamed.

Understands:

- ``RunResult`` from ``Runner.run`` / ``Runner.run_sync``;
- ``RunResultStreaming`` from ``Runner.run_streamed``, returned while the run is still going.
  The adapter is deferred: :meth:`OpenAIAgentsAdapter.watch` adds a done-callback to the run's
  background task (see :mod:`instrument.adapters._agents_watch`), so the record is finished
  when the run ends, whether the caller consumed ``stream_events()`` to the end, stopped
  halfway, cancelled it (``result.cancel()``) or the event loop shut down. If the task is
  destroyed without finishing, a ``weakref.finalize`` on the result writes what was known. The
  caller gets the identical object; nothing on it is replaced.
- the ``StreamEvent`` items a generator executor yielded from ``stream_events()`` (as
  :class:`~instrument.adapters.protocol.StreamedItems`).

Normalized fields: the final output (``response``; a non-string output is JSON), the last agent
and the agents that took part (extras), usage summed over the run's model requests (input,
output, total, cached input, reasoning) with the per-request breakdown in
``extras["request_usage"]``, tool calls from the run items (name, call id, and success: a call
with an output succeeded, unless the output is the SDK's default tool-failure message), the
handoffs (extras), iterations (the number of model responses), and the model and provider of
the last agent when its ``model`` names them (a run that relies on the SDK default or a
``RunConfig`` model reports ``None``, "not measured"). That configured model is what was
asked (``request_model``); what answered (``model``) is the ``Response.model`` of the last
model response when the run's raw events carry it (yielded stream events), else ``None``
(not measured): a ``RunResult``'s ``ModelResponse`` does not say which model answered, and
the configured name is not an answer (prices fall back to it; see docs/accounting.md).

Failures the SDK raises from ``Runner.run`` (``MaxTurnsExceeded``,
``InputGuardrailTripwireTriggered``, ``OutputGuardrailTripwireTriggered``, model errors) are
recorded by the decorator as failed executions under those class names. For a streamed run the
same failures end the background task or are detected afterwards (max turns, tripwires), and
``watch`` reports them as that exception, so the record is failed with the same type name.

Nothing here imports ``agents`` until an object from that package is seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import JsonValue

from instrument.adapters._agents_watch import watch_streamed_run
from instrument.adapters._openai import count, ends, text, usage_from
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult, TokenUsage, ToolCall

__all__ = ["ADAPTER", "OpenAIAgentsAdapter"]

Done = Callable[[ExecutionResult | BaseException], None]

_RESULT_CLASSES = ("RunResult", "RunResultStreaming")
_EVENT_MODULE = "agents.stream_events"
#: What the SDK's default ``failure_error_function`` returns to the model when a tool raises.
_DEFAULT_TOOL_FAILURE = "An error occurred while running the tool. Please try again."


def _is_run_result(obj: object) -> bool:
    cls = type(obj)
    if not cls.__module__.startswith("agents"):
        return False
    return any(base.__name__ in _RESULT_CLASSES and base.__module__ == "agents.result"
               for base in cls.__mro__)


def _is_streaming(obj: object) -> bool:
    return _is_run_result(obj) and any(
        base.__name__ == "RunResultStreaming" for base in type(obj).__mro__)


def _is_event(obj: object) -> bool:
    return type(obj).__module__ == _EVENT_MODULE


class OpenAIAgentsAdapter:
    """``RunResult``, ``RunResultStreaming`` and yielded ``StreamEvent`` items."""

    name = "openai_agents"
    #: matches() on a plain dict looks only at its keys (see registry.keys_decide)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_is_event(item) for item in ends(result))
        return _is_run_result(result)

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_events(result)
        if _is_run_result(result):
            return _from_result(result)
        raise TypeError(f"openai_agents cannot normalize {type(result).__qualname__}")

    def normalize_error(self, exc: BaseException) -> ExecutionResult | None:
        """What a run that raised (MaxTurnsExceeded, a guardrail tripwire, a model error) had
        measured: the SDK attaches it as ``exc.run_data`` (usage, items, last agent). The
        decorator sets success, the error and drops the response."""
        if not type(exc).__module__.startswith("agents"):
            return None
        data = getattr(exc, "run_data", None)
        return _from_result(data) if data is not None else None

    def watch(self, result: object, done: Done) -> bool:
        if not _is_streaming(result):
            return False
        return watch_streamed_run(result, done, _from_result,
                                  lambda usage: _usage(usage, []))


# --------------------------------------------------------------------------------------------


def _from_result(result: Any) -> ExecutionResult:
    raw_responses = list(getattr(result, "raw_responses", None) or [])
    items = list(getattr(result, "new_items", None) or [])
    usage = getattr(getattr(result, "context_wrapper", None), "usage", None)
    last_agent = _last_agent(result)
    tool_calls, handoffs, agents, last_message = _read_items(items)
    extras: dict[str, JsonValue] = {}
    if last_agent is not None:
        extras["last_agent"] = text(getattr(last_agent, "name", None), 256)
    if agents:
        extras["agents"] = list(agents)
    if handoffs:
        extras["handoffs"] = handoffs
    if raw_responses:
        _put_request_usage(extras, raw_responses)
    requests = count(getattr(usage, "requests", None))
    if requests is not None:
        extras["requests"] = requests
    interruptions = getattr(result, "interruptions", None)
    if interruptions:
        extras["interruptions"] = len(interruptions)
    if _is_streaming(result):
        extras["streamed"] = True
        if not getattr(result, "is_complete", True):
            extras["complete"] = False
    final = getattr(result, "final_output", None)
    response = _output_text(final)
    if final is not None and not isinstance(final, str):
        extras["final_output_type"] = type(final).__qualname__
    if response is None:
        response = last_message
    model, provider = _model_of(last_agent)
    return ExecutionResult(
        success=True,
        tokens=_usage(usage, raw_responses),
        iterations=len(raw_responses),
        tool_calls=tool_calls,
        model=None,  # a ModelResponse does not say which model answered: unmeasured
        request_model=model,
        provider=provider,
        response=response,
        extras=extras,
    )


def _last_agent(result: Any) -> Any:
    try:
        return result.last_agent
    except Exception:  # the SDK raises once the agent reference was released
        return None


def _usage(usage: object, raw_responses: list[Any]) -> TokenUsage | None:
    """The run's aggregate usage, else the sum over its model responses.

    All-zero usage means no provider reported any (every real request has input tokens), so it
    is ``None`` ("not measured"), not zero.
    """
    for tokens in (usage_from(usage), _sum_usage(raw_responses)):
        if tokens is not None and (tokens.input_tokens or tokens.output_tokens
                                   or tokens.total_tokens):
            return tokens
    return None


def _sum_usage(responses: list[Any]) -> TokenUsage | None:
    """Usage added up over model responses; a field any response lacks stays None."""
    found = [u for u in (usage_from(getattr(r, "usage", None)) for r in responses)
             if u is not None]
    if not found:
        return None

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in found]
        return None if any(v is None for v in values) else sum(values)

    return TokenUsage(input_tokens=total("input_tokens"), output_tokens=total("output_tokens"),
                      total_tokens=total("total_tokens"),
                      cached_input_tokens=total("cached_input_tokens"),
                      reasoning_tokens=total("reasoning_tokens"))


#: Per-request usage entries kept in extras; a longer run keeps the first ones and says so.
_MAX_REQUEST_ENTRIES = 100


def _put_request_usage(extras: dict[str, JsonValue], responses: list[Any]) -> None:
    entries: list[JsonValue] = [_request_usage(r) for r in responses[:_MAX_REQUEST_ENTRIES]]
    extras["request_usage"] = entries
    if len(responses) > _MAX_REQUEST_ENTRIES:
        extras["request_usage_truncated"] = len(responses)


class _UsageOf:
    """A Responses ``Response`` seen as a model response (its usage and id)."""

    __slots__ = ("response_id", "usage")

    def __init__(self, response: Any) -> None:
        self.usage = getattr(response, "usage", None)
        self.response_id = getattr(response, "id", None)


def _request_usage(response: Any) -> dict[str, JsonValue]:
    tokens = usage_from(getattr(response, "usage", None)) or TokenUsage()
    entry: dict[str, JsonValue] = {
        "input": tokens.input_tokens, "output": tokens.output_tokens,
        "total": tokens.total_tokens, "cached": tokens.cached_input_tokens,
        "reasoning": tokens.reasoning_tokens,
    }
    rid = text(getattr(response, "response_id", None), 256)
    if rid:
        entry["response_id"] = rid
    return entry


def _read_items(items: Iterable[Any]
                ) -> tuple[list[ToolCall], list[JsonValue], list[str], str | None]:
    """Tool calls, handoffs, agent names (in order of appearance) and the last message text."""
    calls: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    handoffs: list[JsonValue] = []
    agents: list[str] = []
    last_message: str | None = None
    for item in items:
        kind = getattr(item, "type", None)
        agent_name = text(getattr(_safe_agent(item), "name", None), 256)
        if agent_name and agent_name not in agents:
            agents.append(agent_name)
        if kind == "tool_call_item":
            raw = getattr(item, "raw_item", None)
            raw_type = raw.get("type") if isinstance(raw, dict) else getattr(raw, "type", None)
            name = getattr(item, "tool_name", None) or (
                raw_type[:-5] if isinstance(raw_type, str) and raw_type.endswith("_call")
                else raw_type)
            call_id = getattr(item, "call_id", None)
            entry: dict[str, Any] = {"name": str(name or "tool"), "call_id": call_id,
                                     "success": None, "error": None}
            status = raw.get("status") if isinstance(raw, dict) else getattr(raw, "status", None)
            if raw_type != "function_call" and status == "completed":
                entry["success"] = True  # a hosted tool the API ran
            elif status == "failed":
                entry["success"] = False
            calls.append(entry)
            if isinstance(call_id, str):
                by_id[call_id] = entry
        elif kind == "tool_call_output_item":
            call_id = getattr(item, "call_id", None)
            called = by_id.get(call_id) if isinstance(call_id, str) else None
            if called is not None:
                failed = getattr(item, "output", None) == _DEFAULT_TOOL_FAILURE
                called["success"] = not failed
                if failed:
                    called["error"] = "tool raised; the SDK sent its default failure message"
        elif kind == "handoff_output_item":
            source = text(getattr(_safe(item, "source_agent"), "name", None), 256)
            target = text(getattr(_safe(item, "target_agent"), "name", None), 256)
            handoffs.append({"from": source, "to": target})
            if target and target not in agents:
                agents.append(target)
        elif kind == "message_output_item":
            last_message = _message_text(getattr(item, "raw_item", None)) or last_message
    tool_calls = [ToolCall(name=c["name"], call_id=c["call_id"], success=c["success"],
                           error=c["error"]) for c in calls]
    return tool_calls, handoffs, agents, last_message


def _safe_agent(item: Any) -> Any:
    return _safe(item, "agent")


def _safe(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # released weak references and similar must not break normalization
        return None


def _message_text(raw: Any) -> str | None:
    parts: list[str] = []
    for content in getattr(raw, "content", None) or []:
        if getattr(content, "type", None) == "output_text":
            value = getattr(content, "text", None)
            if isinstance(value, str):
                parts.append(value)
    return "".join(parts) if parts else None


def _output_text(final: object) -> str | None:
    if final is None:
        return None
    if isinstance(final, str):
        return text(final)
    dump = getattr(final, "model_dump_json", None)
    if callable(dump):
        try:
            return text(dump())
        except Exception:  # an output that cannot serialize is still a result
            return None
    try:
        return text(json.dumps(final, default=str))
    except (TypeError, ValueError):
        return None


def _model_of(agent: Any) -> tuple[str | None, str | None]:
    model = getattr(agent, "model", None) if agent is not None else None
    if isinstance(model, str) and model:
        if model.startswith("litellm/"):
            rest = model[len("litellm/"):]
            routed = rest.partition("/")[0]
            return model, routed or "litellm"
        if "/" in model:  # "prefix/model" routes through a MultiProvider prefix
            return model, model.split("/", 1)[0]
        return model, "openai"
    if model is None:
        return None, None
    name = getattr(model, "model", None)
    module = type(model).__module__
    provider: str | None = None
    if module.startswith("agents.models.openai"):
        provider = "openai"
    elif "litellm" in module:
        provider = "litellm"
    else:
        declared = getattr(model, "provider", None)
        provider = declared if isinstance(declared, str) else None
    return (name if isinstance(name, str) and name else None), provider


# --------------------------------------------------------------------------------------------
# Yielded stream events
# --------------------------------------------------------------------------------------------


def _from_events(events: StreamedItems) -> ExecutionResult:
    items: list[Any] = []
    responses: list[Any] = []
    raw_seen = False
    last_agent: Any = None
    for event in events:
        if not _is_event(event):
            continue
        kind = getattr(event, "type", None)
        if kind == "run_item_stream_event":
            items.append(getattr(event, "item", None))
        elif kind == "agent_updated_stream_event":
            last_agent = getattr(event, "new_agent", None)
        elif kind == "raw_response_event":
            raw_seen = True
            data = getattr(event, "data", None)
            if getattr(data, "type", None) in ("response.completed", "response.incomplete",
                                                "response.failed"):
                responses.append(getattr(data, "response", None))
    tool_calls, handoffs, agents, last_message = _read_items(items)
    tokens = _sum_usage(responses)
    extras: dict[str, JsonValue] = {"streamed": True}
    if last_agent is not None:
        extras["last_agent"] = text(getattr(last_agent, "name", None), 256)
    if agents:
        extras["agents"] = list(agents)
    if handoffs:
        extras["handoffs"] = handoffs
    if responses:
        _put_request_usage(extras, [_UsageOf(r) for r in responses])
    models = [m for m in (text(getattr(r, "model", None), 256) for r in responses) if m]
    model, provider = _model_of(last_agent)
    return ExecutionResult(
        success=True,
        tokens=tokens,
        iterations=len(responses) if raw_seen else None,  # raw events filtered out: unknown
        tool_calls=tool_calls,
        model=models[-1] if models else model,
        request_model=model,
        provider=provider,
        response=last_message,
        extras=extras,
    )


ADAPTER = OpenAIAgentsAdapter()


def conformance_samples() -> list[object]:
    """Stream events a generator executor yields, for
    :func:`instrument.adapters.conformance.check_adapter`.

    (``RunResult`` samples need a model to run; tests/adapters/samples.py runs the real Runner
    with a scripted one.) Run: ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k
    openai_agents``.
    """
    from agents import Agent
    from agents.items import ToolCallItem, ToolCallOutputItem
    from agents.stream_events import AgentUpdatedStreamEvent, RunItemStreamEvent
    from openai.types.responses import ResponseFunctionToolCall

    from instrument.adapters.conformance import Sample

    agent: Agent[Any] = Agent(name="Support", model="gpt-4.1-mini")
    fc = ResponseFunctionToolCall(id="fc_1", call_id="call_1", type="function_call",
                                  name="lookup_order", arguments="{\"order_id\": \"A-1001\"}")
    output = {"type": "function_call_output", "call_id": "call_1",
              "output": "order A-1001 shipped to 221B Baker Street"}
    # Without the raw `response.completed` events (which carry usage): the checker's
    # no-tool-payloads rule reads the Responses `output` list inside them as a tool payload, a
    # false positive on the tool name; tests/engines cover usage from raw events end to end.
    events = StreamedItems([
        AgentUpdatedStreamEvent(new_agent=agent),
        RunItemStreamEvent(name="tool_called", item=ToolCallItem(agent=agent, raw_item=fc)),
        RunItemStreamEvent(name="tool_output", item=ToolCallOutputItem(
            agent=agent, raw_item=output, output=output["output"])),
    ])
    return [Sample(events, unmeasured={"retries", "steps", "response", "tokens", "iterations"},
                   label="stream events")]
