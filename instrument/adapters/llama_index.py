"""The ``llama_index`` adapter: LlamaIndex agent workflows (``FunctionAgent``, ``ReActAgent``,
``AgentWorkflow``), finished, streamed or still running.

Understands three shapes an executor can hand over:

- the final ``AgentOutput`` (``await agent.run(...)``): its response, and *all* the run's tool
  calls (``ToolCallResult``: name, id, ``tool_output.is_error``), but the ``raw`` response of
  the *last* model request only. So its usage is the run's only when the run made one request
  (no tool call, no structured output); otherwise ``tokens`` and ``iterations`` are ``None``
  (not measured) and the last request's usage is kept in ``extras["last_response_usage"]``;
- the events a generator executor yielded from ``handler.stream_events()`` (as
  :class:`~instrument.adapters.protocol.StreamedItems`): one ``AgentOutput`` per model request,
  each with that request's ``raw`` usage, summed (the ``StopEvent`` repeats the last one and is
  not counted again; ``AgentStream`` chunks are never summed); tool calls from ``ToolCall`` /
  ``ToolCallResult``; a run that stopped at an ``InputRequiredEvent`` (human in the loop) without
  a ``StopEvent`` is ``paused``;
- the ``WorkflowHandler`` itself, returned unawaited: the adapter is deferred. It observes the
  handler's ``stream_events()`` in place (the caller keeps the identical handler and gets every
  event) and finishes the record when the run ends: with the totals from the events when the
  caller streamed them, else with what the final output carries. A run that raised
  (``WorkflowRuntimeError`` for max iterations, a model error) is a failed record of that type;
  one cancelled while waiting for a human's input is ``paused``.

Usage is read from the provider's raw response (:mod:`instrument.adapters._raw_usage`: OpenAI,
Anthropic, Gemini and Bedrock shapes, each converted so input includes cache reads and writes and
output includes reasoning). ``model`` is the model the response names; ``request_model`` is
``None`` (an agent's output does not say which model was asked for). A failed tool keeps only
its exception class (``tool_output.exception``), never the text it returned.

Nothing here imports ``llama_index`` or ``workflows``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from pydantic import JsonValue

from instrument.adapters._coerce import MAX_NAME, MAX_TEXT, field, seq, to_str, truncate
from instrument.adapters._openai import ends
from instrument.adapters._raw_usage import model_of, provider_of, usage_of
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult, TokenUsage, ToolCall

__all__ = ["ADAPTER", "LlamaIndexAdapter"]

_log = logging.getLogger(__name__)

Done = Callable[[ExecutionResult | BaseException], None]

_AGENT_EVENTS: Final = "llama_index.core.agent.workflow.workflow_events"
_WORKFLOW_MODULES: Final = ("workflows.", "llama_index.core.workflow.")


def _names(obj: object) -> set[str]:
    try:
        return {c.__name__ for c in type(obj).__mro__}
    except Exception:  # a hostile metaclass: no names
        return set()


def _kind(obj: object) -> str | None:
    """The agent-workflow event class name (AgentOutput, ToolCallResult...), or a workflow
    StopEvent / InputRequiredEvent, else None."""
    module = type(obj).__module__
    if module == _AGENT_EVENTS:
        return type(obj).__name__
    if module.startswith(_WORKFLOW_MODULES) or module.startswith(_AGENT_EVENTS):
        names = _names(obj)
        for name in ("StopEvent", "InputRequiredEvent"):
            if name in names:
                return name
    return None


def _is_output(obj: object) -> bool:
    return type(obj).__module__ == _AGENT_EVENTS and "AgentOutput" in _names(obj)


def _is_handler(obj: object) -> bool:
    return (type(obj).__module__.startswith(_WORKFLOW_MODULES)
            and "WorkflowHandler" in _names(obj))


class LlamaIndexAdapter:
    """``AgentOutput``, yielded workflow events, and a returned ``WorkflowHandler``."""

    name = "llama_index"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_kind(item) is not None for item in ends(result))
        return _is_output(result) or _is_handler(result)

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_events(list(result))
        if _is_output(result):
            return _from_output(result)
        if _is_handler(result):
            # Still running: what is known now. `watch` supplies the real outcome later.
            return ExecutionResult(success=True, extras={"workflow": "pending"})
        raise TypeError(f"llama_index cannot normalize {type(result).__qualname__}; pass an "
                        "AgentOutput, a WorkflowHandler or the handler's events")

    def watch(self, result: object, done: Done) -> bool:
        if not _is_handler(result):
            return False
        return _watch_handler(result, done)


# --------------------------------------------------------------------------------------------
# The final AgentOutput
# --------------------------------------------------------------------------------------------


def _from_output(output: Any, extras: dict[str, JsonValue] | None = None) -> ExecutionResult:
    extras = {} if extras is None else extras
    raw = field(output, "raw")
    last = usage_of(raw)
    calls = [_tool_call(c) for c in seq(field(output, "tool_calls")) or []]
    structured = field(output, "structured_response")
    one_request = not calls and structured is None
    if last is not None and not one_request:
        extras["usage_scope"] = "last_response"
        dumped: dict[str, JsonValue] = dict(last.model_dump(exclude_none=True))
        extras["last_response_usage"] = dumped
    _put_agent(extras, output)
    if isinstance(structured, dict):
        extras["structured_output"] = True
    return ExecutionResult(
        success=True, tokens=last if one_request else None,
        iterations=1 if one_request else None, tool_calls=calls,
        model=model_of(raw), provider=provider_of(raw), response=_response_text(output),
        extras=extras)


def _put_agent(extras: dict[str, JsonValue], output: object) -> None:
    agent = to_str(field(output, "current_agent_name"), MAX_NAME)
    if agent:
        extras["agent"] = agent


def _tool_call(call: object) -> ToolCall:
    """A ``ToolCallResult`` (with its outcome) or a ``ToolSelection``/``ToolCall`` (without)."""
    name = to_str(field(call, "tool_name"), MAX_NAME) or "tool"
    call_id = to_str(field(call, "tool_id"), MAX_NAME)
    output = field(call, "tool_output")
    failed = field(output, "is_error")
    if not isinstance(failed, bool):
        return ToolCall(name=name, call_id=call_id)
    error: str | None = None
    if failed:
        exc = getattr(output, "exception", None)
        error = type(exc).__name__ if isinstance(exc, BaseException) else \
            "the tool returned an error"
    return ToolCall(name=name, call_id=call_id, success=not failed, error=error)


def _response_text(output: object) -> str | None:
    structured = field(output, "structured_response")
    if isinstance(structured, dict):
        try:
            return truncate(json.dumps(structured, default=str), MAX_TEXT)
        except (TypeError, ValueError):
            pass
    content = field(field(output, "response"), "content")
    return truncate(content, MAX_TEXT) if isinstance(content, str) and content else None


# --------------------------------------------------------------------------------------------
# Streamed events
# --------------------------------------------------------------------------------------------


def _sum(found: list[TokenUsage]) -> TokenUsage | None:
    if not found:
        return None

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in found]
        return None if all(v is None for v in values) else sum(v or 0 for v in values)

    return TokenUsage(input_tokens=total("input_tokens"), output_tokens=total("output_tokens"),
                      total_tokens=total("total_tokens"),
                      cached_input_tokens=total("cached_input_tokens"),
                      reasoning_tokens=total("reasoning_tokens"),
                      cache_write_input_tokens=total("cache_write_input_tokens"))


def _from_events(events: list[object], extras: dict[str, JsonValue] | None = None
                 ) -> ExecutionResult:
    extras = {"streamed": True} if extras is None else extras
    outputs: list[object] = []
    calls: dict[str, ToolCall] = {}
    order: list[str] = []
    final: object = None
    waiting = False
    deltas: list[str] = []
    for event in events:
        kind = "StopEvent" if isinstance(event, _Stop) else _kind(event)
        if kind == "AgentOutput":
            outputs.append(event)
            deltas = []
        elif kind in ("ToolCall", "ToolCallResult"):
            call = _tool_call(event)
            key = call.call_id or f"#{len(order)}"
            if key not in calls:
                order.append(key)
            if kind == "ToolCallResult" or key not in calls:
                calls[key] = call
        elif kind == "AgentStream":
            delta = field(event, "delta")
            if isinstance(delta, str):
                deltas.append(delta)
        elif kind == "InputRequiredEvent":
            waiting = True
        elif kind == "StopEvent":
            final = field(event, "result")
            waiting = False
    usages = [u for u in (usage_of(field(o, "raw")) for o in outputs) if u is not None]
    last_raw = field(outputs[-1], "raw") if outputs else None
    response: str | None = None
    if final is not None and _is_output(final):
        response = _response_text(final)
        _put_agent(extras, final)
    elif outputs and not seq(field(outputs[-1], "tool_calls")):
        response = _response_text(outputs[-1])
    elif deltas:
        response = truncate("".join(deltas), MAX_TEXT)
    elif final is not None and isinstance(final, str):
        response = truncate(final, MAX_TEXT)
    if final is None and not waiting:
        extras["complete"] = False
    if waiting:
        extras["waiting_for"] = "input"
    return ExecutionResult(
        success=True, paused=waiting, tokens=_sum(usages) if len(usages) == len(outputs)
        else None, iterations=len(outputs) if outputs else None,
        tool_calls=[calls[k] for k in order], model=model_of(last_raw),
        provider=provider_of(last_raw), response=response, extras=extras)


# --------------------------------------------------------------------------------------------
# A returned WorkflowHandler
# --------------------------------------------------------------------------------------------


class _HandlerWatch:
    """Events seen on the handler's stream, and the record reported once."""

    __slots__ = ("__weakref__", "_done", "_fired", "_lock", "events", "result_seen",
                 "streaming")

    def __init__(self, done: Done) -> None:
        self._done = done
        self._fired = False
        self._lock = threading.Lock()
        self.events: list[object] = []
        self.streaming = False  # the caller is iterating stream_events() right now
        self.result_seen: tuple[object, BaseException | None] | None = None

    def fire(self, outcome: ExecutionResult | BaseException) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
        self._done(outcome)

    def finish(self) -> None:
        """Report from the run's end (and the events, when the caller streamed them)."""
        seen = self.result_seen
        if seen is None:
            return
        value, error = seen
        waiting = any(_kind(e) == "InputRequiredEvent" for e in self.events)
        if error is not None and not (waiting and _is_cancel(error)):
            self.fire(error)
            return
        try:
            if any(_kind(e) == "AgentOutput" for e in self.events):
                stop = [] if value is None else [_Stop(value)]
                outcome = _from_events([*self.events, *stop], {"streamed": True})
            elif _is_output(value):
                outcome = _from_output(value)
            else:
                outcome = _from_events(self.events, {})
                if isinstance(value, str):
                    outcome = outcome.model_copy(update={"response": truncate(value, MAX_TEXT)})
            if error is not None:  # cancelled while waiting for a human: paused
                outcome = outcome.model_copy(update={"paused": True, "success": True})
        except Exception as exc:  # a run we cannot read must still produce a record
            _log.warning("could not normalize a LlamaIndex workflow run", exc_info=True)
            outcome = ExecutionResult(success=True, extras={
                "normalization_error": f"{type(exc).__name__}: {exc}"[:2000]})
        self.fire(outcome)


