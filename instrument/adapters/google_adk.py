"""The ``google_adk`` adapter: Google Agent Development Kit runs, which are streams of events.

An ADK run is what ``Runner.run_async`` (or ``Runner.run``) yields: ``Event`` objects. The
adapter reads:

- the events a generator executor yielded (:class:`~instrument.adapters.protocol.StreamedItems`),
  or a ``list``/``tuple`` of them an executor collected and returned. A returned, unconsumed
  ``run_async`` generator cannot be recognized by its type: yield its events instead.

Everything is read by attribute (ADK is never imported), so recorded events rebuilt from
``model_dump_json`` read the same way. What the record gets:

- tokens: each model response is one non-partial event with ``usage_metadata`` (Gemini's
  counts, converted as in :mod:`instrument.adapters._google`: input includes the cached part
  and the tool-use prompt, output includes the thoughts), added up over the run. Partial
  events (``partial=True``, streaming fragments) repeat what the complete event reports and
  are never counted. ``iterations`` is the number of model responses.
- ``model`` is the last response's ``model_version`` (the model that answered); what the agent
  asked for is not in the events (``request_model`` is ``None``). Provider ``gcp.gen_ai`` for a
  Gemini model, else ``None``.
- tool calls: ``function_call`` parts, matched to ``function_response`` parts by id. A
  response with an ``error`` key failed. Duration and start come from the two events'
  timestamps (the call event is stamped before the tool runs, the response event after), so
  they are approximate, and they give ``execute_tool`` spans. ADK's own human-in-the-loop
  calls (``adk_request_confirmation``, ``adk_request_credential``, ``adk_request_input``) are
  not tools: they are the pause itself.
- paused: a run that ends with an open interrupt (an id in ``long_running_tool_ids``, or an
  ADK request for input/credentials, not answered by a user ``function_response`` in the same
  run, as ADK itself decides) stopped to wait for a human or an outside system:
  ``success=True, paused=True``; the waiting tool calls have ``success=None``, and
  ``extras["pending"]`` names them. A tool waiting for confirmation
  (``actions.requested_tool_confirmations``) is pending too, never failed.
- failures that come back as values: an event with ``error_code`` (a blocked answer, a
  ``MAX_TOKENS`` stop, a model error a callback turned into an event) makes the run
  ``success=False`` with ``ErrorInfo(type=error_code, message=error_message)`` (the last
  one). Exceptions ``run_async`` raises are recorded by the decorator as usual.
- ``response``: the text of the last model event without function calls; ``input``: the first
  user event's text, when the run yielded it; extras: ``agents`` (authors in order),
  ``last_agent``, ``transfers``, ``invocation_id``, ``events``, ``partial_events``,
  ``error_events``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any, Final

from pydantic import JsonValue

from instrument.adapters._coerce import MAX_NAME, MAX_TEXT, to_datetime, to_str
from instrument.adapters._google import (
    CallLedger,
    enum_name,
    get,
    model_provider,
    service_tier,
    sum_usage,
    text_of,
    usage_of,
)
from instrument.adapters._openai import ends
from instrument.adapters.protocol import StreamedItems
from instrument.record import ErrorInfo, ExecutionResult, TokenUsage

__all__ = ["ADAPTER", "GoogleADKAdapter"]

#: ADK's synthetic human-in-the-loop function calls (google.adk.utils._function_call_names).
_CLIENT_CALLS: Final = frozenset({
    "adk_request_confirmation", "adk_request_credential", "adk_request_input"})
#: Of those, the ones that are interrupts even without ``long_running_tool_ids``.
_INTERRUPT_CALLS: Final = frozenset({"adk_request_credential", "adk_request_input"})
_MAX_EVENTS_LISTED: Final = 100


def _is_event(obj: object) -> bool:
    try:
        return any(base.__name__ == "Event" and base.__module__.startswith("google.adk")
                   for base in type(obj).__mro__)
    except Exception:  # a hostile metaclass: not an event
        return False


class GoogleADKAdapter:
    """The ``Event`` items of an ADK run, yielded or collected."""

    name = "google_adk"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_is_event(item) for item in ends(result))
        if type(result) in (list, tuple):
            items: Sequence[object] = result  # type: ignore[assignment]
            return bool(items) and _is_event(items[0]) and _is_event(items[-1])
        return False

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, (StreamedItems, list, tuple)):
            return _from_events([e for e in result if _is_event(e)],
                                streamed=isinstance(result, StreamedItems))
        raise TypeError(
            f"google_adk cannot normalize {type(result).__qualname__}; yield the events of "
            "Runner.run_async (or return them as a list)")


# --------------------------------------------------------------------------------------------


def _stamp(event: object) -> _dt.datetime | None:
    return to_datetime(get(event, "timestamp"))


def _parts(event: object) -> list[Any]:
    parts = get(get(event, "content"), "parts")
    return parts if isinstance(parts, list) else []


def _ids(value: object) -> set[str]:
    """Ids from a set/list of ids, or the keys of a dict keyed by call id."""
    if isinstance(value, dict):
        value = list(value)
    if not isinstance(value, (set, frozenset, list, tuple)):
        return set()
    return {v for v in value if isinstance(v, str)}


class _Run:
    """Everything read from one run's events, in one pass."""

    def __init__(self) -> None:
        self.ledger = CallLedger()
        self.usages: list[TokenUsage | None] = []
        self.interrupts: dict[str, str] = {}  # interrupt id -> the waiting call's name
        self.answered: set[str] = set()
        self.confirmations: set[str] = set()
        self.agents: list[str] = []
        self.transfers: list[JsonValue] = []
        self.error: ErrorInfo | None = None
        self.errors = 0
        self.partial = 0
        self.model: str | None = None
        self.tier: str | None = None
        self.response: str | None = None
        self.prompt: str | None = None
        self.invocation: str | None = None

    def read(self, event: Any) -> None:
        if get(event, "partial") is True:
            self.partial += 1
            return
        author = to_str(get(event, "author"), MAX_NAME)
        self.invocation = to_str(get(event, "invocation_id"), MAX_NAME) or self.invocation
        at = _stamp(event)
        if author == "user":
            self._user(event)
            return
        if author and author not in self.agents:
            self.agents.append(author)
        usage = get(event, "usage_metadata")
        model = to_str(get(event, "model_version"), MAX_NAME)
        if usage is not None or model is not None:
            self.usages.append(usage_of(usage))  # one model response
            self.model = model or self.model
            self.tier = service_tier(usage) or self.tier
        code = get(event, "error_code")
        if code is not None:
            self.errors += 1
            kind = enum_name(code) or "error"
            self.error = ErrorInfo(type=kind, message=to_str(get(event, "error_message"),
                                                             MAX_TEXT) or kind)
        long_running = _ids(get(event, "long_running_tool_ids"))
        has_call = False
        for part in _parts(event):
            call = get(part, "function_call")
            if call is not None:
                has_call = True
                self._call(call, at, long_running)
            reply = get(part, "function_response")
            if reply is not None:
                self.ledger.response(reply, at)
        actions = get(event, "actions")
        self.confirmations |= _ids(get(actions, "requested_tool_confirmations"))
        self.confirmations |= _ids(get(actions, "requested_auth_configs"))
        target = to_str(get(actions, "transfer_to_agent"), MAX_NAME)
        if target:
            self.transfers.append({"from": author, "to": target})
        text = text_of(get(event, "content"))
        if text is not None and not has_call and get(get(event, "content"), "role") != "user":
            self.response = text

    def _user(self, event: Any) -> None:
        for part in _parts(event):
            reply = get(part, "function_response")
            rid = to_str(get(reply, "id"), MAX_NAME)
            if rid is not None:
                self.answered.add(rid)  # a human (or the app) answered an interrupt
        if self.prompt is None:
            self.prompt = text_of(get(event, "content"))

    def _call(self, call: object, at: _dt.datetime | None, long_running: set[str]) -> None:
        name = to_str(get(call, "name"), MAX_NAME) or "tool"
        cid = to_str(get(call, "id"), MAX_NAME)
        if name in _CLIENT_CALLS:
            if cid is not None and (cid in long_running or name in _INTERRUPT_CALLS):
                self.interrupts[cid] = name
            return
        self.ledger.call(call, at)
        if cid is not None and cid in long_running:
            self.interrupts[cid] = name

    def result(self, events: int, streamed: bool) -> ExecutionResult:
        open_ids = {i for i in self.interrupts if i not in self.answered}
        pending = open_ids | {i for i in self.confirmations if i not in self.answered}
        for call in self.ledger.calls:
            if call["call_id"] in pending:
                call.update(success=None, error=None)  # waiting, neither done nor failed
            if call["call_id"] in self.confirmations and call["call_id"] not in self.answered:
                call.update(duration_ms=None, started_at=None)  # it has not run yet
        extras: dict[str, JsonValue] = {"events": events}
        if streamed:
            extras["streamed"] = True
        if self.partial:
            extras["partial_events"] = self.partial
        if self.errors:
            extras["error_events"] = self.errors
        if self.agents:
            extras["agents"] = list(self.agents[:_MAX_EVENTS_LISTED])
            extras["last_agent"] = self.agents[-1]
        if self.transfers:
            extras["transfers"] = self.transfers[:_MAX_EVENTS_LISTED]
        if self.invocation:
            extras["invocation_id"] = self.invocation
        paused = bool(open_ids) and self.error is None
        if pending:
            names = {self.interrupts[i] for i in open_ids}
            names |= {c["name"] for c in self.ledger.calls if c["call_id"] in pending}
            extras["pending"] = list[JsonValue](sorted(names))
        return ExecutionResult(
            success=self.error is None,
            error=self.error,
            paused=paused,
            tokens=sum_usage(self.usages),
            iterations=len(self.usages) if events else None,
            tool_calls=self.ledger.tool_calls(timed=True) if events else None,
            model=self.model,
            provider=model_provider(self.model),
            service_tier=self.tier,
            response=self.response,
            input=self.prompt,
            extras=extras,
        )


def _from_events(events: list[Any], *, streamed: bool) -> ExecutionResult:
    run = _Run()
    for event in events:
        run.read(event)
    return run.result(len(events), streamed)


ADAPTER = GoogleADKAdapter()
