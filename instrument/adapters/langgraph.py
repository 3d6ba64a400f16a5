"""The ``langgraph`` adapter: LangGraph runs and LangChain chat model answers.

Understands:

- a graph's state as ``invoke``/``ainvoke`` return it: a dict with ``messages`` (the
  ``MessagesState`` convention), and the ``__interrupt__`` key when the run stopped at
  ``interrupt()``;
- ``invoke(..., version="v2")``'s ``GraphOutput`` (``.value`` is the state, ``.interrupts`` the
  interrupts; LangGraph >= 1.1);
- a bare ``AIMessage`` (``chat_model.invoke(...)``);
- what a generator executor yielded from ``stream``/``astream`` (as
  :class:`~instrument.adapters.protocol.StreamedItems`): any ``stream_mode`` (``values``,
  ``updates``, ``messages``, several at once), with ``subgraphs=True`` or not, v1 tuples or
  v2 ``{"type", "ns", "data"}`` parts; and the ``AIMessageChunk`` items of a chat model's own
  ``stream()``.

Which messages belong to this run: a state holds the whole thread (with a checkpointer, every
earlier turn too), so usage, iterations and tool calls are read from the messages after the
last human message, the one that started this turn (``extras["usage_scope"]`` says
``since_last_human_message``); summing the whole history would count earlier turns again. A
run resumed after an interrupt (``Command(resume=...)``) adds no human message, so its record
counts the AI messages of the paused part again; stream with ``stream_mode="updates"`` to get
exactly the run's own messages (``usage_scope`` ``updates``). ``stream_mode="values"`` repeats
the whole state at every step, so only its last state is read (never summed). Under
``"messages"`` alone, usage is the sum of the streamed chunks (each carries its own part) and
the model asked for is the chunks' ``ls_model_name``.

Fields: usage summed over the run's AI messages (see :mod:`instrument.adapters._langchain` for
the token definition: LangChain's already matches ours), iterations (AI messages: one per model
request), tool calls from ``AIMessage.tool_calls`` matched with their ``ToolMessage`` (status
``error`` is a failed call), the model that answered (``response_metadata`` ``model_name`` /
``model``), the model asked for (``ls_model_name``, streamed runs only), the provider
(``model_provider``, else ``ls_provider``), ``service_tier``, the answer (the last AI message's
text) and the input (the human message that started the turn). A run stopped by an
``interrupt()`` is ``paused`` (``extras["interrupts"]``, ``interrupt_ids``). A final answer cut
off at the token limit or withheld by a content filter is a failure (``max_tokens`` /
``content_filter``). Exceptions a graph raises (``GraphRecursionError``, a failing node) are
recorded by the decorator as failed executions.

Detection never imports LangChain or LangGraph: objects are recognized by their type's module,
and a plain dict by its keys (``messages`` or ``__interrupt__``, and none of the keys that make
it another built-in's: ``success``/``tokens`` for ``mapping``, the orchestrator's and
AgentKit's signatures), once ``langchain_core`` or ``langgraph`` is loaded: no dict can hold
their messages before.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any, Final

from pydantic import JsonValue

from instrument.adapters._coerce import (
    MAX_NAME,
    field,
    has_field,
    is_mapping,
    seq,
    to_str,
    type_name,
)
from instrument.adapters._langchain import Msg, is_message, merge_chunks, read, summarize
from instrument.adapters._openai import ends
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult

__all__ = ["ADAPTER", "LangGraphAdapter"]

_INTERRUPT: Final = "__interrupt__"
_MODES: Final = frozenset({"values", "updates", "messages", "custom", "checkpoints", "tasks",
                           "debug"})
#: Keys that make a dict another built-in's: the ``mapping`` adapter's (ExecutionResult's own
#: fields), the workflow orchestrator's and AgentKit's (their signatures).
_NOT_OURS: Final = ("success", "tokens", "stepsCompleted", "totalExecutionTime", "toolCalls",
                    "tokensUsed", "memoryData")
_MAX_PARTS: Final = 100_000


def _loaded() -> bool:
    return "langchain_core" in sys.modules or "langgraph" in sys.modules


def _is_graph_output(obj: object) -> bool:
    cls = type(obj)
    return cls.__name__ == "GraphOutput" and cls.__module__.startswith("langgraph")


def _is_ai(obj: object) -> bool:
    return is_message(obj) and type(obj).__name__.startswith("AIMessage")


def _is_state_dict(obj: object) -> bool:
    """A graph state by its keys only (see registry.keys_decide)."""
    try:
        if not isinstance(obj, dict):
            return False
        return ((("messages" in obj) or (_INTERRUPT in obj))
                and not any(k in obj for k in _NOT_OURS) and _loaded())
    except Exception:  # a dict subclass with a hostile __contains__: not ours
        return False


class LangGraphAdapter:
    """``langgraph``: graph states, ``GraphOutput``, ``AIMessage`` and streamed runs."""

    name = "langgraph"
    #: matches() on a plain dict looks only at its keys (see registry.keys_decide)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return _loaded() and any(_is_part(item) for item in ends(result))
        return _is_graph_output(result) or _is_ai(result) or _is_state_dict(result)

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_stream(result)
        if _is_graph_output(result):
            value = field(result, "value")
            interrupts = seq(field(result, "interrupts"))
            return _from_state(value, interrupts or [], {"output": "GraphOutput"})
        if _is_ai(result):
            return _from_messages([read(result)], {}, final=True)
        if is_mapping(result):
            interrupts = seq(field(result, _INTERRUPT))
            return _from_state(result, interrupts or [], {})
        raise TypeError(
            f"langgraph cannot normalize a {type_name(result)}; it reads graph states (a dict "
            "with 'messages'), GraphOutput, AIMessage and streamed parts")


# --------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------


def _from_state(state: object, interrupts: list[object],
                extras: dict[str, JsonValue]) -> ExecutionResult:
    """A run from the state it ended with: the messages since the last human message."""
    messages = [m for m in _messages_in(state) if m is not None]
    start = max((i for i, m in enumerate(messages) if m.kind == "human"), default=-1)
    prompt = messages[start].text if start >= 0 else None
    extras = {**extras, "usage_scope": "since_last_human_message"}
    return _from_messages(messages[start + 1:], extras, final=not interrupts,
                          interrupts=interrupts, prompt=prompt)


def _from_messages(messages: Sequence[Msg | None], extras: dict[str, JsonValue], *, final: bool,
                   interrupts: list[object] | None = None, prompt: str | None = None,
                   request_model: str | None = None, ls_provider: str | None = None,
                   ) -> ExecutionResult:
    summary = summarize([m for m in messages if m is not None], final=final)
    out: dict[str, JsonValue] = {**extras, **summary.extras}
    if interrupts:
        out["interrupts"] = len(interrupts)
        ids = [to_str(field(i, "id"), MAX_NAME, scalars=False) for i in interrupts[:100]]
        kept: list[JsonValue] = [i for i in ids if i]
        if kept:
            out["interrupt_ids"] = kept
    return ExecutionResult(
        success=summary.error is None,
        error=summary.error,
        tokens=summary.tokens,
        iterations=summary.iterations,
        tool_calls=summary.tool_calls,
        model=summary.model,
        request_model=request_model,
        provider=summary.provider or ls_provider,
        service_tier=summary.service_tier,
        response=summary.response,
        input=prompt,
        paused=bool(interrupts),
        extras=out,
    )


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _is_message_pair(item: object) -> bool:
    """``(message, metadata)``: one ``stream_mode="messages"`` item."""
    return (type(item) is tuple and len(item) == 2 and is_message(item[0])
            and isinstance(item[1], dict))


def _holds_messages(value: object) -> bool:
    """A state or node update whose ``messages`` end with a LangChain message."""
    messages = value.get("messages") if type(value) is dict else None
    if is_message(messages):
        return True
    return type(messages) is list and bool(messages) and is_message(messages[-1])


def _messages_in(value: object) -> list[Msg | None]:
    """The messages of a state or a node's update: a list, or one message on its own."""
    messages = field(value, "messages")
    if is_message(messages):
        return [read(messages)]
    return [read(m) for m in seq(messages, _MAX_PARTS) or ()]


