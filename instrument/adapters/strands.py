"""The ``strands`` adapter: Strands Agents ``AgentResult``, returned or streamed.

Understands:

- an ``AgentResult`` (``agent(...)``, ``await agent.invoke_async(...)``);
- the event dicts a generator executor yielded from ``agent.stream_async(...)`` (as
  :class:`~instrument.adapters.protocol.StreamedItems`): the last one, ``{"result":
  AgentResult}``, gives the record; a stream closed before it is read from the raw model events
  (usage from each ``metadata`` event, one per model request, so nothing is counted twice).

**The metrics object is shared.** ``result.metrics`` is the agent's own ``EventLoopMetrics``:
the next call on the same agent appends to it, and its ``accumulated_usage`` /
``tool_metrics`` / ``cycle_count`` cover every call the agent ever made. This adapter reads only
the latest invocation (``metrics.agent_invocations[-1]``: its cycles and their usage, and the
same number of trailing cycle traces for the tool calls), and it reads them at return, when the
decorator normalizes the result, so a later call never changes an earlier record.

**Tokens.** Strands reports ``inputTokens`` / ``outputTokens`` / ``totalTokens`` /
``cacheReadInputTokens`` / ``cacheWriteInputTokens`` per model request in its providers' own
convention: Bedrock and Anthropic leave cache reads and writes *out of* ``inputTokens`` (their
``totalTokens`` counts them), OpenAI and Gemini put cached reads *in*. Per cycle, the rule
Strands itself uses (``_total_prompt_tokens``) tells them apart: when ``input + output ==
total`` the cache is already inside ``input``; otherwise cache reads and writes are added to it.
So the record's ``input_tokens`` always includes both cache kinds. Strands' providers fold
reasoning into ``outputTokens`` and report no reasoning count: ``reasoning_tokens`` is ``None``.
Cache counts are ``None`` when no request of the run reported them.

**Outcome**, from ``stop_reason``: ``end_turn``, ``stop_sequence`` (and ``tool_use``) are
successes; ``interrupt`` (a tool or hook asked a human: ``result.interrupts``) and
``checkpoint`` (durable execution paused) are ``paused``; ``max_tokens``, ``limit_turns``,
``limit_total_tokens``, ``limit_output_tokens``, ``guardrail_intervened``,
``content_filtered`` and ``cancelled`` stop the loop without an exception but are failures,
with ``ErrorInfo(type=<stop reason>)``. (Strands 1.x raises ``MaxTokensReachedException`` for a
model cut off at its token cap; the decorator records that as a failure of that type.)

Also: iterations (model requests of the run), tool calls from the cycle traces (name, tool use
id, success from the tool result's status, start time and duration; an error result keeps only
the exception class Strands names in it, never its text), the response text (or the structured
output as JSON), and in extras the stop reason, cycles, interrupt ids/names and model latency.
An ``AgentResult`` names no model: ``model``, ``request_model`` and ``provider`` stay ``None``.

Nothing here imports ``strands``.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import JsonValue

from instrument.adapters._coerce import (
    MAX_NAME,
    MAX_TEXT,
    field,
    is_mapping,
    seq,
    to_count,
    to_float,
    to_str,
    truncate,
)
from instrument.adapters._openai import ends
from instrument.adapters.protocol import StreamedItems
from instrument.record import ErrorInfo, ExecutionResult, TokenUsage, ToolCall

__all__ = ["ADAPTER", "StrandsAdapter"]

_SUCCESS: Final = frozenset({"end_turn", "stop_sequence", "tool_use"})
_PAUSED: Final = frozenset({"interrupt", "checkpoint"})
#: Stop reasons that end the loop without an exception but are not successes, and why.
_FAILED: Final = {
    "max_tokens": "the model stopped at its output token cap",
    "limit_turns": "the agent stopped at its turn limit (limits['turns'])",
    "limit_total_tokens": "the agent stopped at its total token limit (limits['total_tokens'])",
    "limit_output_tokens":
        "the agent stopped at its output token limit (limits['output_tokens'])",
    "guardrail_intervened": "a guardrail intervened and blocked the answer",
    "content_filtered": "the provider filtered the content",
    "cancelled": "the invocation was cancelled",
}
#: How Strands' tool decorator words a raised exception: "Error: <Class> - <message>".
_TOOL_ERROR: Final = re.compile(r"Error: ([A-Za-z_][\w.]{0,127}) - ")
_STREAM_KEYS: Final = ("init_event_loop", "start_event_loop", "event_loop_cycle_id")
_RAW_EVENT_KEYS: Final = ("messageStart", "messageStop", "metadata", "contentBlockDelta",
                          "contentBlockStart", "contentBlockStop")


def _is_result(obj: object) -> bool:
    cls = type(obj)
    return cls.__name__ == "AgentResult" and cls.__module__.startswith("strands.")


def _result_in(item: object) -> Any:
    if type(item) is dict:
        found = item.get("result")
        if _is_result(found):
            return found
    return None


def _is_event(item: object) -> bool:
    if type(item) is not dict:
        return False
    if _result_in(item) is not None or any(k in item for k in _STREAM_KEYS):
        return True
    raw = item.get("event")
    return type(raw) is dict and any(k in raw for k in _RAW_EVENT_KEYS)


class StrandsAdapter:
    """``AgentResult`` objects and the event dicts of ``stream_async``."""

    name = "strands"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_is_event(item) for item in ends(result))
        return _is_result(result)

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_events(result)
        if _is_result(result):
            return _from_result(result)
        raise TypeError(f"strands cannot normalize {type(result).__qualname__}; pass an "
                        "AgentResult or the events of agent.stream_async()")


# --------------------------------------------------------------------------------------------
# AgentResult
# --------------------------------------------------------------------------------------------


def _from_result(result: Any, extras: dict[str, JsonValue] | None = None) -> ExecutionResult:
    extras = {} if extras is None else extras
    stop = to_str(field(result, "stop_reason"))
    success, paused, error = _outcome(stop)
    if stop is not None:
        extras["stop_reason"] = stop
    interrupts = seq(field(result, "interrupts")) or []
    if interrupts:
        paused, success = True, True
        extras["interrupts"] = [
            {"id": to_str(field(i, "id")), "name": to_str(field(i, "name"))} for i in interrupts]
    metrics = field(result, "metrics")
    tokens, iterations, calls, latency = _run_metrics(metrics, extras, paused)
    if latency is not None:
        extras["model_latency_ms"] = latency
    response = None if interrupts else _structured(field(result, "structured_output"))
    if response is None and not interrupts:
        response = _message_text(field(result, "message"))
    return ExecutionResult(
        success=success, error=error, paused=paused, tokens=tokens, iterations=iterations,
        tool_calls=calls, response=response, extras=extras)


def _outcome(stop: str | None) -> tuple[bool, bool, ErrorInfo | None]:
    """(success, paused, error) for a stop reason; an unknown one is a success (it returned)."""
    if stop in _PAUSED:
        return True, True, None
    if stop is not None and stop in _FAILED:
        return False, False, ErrorInfo(type=stop, message=_FAILED[stop])
    return True, False, None


def _run_metrics(metrics: object, extras: dict[str, JsonValue], paused: bool
                 ) -> tuple[TokenUsage | None, int | None, list[ToolCall] | None, float | None]:
    """Tokens, model requests, tool calls and model latency of the latest invocation only."""
    invocations = seq(field(metrics, "agent_invocations"))
    if invocations is not None and not invocations:
        return None, None, None, None  # a rehydrated result (from_dict): nothing was measured
    if invocations is None:  # Strands < 1.0: only the agent's lifetime totals exist
        usage = field(metrics, "accumulated_usage")
        if not is_mapping(usage):
            return None, None, None, None
        extras["usage_scope"] = "agent"
        return _tokens([usage]), to_count(field(metrics, "cycle_count")), None, None
    latest = invocations[-1]
    cycles = seq(field(latest, "cycles")) or []
    extras["cycles"] = len(cycles)
    usages = [u for u in (field(c, "usage") for c in cycles) if is_mapping(u)]
    if not usages:
        whole = field(latest, "usage")
        usages = [whole] if is_mapping(whole) else []
    traces = seq(field(metrics, "traces"), 100_000) or []
    own = traces[len(traces) - len(cycles):] if cycles else []
    requests = 0
    latency = 0.0
    latency_seen = False
    calls: list[ToolCall] = []
    for trace in own:
        for child in seq(field(trace, "children")) or []:
            name = to_str(field(child, "name"), MAX_NAME) or ""
            if name == "stream_messages":
                requests += 1
                message = field(child, "message")
                ms = to_float(_get(_get(_get(message, "metadata"), "metrics"), "latencyMs"))
                if ms is not None:
                    latency += ms
                    latency_seen = True
            elif name.startswith("Tool: "):
                calls.append(_tool_call(child, paused))
    iterations = requests if own else len(cycles)
    return (_tokens(usages), iterations, calls,
            round(latency, 3) if latency_seen else None)


def _get(obj: object, key: str) -> object:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _tool_call(trace: object, paused: bool) -> ToolCall:
    meta = field(trace, "metadata")
    name = to_str(_get(meta, "tool_name"), MAX_NAME) or to_str(
        field(trace, "raw_name"), MAX_NAME) or "tool"
    start = to_float(field(trace, "start_time"))
    end = to_float(field(trace, "end_time"))
    started_at = (_dt.datetime.fromtimestamp(start, _dt.UTC)
                  if start is not None and start > 0 else None)
    duration = (end - start) * 1000 if start is not None and end is not None and end >= start \
        else None
    status, error_class = _tool_status(field(trace, "message"))
    success: bool | None
    error: str | None = None
    if status == "success":
        success = True
    elif status == "error":
        success = False
        error = error_class or "the tool returned an error result"
    elif paused:
        success = None  # interrupted: it waits for the human's answer
    else:
        success, error = False, "the tool ended without a result"
    return ToolCall(name=name, call_id=to_str(_get(meta, "toolUseId"), MAX_NAME),
                    success=success, duration_ms=duration, started_at=started_at, error=error)


def _tool_status(message: object) -> tuple[str | None, str | None]:
    """The tool result's status and, for an error, the exception class Strands named in it."""
    for block in seq(_get(message, "content")) or []:
        tool_result = _get(block, "toolResult")
        if not is_mapping(tool_result):
            continue
        status = to_str(tool_result.get("status"))
        error_class = None
        if status == "error":
            for part in seq(tool_result.get("content")) or []:
                text = _get(part, "text")
                found = _TOOL_ERROR.match(text) if isinstance(text, str) else None
                if found:
                    error_class = found.group(1)
                    break
        return status, error_class
    return None, None


