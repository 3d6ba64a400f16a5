"""The ``crewai`` adapter: CrewAI crews, agents and paused flows.

Understands:

- ``CrewOutput`` (``crew.kickoff()``): the final ``raw`` text (or its pydantic / JSON output),
  ``token_usage`` (``UsageMetrics``), and per task (``tasks_output``) the agent, the messages and
  the ``tool_failures``;
- ``LiteAgentOutput`` (``agent.kickoff()``): the same for one agent, usage in ``usage_metrics``;
- ``HumanFeedbackPending`` returned by ``flow.kickoff()`` (CrewAI returns it, does not raise it,
  when a flow waits for a human's feedback): a ``paused`` run, with the flow id and method;
- ``ToolExecutionFailedError`` (a tool failure under the ``raise`` policy) through
  ``normalize_error``: the failed tool call is kept on the failed record;
- a ``CrewStreamingOutput`` (a crew built with ``stream=True``) returned unread: the adapter is
  deferred. It observes the output's own chunk iterator in place (the caller keeps the
  identical object) and finishes the record from the ``CrewOutput`` once the caller has read
  the stream to its end; a stream that raised is a failed record of that type, one closed or
  dropped before its end keeps ``stream_closed_early`` (a crew starts only when its stream is
  read);
- the ``StreamChunk`` items a generator executor yielded from such a stream (as
  :class:`~instrument.adapters.protocol.StreamedItems`): the text and the tool calls the chunks
  name (no usage: chunks carry none).

**Tokens.** ``UsageMetrics`` is CrewAI's own sum over the run's model requests
(``successful_requests``): ``prompt_tokens`` already includes cached reads
(``cached_prompt_tokens``) and cache writes (``cache_creation_tokens``; CrewAI folds Anthropic's
separate cache counters into it), and ``completion_tokens`` includes reasoning
(``reasoning_tokens``) - the record's definition, so they are taken as reported. A usage with no
successful request measured nothing: ``tokens`` is ``None``. Note that CrewAI computes a crew's
usage from each agent's LLM counters, which live as long as the LLM object: a crew kicked off
twice with the same agents reports both runs in the second output (CrewAI's behaviour).

**A crew can succeed with failed tools** (agents narrate the failure and carry on). Tool calls
are read from each task's messages (native ``tool_calls`` or the ReAct ``Action:`` lines CrewAI
appends an ``Observation`` to) and matched in order, by name, to the task's ``tool_failures``:
those calls have ``success=False`` and the failure's code and message as ``error``; the others
succeeded (CrewAI records every failure under its default ``warn`` policy). Without
``tool_failures`` (CrewAI before 1.15, or the ``ignore`` policy) success stays ``None``.
CrewAI reports no per-call timing, and its output names no model: both stay ``None``.

Nothing here imports ``crewai``.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

from pydantic import JsonValue

from instrument.adapters._coerce import (
    MAX_NAME,
    MAX_TEXT,
    MISSING,
    field,
    has_field,
    is_mapping,
    seq,
    to_count,
    to_str,
    truncate,
)
from instrument.adapters._openai import ends
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult, TokenUsage, ToolCall

__all__ = ["ADAPTER", "CrewAIAdapter"]

_log = logging.getLogger(__name__)

Done = Callable[[ExecutionResult | BaseException], None]

_OUTPUTS: Final = {("crewai.crews.crew_output", "CrewOutput"),
                   ("crewai.lite_agent_output", "LiteAgentOutput")}
_PENDING: Final = ("crewai.flow.async_feedback.types", "HumanFeedbackPending")
_TOOL_FAILED: Final = ("crewai.tools.tool_failure", "ToolExecutionFailedError")
_STREAM: Final = ("crewai.types.streaming", "CrewStreamingOutput")
_CHUNK: Final = ("crewai.types.streaming", "StreamChunk")
_ACTION: Final = re.compile(r"^Action:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


def _is(obj: object, where: tuple[str, str]) -> bool:
    cls = type(obj)
    return any((c.__module__, c.__name__) == where for c in cls.__mro__[:4])


def _is_output(obj: object) -> bool:
    return any(_is(obj, where) for where in _OUTPUTS)


class CrewAIAdapter:
    """``CrewOutput``, ``LiteAgentOutput`` and a paused flow's ``HumanFeedbackPending``."""

    name = "crewai"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_is(item, _CHUNK) for item in ends(result))
        return _is_output(result) or _is(result, _PENDING) or _is(result, _STREAM)

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_chunks(result)
        if _is(result, _PENDING):
            return _from_pending(result)
        if _is_output(result):
            return _from_output(result)
        if _is(result, _STREAM):
            # Not read yet: what is known now. `watch` supplies the real outcome later.
            return ExecutionResult(success=True, extras={"stream": "pending"})
        raise TypeError(f"crewai cannot normalize {type(result).__qualname__}; pass a "
                        "CrewOutput, a LiteAgentOutput or a HumanFeedbackPending")

    def normalize_error(self, exc: BaseException) -> ExecutionResult | None:
        """The tool call that failed a run under the ``raise`` tool-failure policy."""
        if not _is(exc, _TOOL_FAILED):
            return None
        record = getattr(exc, "record", None)
        name = to_str(field(record, "tool_name"), MAX_NAME) or "tool"
        return ExecutionResult(success=False, tool_calls=[
            ToolCall(name=name, success=False, error=_failure_text(record))])

    def watch(self, result: object, done: Done) -> bool:
        if not _is(result, _STREAM):
            return False
        return _watch_stream(result, done)