def _is_part(item: object) -> bool:
    """Whether a yielded item is something LangGraph (or a LangChain model) streams."""
    try:
        if type(item) is dict:
            if {"type", "ns", "data"} <= item.keys():
                return item["type"] in _MODES and isinstance(item["ns"], tuple)
            if _INTERRUPT in item or _holds_messages(item):
                return True
            return any(_holds_messages(v) for v in list(item.values())[:16])
        if type(item) is tuple:
            if _is_message_pair(item):
                return True
            if len(item) == 2 and isinstance(item[0], (str, tuple)):
                head, payload = item
                if isinstance(head, str) and head not in _MODES:
                    return False
                return _is_part(payload) or _is_message_pair(payload)
            if len(item) == 3 and isinstance(item[0], tuple) and item[1] in _MODES:
                return _is_part(item[2]) or _is_message_pair(item[2])
            return False
        return _is_ai(item)
    except Exception:  # an item whose inspection raises is not a stream part
        return False


def _parts(items: StreamedItems) -> Iterator[tuple[str, tuple[Any, ...], Any, Any]]:
    """(mode, namespace, data, interrupts) for each recognizable streamed item."""
    for item in items:
        if type(item) is dict and {"type", "ns", "data"} <= item.keys() \
                and item.get("type") in _MODES:
            ns = item.get("ns")
            yield (item["type"], ns if isinstance(ns, tuple) else (), item["data"],
                   item.get("interrupts"))
        elif type(item) is tuple and len(item) == 3 and isinstance(item[0], tuple):
            yield str(item[1]), item[0], item[2], None
        elif type(item) is tuple and len(item) == 2 and not _is_message_pair(item):
            head, payload = item
            if isinstance(head, str):
                yield head, (), payload, None
            elif isinstance(head, tuple):
                yield _mode_of(payload), head, payload, None
        else:
            yield _mode_of(item), (), item, None