def _tokens(usages: list[Any]) -> TokenUsage | None:
    """Usage summed over requests, each converted so input includes cache reads and writes."""
    inp = out = total = read = write = 0
    read_seen = write_seen = counted = False
    for usage in usages:
        i = to_count(usage.get("inputTokens"))
        o = to_count(usage.get("outputTokens"))
        t = to_count(usage.get("totalTokens"))
        if i is None or o is None:
            continue
        r = to_count(usage.get("cacheReadInputTokens"))
        w = to_count(usage.get("cacheWriteInputTokens"))
        read_seen |= r is not None
        write_seen |= w is not None
        t = i + o + (r or 0) + (w or 0) if t is None else t
        if i + o != t:  # the cache is outside `inputTokens` (Bedrock, Anthropic)
            i += (r or 0) + (w or 0)
        inp, out, total = inp + i, out + o, total + t
        read, write = read + (r or 0), write + (w or 0)
        counted = True
    if not counted or not (inp or out or total):
        return None  # no request reported usage: not measured
    return TokenUsage(input_tokens=inp, output_tokens=out, total_tokens=total,
                      cached_input_tokens=read if read_seen else None,
                      cache_write_input_tokens=write if write_seen else None)


def _message_text(message: object) -> str | None:
    parts: list[str] = []
    for block in seq(_get(message, "content")) or []:
        text = _get(block, "text")
        if isinstance(text, str):
            parts.append(text)
            continue
        citations = _get(block, "citationsContent")
        for part in seq(_get(citations, "content")) or []:
            cited = _get(part, "text")
            if isinstance(cited, str):
                parts.append(cited)
    return truncate("\n".join(parts), MAX_TEXT) if parts else None