# --------------------------------------------------------------------------------------------


def _from_output(output: object) -> ExecutionResult:
    extras: dict[str, JsonValue] = {}
    tasks = seq(field(output, "tasks_output"))
    if tasks is None:  # a LiteAgentOutput is its own (only) task
        tasks = [output]
    else:
        extras["tasks"] = len(tasks)
    agents: list[str] = []
    calls: list[ToolCall] = []
    reasons: list[JsonValue] = []
    for task in tasks:
        role = to_str(field(task, "agent"), MAX_NAME) or to_str(field(task, "agent_role"),
                                                               MAX_NAME)
        if role and role not in agents:
            agents.append(role)
        calls += _task_calls(task, reasons)
    if agents:
        extras["agents"] = list(agents)
    if reasons:
        extras["tool_failures"] = reasons
    tokens, requests = _usage(output)
    if requests is not None:
        extras["successful_requests"] = requests
    return ExecutionResult(success=True, tokens=tokens, iterations=requests, tool_calls=calls,
                           response=_response(output), extras=extras)


def _usage(output: object) -> tuple[TokenUsage | None, int | None]:
    usage = field(output, "token_usage")
    if usage is MISSING or usage is None:
        usage = field(output, "usage_metrics")  # LiteAgentOutput: a plain dict
    if usage is MISSING or usage is None:
        return None, None
    requests = to_count(field(usage, "successful_requests"))
    if not requests:
        return None, requests  # no request succeeded: nothing was measured

    def get(name: str) -> int | None:
        return to_count(field(usage, name)) if has_field(usage, name) else None

    return TokenUsage(input_tokens=get("prompt_tokens"), output_tokens=get("completion_tokens"),
                      total_tokens=get("total_tokens"),
                      cached_input_tokens=get("cached_prompt_tokens"),
                      reasoning_tokens=get("reasoning_tokens"),
                      cache_write_input_tokens=get("cache_creation_tokens")), requests


def _response(output: object) -> str | None:
    for name in ("json_dict", "pydantic"):
        value = field(output, name)
        if value is None or value is MISSING:
            continue
        dump = getattr(value, "model_dump_json", None)
        try:
            text = dump() if callable(dump) else json.dumps(value, default=str)
        except Exception:  # noqa: S112  # an output that cannot serialize: use the raw text
            continue
        if isinstance(text, str):
            return truncate(text, MAX_TEXT)
    raw = field(output, "raw")
    return truncate(raw, MAX_TEXT) if isinstance(raw, str) and raw else None


def _task_calls(task: object, reasons: list[JsonValue]) -> list[ToolCall]:
    """The task's tool calls, in order, with the task's recorded failures matched by name."""
    found: list[tuple[str, str | None]] = []
    for message in seq(field(task, "messages"), 10_000) or []:
        if to_str(field(message, "role")) != "assistant":
            continue
        native = seq(field(message, "tool_calls"))
        if native:
            for call in native:
                name = to_str(field(field(call, "function"), "name"), MAX_NAME)
                found.append((name or "tool", to_str(field(call, "id"), MAX_NAME)))
            continue
        content = field(message, "content")
        if isinstance(content, str) and "\nObservation:" in content:
            action = _ACTION.search(content)
            if action and "Action Input:" in content[action.end():]:
                found.append((truncate(action.group(1), MAX_NAME), None))
    failures = seq(field(task, "tool_failures"))
    tracked = failures is not None
    pending = list(failures or [])
    calls: list[ToolCall] = []
    for name, call_id in found:
        failure = next((f for f in pending if to_str(field(f, "tool_name"), MAX_NAME) == name),
                       None)
        if failure is not None:
            pending.remove(failure)
            reasons.append(_reason(failure))
            calls.append(ToolCall(name=name, call_id=call_id, success=False,
                                  error=_failure_text(failure)))
        else:
            calls.append(ToolCall(name=name, call_id=call_id, success=True if tracked else None))
    for failure in pending:  # failures whose call the messages do not show
        reasons.append(_reason(failure))
        calls.append(ToolCall(name=to_str(field(failure, "tool_name"), MAX_NAME) or "tool",
                              success=False, error=_failure_text(failure)))
    return calls


def _reason(failure: object) -> str:
    return to_str(field(field(failure, "failure"), "reason"), 64) or "unknown"


def _failure_text(failure: object) -> str:
    detail = field(failure, "failure")
    message = to_str(field(detail, "message"), MAX_TEXT) or ""
    code = to_str(field(detail, "code"), MAX_NAME)
    text = f"{code}: {message}" if code and message else code or message
    return text or "the tool reported a failure"