def _mode_of(item: object) -> str:
    """The mode of a single-mode v1 item: a message pair, a full state, or node updates."""
    if _is_message_pair(item) or _is_ai(item):
        return "messages"
    if is_mapping(item) and has_field(item, "messages"):
        return "values"
    return "updates"


def _from_stream(items: StreamedItems) -> ExecutionResult:
    updates: list[Msg | None] = []
    saw_updates = False
    last_values: object = None
    values_interrupts: list[object] = []
    interrupts: list[object] = []
    chunks: dict[str, list[Msg]] = {}
    streamed: list[Msg] = []
    modes: set[str] = set()
    request_model: str | None = None
    ls_provider: str | None = None
    for mode, ns, data, part_interrupts in _parts(items):
        modes.add(mode)
        if mode == "messages":
            message, meta = (data if type(data) is tuple and len(data) == 2 else (data, {}))
            view = read(message)
            if view is None:
                continue
            if is_mapping(meta):
                request_model = to_str(meta.get("ls_model_name"), MAX_NAME) or request_model
                ls_provider = to_str(meta.get("ls_provider"), MAX_NAME) or ls_provider
            if view.kind == "ai" and view.chunk:
                key = view.id or f"#{len(chunks)}"
                if key not in chunks:
                    streamed.append(Msg(kind="ai", id=key))  # a placeholder, merged below
                chunks.setdefault(key, []).append(view)
            else:
                streamed.append(view)
        elif ns:  # a subgraph's states and updates: its messages reach the root's too
            continue
        elif mode == "values":
            last_values = data
            values_interrupts = list(seq(part_interrupts) or ())
            values_interrupts += list(seq(field(data, _INTERRUPT)) or ())
        elif mode == "updates" and is_mapping(data):
            saw_updates = True
            for node, update in data.items():
                if node == _INTERRUPT:
                    interrupts += list(seq(update) or ())
                    continue
                for out in (seq(update) or [update]):  # a node may write several updates
                    if is_mapping(out):
                        updates += _messages_in(out)
    seen: list[JsonValue] = [m for m in sorted(modes) if m in _MODES]
    extras: dict[str, JsonValue] = {"streamed": True, "stream_modes": seen}
    interrupts = interrupts or values_interrupts
    if saw_updates:
        extras["usage_scope"] = "updates"
        result = _from_messages(updates, extras, final=not interrupts, interrupts=interrupts,
                                request_model=request_model, ls_provider=ls_provider)
        return _with_input(result, last_values)
    if last_values is not None:
        result = _from_state(last_values, values_interrupts, extras)
        return result.model_copy(update={"request_model": request_model,
                                         "provider": result.provider or ls_provider})
    merged = [merge_chunks(chunks[m.id]) if m.kind == "ai" and m.id in chunks else m
              for m in streamed]
    extras["usage_scope"] = "message_chunks"
    return _from_messages(merged, extras, final=True, request_model=request_model,
                          ls_provider=ls_provider)