def _structured(output: object) -> str | None:
    if output is None:
        return None
    dump = getattr(output, "model_dump_json", None)
    if not callable(dump):
        return None
    try:
        return truncate(str(dump()), MAX_TEXT)
    except Exception:  # an output that cannot serialize is still a result
        return None


# --------------------------------------------------------------------------------------------
# Yielded stream_async events
# --------------------------------------------------------------------------------------------


def _from_events(events: StreamedItems) -> ExecutionResult:
    extras: dict[str, JsonValue] = {"streamed": True}
    final = next((r for r in (_result_in(e) for e in reversed(events)) if r is not None), None)
    if final is not None:
        return _from_result(final, extras)
    # Closed before the result: what the raw model events and messages showed.
    usages: list[Any] = []
    requests = 0
    text: list[str] = []
    uses: dict[str, str] = {}
    statuses: dict[str, str | None] = {}
    for event in events:
        if type(event) is not dict:
            continue
        raw = event.get("event")
        if type(raw) is dict:
            metadata = raw.get("metadata")
            usage = _get(metadata, "usage")
            if is_mapping(usage):
                usages.append(usage)
            if "messageStop" in raw:
                requests += 1
        if isinstance(event.get("data"), str):
            text.append(event["data"])
        for block in seq(_get(event.get("message"), "content")) or []:
            use = _get(block, "toolUse")
            if is_mapping(use):
                tid = to_str(use.get("toolUseId"), MAX_NAME)
                if tid is not None:
                    uses[tid] = to_str(use.get("name"), MAX_NAME) or "tool"
            done = _get(block, "toolResult")
            if is_mapping(done):
                tid = to_str(done.get("toolUseId"), MAX_NAME)
                if tid is not None:
                    statuses[tid] = to_str(done.get("status"))
    calls = [ToolCall(name=name, call_id=tid,
                      success=None if tid not in statuses else statuses[tid] == "success",
                      error="the tool returned an error result"
                      if statuses.get(tid) == "error" else None)
             for tid, name in uses.items()]
    extras["complete"] = False
    return ExecutionResult(success=True, tokens=_tokens(usages), iterations=requests,
                           tool_calls=calls, response="".join(text) or None, extras=extras)