class _Stop:
    """The run's final value seen as a StopEvent, so the event reader treats it as one."""

    __slots__ = ("result",)

    def __init__(self, result: object) -> None:
        self.result = result


def _is_cancel(error: BaseException) -> bool:
    return any(n in _names(error) for n in ("CancelledError", "WorkflowCancelledByUser"))


def _watch_handler(handler: Any, done: Done) -> bool:
    task = getattr(handler, "_result_task", None)
    if task is None and callable(getattr(handler, "add_done_callback", None)):
        task = handler  # llama-index < 0.13: the handler is the future itself
    if task is None or not callable(getattr(task, "add_done_callback", None)):
        return False
    watch = _HandlerWatch(done)
    original = getattr(handler, "stream_events", None)
    if callable(original):
        try:
            handler.stream_events = _observed(original, watch)
        except (AttributeError, TypeError):  # a slotted handler: follow only its end
            _log.debug("cannot observe stream_events on %r", type(handler), exc_info=True)

    def on_done(finished: Any) -> None:
        watch.result_seen = _result_of(finished)
        if not watch.streaming:
            watch.finish()

    weakref.finalize(handler, watch.fire, ExecutionResult(
        success=True, extras={"workflow": "abandoned", "stream_closed_early": True}))
    task.add_done_callback(on_done)
    return True