def _with_input(result: ExecutionResult, state: object) -> ExecutionResult:
    """The prompt from the last values state, when the stream had one (updates carry none)."""
    if state is None:
        return result
    prompt = next((m.text for m in reversed(_messages_in(state))
                   if m is not None and m.kind == "human"), None)
    return result.model_copy(update={"input": prompt}) if prompt else result


ADAPTER = LangGraphAdapter()


def conformance_samples() -> list[object]:
    """A real graph run (a tool that works, one that fails, an answer) and a paused one, for
    :func:`instrument.adapters.conformance.check_adapter`; driven by LangChain's own fake chat
    model, offline. Run: ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k langgraph``.
    """
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from instrument.adapters.conformance import Sample

    @tool
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: shipped to 221B Baker Street"

    @tool
    def cancel_order(order_id: str) -> str:
        """Cancel an order."""
        raise RuntimeError(f"order {order_id} is locked by the warehouse")

    usage = {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150,
             "input_token_details": {"cache_read": 64, "cache_creation": 0},
             "output_token_details": {"reasoning": 12}}
    meta = {"model_name": "gpt-4.1-mini-2025-04-14", "model_provider": "openai"}
    model = FakeMessagesListChatModel(responses=[
        AIMessage("", tool_calls=[
            {"name": "lookup_order", "args": {"order_id": "A-1001"}, "id": "call_1"},
            {"name": "cancel_order", "args": {"order_id": "A-1001"}, "id": "call_2"}],
            usage_metadata=usage, response_metadata={**meta, "finish_reason": "tool_calls"}),
        AIMessage("Your order has shipped; it can no longer be cancelled.",
                  usage_metadata=usage, response_metadata={**meta, "finish_reason": "stop"}),
    ])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup_order, cancel_order], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    state = graph.compile().invoke({"messages": [HumanMessage("Where is order A-1001?")]})
    updates = StreamedItems(graph.compile().stream(
        {"messages": [HumanMessage("Where is order A-1001?")]}, stream_mode="updates"))
    bare = AIMessage("Hello!", usage_metadata={"input_tokens": 9, "output_tokens": 3,
                                               "total_tokens": 12},
                     response_metadata={**meta, "finish_reason": "stop"})
    return [
        Sample(state, unmeasured={"retries", "steps", "memory", "workflow"}, label="state"),
        Sample(updates, unmeasured={"retries", "steps"}, label="stream_mode=updates"),
        Sample(bare, unmeasured={"tokens.cached_input_tokens", "tokens.reasoning_tokens",
                                 "input"}, label="AIMessage"),
    ]