ADAPTER = StrandsAdapter()


def conformance_samples() -> list[object]:
    """Results as Strands builds them (its own ``AgentResult`` and ``EventLoopMetrics``), for
    :func:`instrument.adapters.conformance.check_adapter`. Run:
    ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k strands``."""
    from instrument.adapters.conformance import Sample

    # Looked up by name: the samples use Strands' own classes, whatever version is installed.
    result_mod = importlib.import_module("strands.agent.agent_result")
    metrics_mod = importlib.import_module("strands.telemetry.metrics")
    AgentResult: Any = result_mod.AgentResult
    EventLoopMetrics: Any = metrics_mod.EventLoopMetrics
    Trace: Any = metrics_mod.Trace

    usage = {"inputTokens": 120, "outputTokens": 30, "totalTokens": 190,
             "cacheReadInputTokens": 25, "cacheWriteInputTokens": 15}
    metrics = EventLoopMetrics()
    cycle = Trace("Cycle 1", start_time=1_700_000_000.0)
    model = Trace("stream_messages", parent_id=cycle.id, start_time=1_700_000_000.0)
    # The model's message holds text only here: with its toolUse block, the checker's
    # no-tool-payloads rule would read the tool's name inside `content` as a payload (a false
    # positive; tests/engines/test_strands.py covers real tool-use messages end to end).
    model.add_message({"role": "assistant", "content": [{"text": "Looking it up."}],
                       "metadata": {"usage": usage, "metrics": {"latencyMs": 420}}})
    model.end(1_700_000_000.5)
    tool = Trace("Tool: lookup_order", parent_id=cycle.id, start_time=1_700_000_000.5)
    tool.metadata.update({"toolUseId": "tu_1", "tool_name": "lookup_order"})
    tool.add_message({"role": "user", "content": [{"toolResult": {
        "toolUseId": "tu_1", "status": "error",
        "content": [{"text": "Error: TimeoutError - order service at 10.0.0.7 timed out"}]}}]})
    tool.end(1_700_000_001.25)
    cycle.add_child(model)
    cycle.add_child(tool)
    cycle.end(1_700_000_001.5)
    metrics.traces.append(cycle)
    metrics.cycle_count = 1
    metrics.agent_invocations.append(metrics_mod.AgentInvocation(
        cycles=[metrics_mod.EventLoopCycleMetric(event_loop_cycle_id="c1", usage=dict(usage))],
        usage=dict(usage)))
    done = AgentResult(stop_reason="limit_turns", metrics=metrics, state={}, message={
        "role": "user", "content": [{"toolResult": {"toolUseId": "tu_1", "status": "error",
                                                    "content": [{"text": "timed out"}]}}]})
    empty = AgentResult(stop_reason="end_turn", metrics=EventLoopMetrics(), state={},
                        message={"role": "assistant", "content": [{"text": "Hi."}]})
    return [
        Sample(done, unmeasured={"retries", "steps", "model", "provider", "response",
                                 "tokens.reasoning_tokens"}, label="turn limit, failed tool"),
        Sample(empty, unmeasured={"tokens", "tool_calls", "iterations"},
               label="rehydrated, nothing measured"),
        # No stream sample: stream_async's last event is {"result": AgentResult}, and the
        # checker reads everything under a "result" key as a tool payload (its stop reason
        # would be a false positive); tests/engines/test_strands.py covers streams.
    ]