def _from_pending(pending: object) -> ExecutionResult:
    context = field(pending, "context")
    extras: dict[str, JsonValue] = {"waiting_for": "human_feedback"}
    for key in ("flow_id", "flow_class", "method_name"):
        value = to_str(field(context, key), MAX_NAME)
        if value:
            extras[key] = value
    emit = seq(field(context, "emit"))
    if emit:
        outcomes: list[JsonValue] = [s for s in (to_str(e, MAX_NAME) for e in emit) if s]
        extras["outcomes"] = outcomes
    callback = field(pending, "callback_info")
    if is_mapping(callback) and callback:
        keys: list[JsonValue] = [str(k)[:MAX_NAME] for k in sorted(map(str, callback))[:50]]
        extras["callback_keys"] = keys
    return ExecutionResult(success=True, paused=True, extras=extras)


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _from_chunks(chunks: list[object], extras: dict[str, JsonValue] | None = None
                 ) -> ExecutionResult:
    extras = {} if extras is None else extras
    text: list[str] = []
    calls: dict[object, ToolCall] = {}
    n = 0
    for chunk in chunks:
        if not _is(chunk, _CHUNK):
            continue
        n += 1
        tool = field(chunk, "tool_call")
        if tool is not None and tool is not MISSING:
            call_id = to_str(field(tool, "tool_id"), MAX_NAME)
            name = to_str(field(tool, "tool_name"), MAX_NAME)
            key = call_id or (to_str(field(chunk, "task_id")), to_count(field(tool, "index")))
            if name or key not in calls:
                calls[key] = ToolCall(name=name or "tool", call_id=call_id)
        elif to_str(field(chunk, "chunk_type")) in (None, "text"):
            content = field(chunk, "content")
            if isinstance(content, str):
                text.append(content)
    extras["stream_chunks"] = n
    return ExecutionResult(success=True, tool_calls=list(calls.values()),
                           response=truncate("".join(text), MAX_TEXT) or None, extras=extras)


class _Once:
    """Calls ``done`` at most once, from whichever end of the stream gets there first."""

    __slots__ = ("_done", "_fired", "_lock")

    def __init__(self, done: Done) -> None:
        self._done = done
        self._fired = False
        self._lock = threading.Lock()

    def fire(self, outcome: ExecutionResult | BaseException) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
        self._done(outcome)


def _watch_stream(stream: Any, done: Done) -> bool:
    """Observe the output's own chunk iterator in place; report once, at its end."""
    once = _Once(done)
    ref = weakref.ref(stream)
    chunks: list[object] = []

    def finished(error: BaseException | None, closed: bool) -> None:
        if error is not None:
            once.fire(error)
            return
        extras: dict[str, JsonValue] = {"streamed": True, "stream_chunks": len(chunks)}
        try:
            obj = ref()
            result = getattr(obj, "_result", None) if obj is not None else None
            if result is not None and not closed:
                outcome = _from_output(result)
                outcome = outcome.model_copy(update={"extras": {**outcome.extras, **extras}})
            else:
                outcome = _from_chunks(chunks, {**extras, "stream_closed_early": True})
        except Exception as exc:  # a stream we cannot read must still produce a record
            _log.warning("could not normalize a CrewAI stream", exc_info=True)
            outcome = ExecutionResult(success=True, extras={
                "normalization_error": f"{type(exc).__name__}: {exc}"[:2000]})
        once.fire(outcome)

    if getattr(stream, "is_completed", False):
        error = getattr(stream, "_error", None)
        finished(error if isinstance(error, BaseException) else None,
                 bool(getattr(stream, "_cancelled", False)))
        return True
    inner = getattr(stream, "_sync_iterator", None)
    if inspect.isgenerator(inner):
        stream._sync_iterator = _observe(inner, chunks, finished)
    else:
        inner = getattr(stream, "_async_iterator", None)
        if not inspect.isasyncgen(inner):
            return False
        stream._async_iterator = _aobserve(inner, chunks, finished)
    weakref.finalize(stream, finished, None, True)
    return True


def _observe(inner: Iterator[Any], chunks: list[object],
             finished: Callable[[BaseException | None, bool], None]) -> Iterator[Any]:
    ended = False
    try:
        for chunk in inner:
            chunks.append(chunk)
            yield chunk
        ended = True
    except GeneratorExit:
        raise
    except BaseException as exc:  # the consumer sees it unchanged; the record says it failed
        finished(exc, False)
        raise
    finally:
        if not ended:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
        finished(None, not ended)


async def _aobserve(inner: AsyncIterator[Any], chunks: list[object],
                    finished: Callable[[BaseException | None, bool], None]
                    ) -> AsyncIterator[Any]:
    ended = False
    try:
        async for chunk in inner:
            chunks.append(chunk)
            yield chunk
        ended = True
    except GeneratorExit:
        raise
    except BaseException as exc:  # includes CancelledError: the record says it failed
        finished(exc, False)
        raise
    finally:
        if not ended:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finished(None, not ended)


ADAPTER = CrewAIAdapter()