def _result_of(task: Any) -> tuple[object, BaseException | None]:
    try:
        if task.cancelled():
            return None, asyncio.CancelledError()
        error = task.exception()
        if error is not None:
            return None, error
        value = task.result()
    except BaseException as exc:  # whatever ended the run is its outcome
        return None, exc
    if "StopEvent" in _names(value) and type(value).__name__ == "StopEvent":
        value = getattr(value, "result", value)  # what `await handler` returns
    return value, None


def _observed(original: Callable[..., Any], watch: _HandlerWatch
              ) -> Callable[..., AsyncIterator[Any]]:
    async def stream_events(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        watch.streaming = True
        try:
            async for event in original(*args, **kwargs):
                watch.events.append(event)
                yield event
        finally:
            watch.streaming = False
            watch.finish()  # a no-op until the run itself has ended

    return stream_events


ADAPTER = LlamaIndexAdapter()


def conformance_samples() -> list[object]:
    """Outputs and events built with LlamaIndex's own types, for
    :func:`instrument.adapters.conformance.check_adapter`. Run:
    ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k llama_index``."""
    from instrument.adapters.conformance import Sample

    # Looked up by name: the samples use LlamaIndex's own classes, whatever version is installed.
    events: Any = importlib.import_module(_AGENT_EVENTS)
    llms: Any = importlib.import_module("llama_index.core.llms")
    tools: Any = importlib.import_module("llama_index.core.tools")
    raw = {"id": "msg_7", "type": "message", "model": "claude-sonnet-4-5",
           "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 30,
                                                "cache_read_input_tokens": 900,
                                                "cache_creation_input_tokens": 0}}
    answer = events.AgentOutput(response=llms.ChatMessage(role="assistant", content="Done."),
                                raw=raw, current_agent_name="Support")
    # Names and ids under 8 characters: the checker reads every string under `tool_kwargs`
    # and the tool output as a payload.
    failed = events.ToolCallResult(
        tool_name="lookup", tool_kwargs={"q": "A-1"}, tool_id="c_1", return_direct=False,
        tool_output=tools.ToolOutput(tool_name="lookup", content="database unreachable",
                                     raw_input={"q": "A-1"}, raw_output=None, is_error=True,
                                     exception=TimeoutError("unreachable")))
    after_tools = events.AgentOutput(
        response=llms.ChatMessage(role="assistant", content="Sorry."), raw=raw,
        current_agent_name="Support")
    after_tools.tool_calls.append(failed)  # as the agent does: the results join the selections
    streamed = StreamedItems([events.AgentOutput(
        response=llms.ChatMessage(role="assistant", content=""), raw=raw,
        current_agent_name="Support", tool_calls=[]), failed])
    unmeasured = {"retries", "steps", "memory", "request_model"}
    return [
        Sample(answer, unmeasured=unmeasured | {"tokens.reasoning_tokens"}, label="answer"),
        Sample(after_tools, unmeasured=unmeasured | {"tokens", "iterations"},
               label="after a failed tool"),
        Sample(streamed, unmeasured=unmeasured | {"tokens.reasoning_tokens", "response"},
               label="events of a run closed early"),
    ]
