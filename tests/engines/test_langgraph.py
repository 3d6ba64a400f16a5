"""LangGraph and LangChain, driven for real and offline: real ``StateGraph`` /
``create_react_agent`` graphs, ``ToolNode`` with a working and a failing tool, ``interrupt()``
with a checkpointer, every stream mode, with LangChain's own fake chat model
(``FakeMessagesListChatModel``, answers scripted with ``usage_metadata`` and
``response_metadata`` as provider integrations fill them) and a ``BaseChatModel`` that streams
chunks the way ``langchain-openai`` does (usage and the dated model in the last chunk). Each
record is asserted field by field, in the four tables (a real SQLite store) and on the span."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, create_react_agent, tools_condition
from langgraph.types import Command, GraphOutput, interrupt
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument import logged_execution
from instrument.adapters import StreamedItems, detect_adapter, get_adapter
from instrument.record import ExecutionRecord, TokenUsage, ToolCall
from instrument.redact import Redactor
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.rows import store_rows

ANSWERED = "gpt-4.1-mini-2025-04-14"  # what the provider reports answered
ASKED = "gpt-4.1-mini"  # what the application configured (ls_model_name)
META = {"model_name": ANSWERED, "model_provider": "openai", "service_tier": "default"}
QUESTION = "Weather in Paris and Oslo?"
ANSWER = "Sunny in Paris; Oslo is unavailable."


def usage(inp: int, out: int, cache_read: int = 0, cache_write: int = 0,
          reasoning: int = 0) -> dict[str, Any]:
    """``usage_metadata`` as LangChain integrations report it (input includes the cache)."""
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out,
            "input_token_details": {"cache_read": cache_read, "cache_creation": cache_write},
            "output_token_details": {"reasoning": reasoning}}


TOOL_TURN = usage(200, 40, cache_read=128, cache_write=32, reasoning=16)
ANSWER_TURN = usage(300, 60, cache_read=256, cache_write=0, reasoning=24)
TWO_TURNS = TokenUsage(input_tokens=500, output_tokens=100, total_tokens=600,
                       cached_input_tokens=384, cache_write_input_tokens=32,
                       reasoning_tokens=40)
TOOL_CALLS = [ToolCall(name="get_weather", call_id="call_1", success=True),
              ToolCall(name="broken_weather", call_id="call_2", success=False,
                       error="the tool raised RuntimeError")]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@tool
def broken_weather(city: str) -> str:
    """A weather service that is down."""
    raise RuntimeError("weather backend down")


def scripted(finish: str = "stop") -> list[BaseMessage]:
    """One model request asking for two tools, then the answer."""
    return [
        AIMessage("", tool_calls=[
            {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"},
            {"name": "broken_weather", "args": {"city": "Oslo"}, "id": "call_2"}],
            usage_metadata=TOOL_TURN, response_metadata={**META, "finish_reason": "tool_calls"}),
        AIMessage(ANSWER, usage_metadata=ANSWER_TURN,
                  response_metadata={**META, "finish_reason": finish}),
    ]


class ToolCallingFake(FakeMessagesListChatModel):
    """LangChain's fake chat model, answering a fresh message each time (as real models do:
    the same message id twice would replace, not add, in the state), and accepting
    ``bind_tools``."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        result = super()._generate(messages, stop, run_manager, **kwargs)
        for generation in result.generations:
            generation.message = generation.message.model_copy(deep=True)
        return result

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


class StreamingFake(BaseChatModel):
    """Streams word by word like ``langchain-openai``: usage, the dated model and the finish
    reason arrive in the last chunk; ``_get_ls_params`` names the configured model."""

    reply: str = ANSWER

    @property
    def _llm_type(self) -> str:
        return "streaming-fake"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"], params["ls_model_name"] = "openai", ASKED
        return params

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            text = word if i == len(words) - 1 else f"{word} "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager is not None:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        last = ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=ANSWER_TURN,
            response_metadata={**META, "finish_reason": "stop"}, chunk_position="last"))
        if run_manager is not None:
            run_manager.on_llm_new_token("", chunk=last)
        yield last


def tool_graph(model: BaseChatModel, *, checkpointer: Any = None) -> Any:
    """agent -> tools (one works, one raises; ToolNode reports it) -> agent."""
    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([get_weather, broken_weather], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def approval_graph() -> Any:
    """The model drafts, then a node waits for a human at ``interrupt()``."""
    model = FakeMessagesListChatModel(responses=[AIMessage(
        "Draft: meeting moved to 3pm.", usage_metadata=usage(80, 20),
        response_metadata={**META, "finish_reason": "stop"})])

    def draft(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def approve(state: MessagesState) -> dict[str, Any]:
        verdict = interrupt({"question": "Send this email?"})
        return {"messages": [AIMessage(f"Sent ({verdict}).")]}

    graph = StateGraph(MessagesState)
    graph.add_node("draft", draft)
    graph.add_node("approve", approve)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "approve")
    graph.add_edge("approve", END)
    return graph.compile(checkpointer=InMemorySaver())


def ask(question: str = QUESTION) -> dict[str, Any]:
    return {"messages": [HumanMessage(question)]}


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def tracing(self) -> Tracing:
        return Tracing(self.provider, content_to_spans=False, redactor=Redactor())

    def ours(self) -> ReadableSpan:
        found = [s for s in self.exporter.get_finished_spans()
                 if s.instrumentation_scope is not None
                 and s.instrumentation_scope.name == "logged-execution"]
        assert len(found) == 1, [s.name for s in self.exporter.get_finished_spans()]
        return found[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    found = Spans()
    yield found
    found.provider.shutdown()


def assert_span(span: ReadableSpan, record: ExecutionRecord) -> None:
    attrs = dict(span.attributes or {})
    assert attrs["instrument.status"] == record.status
    tokens = record.result.tokens
    assert tokens is not None
    assert attrs["gen_ai.usage.input_tokens"] == tokens.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == tokens.output_tokens
    assert attrs["gen_ai.response.model"] == record.result.model
    # what was asked, when known; never the answering model standing in for it
    assert attrs.get("gen_ai.request.model") in (None, record.result.request_model)


#: The SQLite store keeps `paused` once the stores count it (issue 15, being built alongside);
#: until then a paused run is stored as the success it also is.
PAUSED_STORED = ("paused", "completed")


# -- invoke: a state dict ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_react_agent_run_in_the_record_the_four_tables_and_the_span(
        tmp_path: Path, spans: Spans) -> None:
    tools = ToolNode([get_weather, broken_weather], handle_tool_errors=True)
    graph = create_react_agent(ToolCallingFake(responses=scripted()), tools)

    @logged_execution(agent_id="agent_id", user_id="user_id")
    def run(agent_id: str, user_id: str, question: str) -> dict[str, Any]:
        return graph.invoke(ask(question))

    with capture(capture_content=True, tracing=spans.tracing()) as cap:
        state = run("weather-agent", "u-1", QUESTION)
    assert state["messages"][-1].content == ANSWER  # the caller's result, untouched
    r = only(cap)
    assert (r.engine, r.status, r.agent_id, r.user_id) == ("langgraph", "completed",
                                                           "weather-agent", "u-1")
    res = r.result
    assert (res.success, res.error, res.paused) == (True, None, False)
    assert res.tokens == TWO_TURNS
    assert res.iterations == 2
    assert res.tool_calls == TOOL_CALLS
    assert (res.model, res.request_model, res.provider, res.service_tier) == (
        ANSWERED, None, "openai", "default")  # invoke does not say which model was asked
    assert (res.response, res.input) == (ANSWER, QUESTION)
    assert res.extras == {"usage_scope": "since_last_human_message", "finish_reason": "stop"}
    assert_span(spans.ours(), r)

    rows = store_rows(cap.records, tmp_path / "lg.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["model"], ex["provider"]) == (
        "langgraph", "completed", ANSWERED, "openai")
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (500, 100, 600)
    logs = json.loads(ex["logs"])
    assert logs["response"] == ANSWER
    assert [(c["name"], c["success"]) for c in logs["tool_calls"]] == [
        ("get_weather", True), ("broken_weather", False)]
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 600)
    assert (rows.stats["run_count"], rows.stats["success_count"], rows.stats["total_tokens"],
            rows.stats["token_run_count"]) == (1, 1, 600, 1)
    assert (rows.intensity["total_executions"], rows.intensity["n_token_runs"],
            rows.intensity["total_input_tokens"], rows.intensity["total_output_tokens"]) == (
        1, 1, 500, 100)


def test_a_thread_counts_only_the_turn_this_run_added() -> None:
    """With a checkpointer the state holds every earlier turn: the second record is the second
    turn's usage, not the thread's."""
    graph = tool_graph(ToolCallingFake(responses=scripted()), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t-1"}}

    @logged_execution(agent_id=lambda q: "a")
    def turn(question: str) -> dict[str, Any]:
        return graph.invoke(ask(question), config)  # type: ignore[no-any-return]

    with capture(capture_content=True) as cap:
        turn(QUESTION)
        state = turn("And tomorrow?")
    assert len(state["messages"]) == 10  # both turns are in the state
    first, second = cap.records
    assert first.result.tokens == second.result.tokens == TWO_TURNS
    assert second.result.iterations == 2
    assert second.result.input == "And tomorrow?"


def test_a_final_answer_cut_at_the_token_limit_is_a_failure(tmp_path: Path) -> None:
    graph = tool_graph(ToolCallingFake(responses=scripted(finish="length")))

    @logged_execution(agent_id=lambda _: "a")
    def run() -> dict[str, Any]:
        return graph.invoke(ask())  # type: ignore[no-any-return]

    with capture() as cap:
        run()
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == "max_tokens"
    assert r.result.tokens == TWO_TURNS  # what it spent is still counted
    rows = store_rows(cap.records, tmp_path / "cut.db")[0]
    assert (rows.execution["status"], rows.execution["error_type"]) == ("failed", "max_tokens")
    assert (rows.stats["failure_count"], rows.stats["total_tokens"]) == (1, 600)


def test_a_graph_that_raises_is_a_failed_record() -> None:
    looping = ToolCallingFake(responses=[scripted()[0]])  # asks for tools forever
    graph = tool_graph(looping)

    @logged_execution
    def run() -> dict[str, Any]:
        return graph.invoke(ask(), {"recursion_limit": 4})  # type: ignore[no-any-return]

    with capture() as cap, pytest.raises(GraphRecursionError):
        run()
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == "GraphRecursionError"


# -- interrupts: paused runs ---------------------------------------------------------------------


def test_interrupt_is_a_paused_run_in_v1_and_v2_and_the_resume_completes(
        tmp_path: Path, spans: Spans) -> None:
    graph = approval_graph()

    @logged_execution(agent_id=lambda thread, **kw: "mailer")
    def run(thread: str, payload: Any, version: str = "v1") -> Any:
        return graph.invoke(payload, {"configurable": {"thread_id": thread}}, version=version)

    with capture(capture_content=True, tracing=spans.tracing()) as cap:
        out = run("t-v2", ask("Move the meeting"), version="v2")
    assert isinstance(out, GraphOutput)
    assert len(out.interrupts) == 1
    r = only(cap)
    assert (r.engine, r.status) == ("langgraph", "paused")
    res = r.result
    assert (res.success, res.paused, res.error) == (True, True, None)
    assert res.tokens == TokenUsage(input_tokens=80, output_tokens=20, total_tokens=100,
                                    cached_input_tokens=0, cache_write_input_tokens=0,
                                    reasoning_tokens=0)
    assert res.iterations == 1
    assert res.extras["interrupts"] == 1
    assert res.extras["interrupt_ids"] == [out.interrupts[0].id]
    assert res.extras["output"] == "GraphOutput"
    assert_span(spans.ours(), r)
    rows = store_rows(cap.records, tmp_path / "paused.db")[0]
    assert rows.execution["status"] in PAUSED_STORED
    assert rows.execution["error_type"] is None
    assert (rows.execution["input_tokens"], rows.execution["output_tokens"]) == (80, 20)

    with capture(capture_content=True) as cap:
        old = run("t-v1", ask("Move the meeting"))  # v1: a dict with __interrupt__
        done = run("t-v1", Command(resume="approved"))
    assert "__interrupt__" in old
    assert "__interrupt__" not in done
    paused, resumed = cap.records
    assert (paused.status, resumed.status) == ("paused", "completed")
    assert paused.result.extras["interrupt_ids"] == [old["__interrupt__"][0].id]
    assert resumed.result.response == "Sent (approved)."
    # The resumed state adds no human message: its AI messages since the last one include the
    # paused part's draft (documented; stream_mode="updates" counts the resumed part only).
    assert resumed.result.iterations == 2
    assert resumed.result.extras["usage_scope"] == "since_last_human_message"


def test_resume_streamed_with_updates_counts_only_the_resumed_part() -> None:
    graph = approval_graph()
    config = {"configurable": {"thread_id": "t-u"}}

    @logged_execution(agent_id=lambda payload: "mailer")
    def run(payload: Any) -> Iterator[Any]:
        yield from graph.stream(payload, config, stream_mode="updates")

    with capture() as cap:
        list(run(ask("Move the meeting")))
        list(run(Command(resume="approved")))
    paused, resumed = cap.records
    assert (paused.status, paused.result.extras["usage_scope"]) == ("paused", "updates")
    assert paused.result.tokens is not None
    assert paused.result.tokens.total_tokens == 100
    assert (resumed.status, resumed.result.iterations) == ("completed", 1)
    assert resumed.result.tokens is None  # the resumed node made no model request with usage
    assert resumed.result.extras["messages_without_usage"] == 1


# -- streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["values", "updates", "messages"])
def test_stream_modes_count_each_model_request_once(mode: str) -> None:
    graph = tool_graph(ToolCallingFake(responses=scripted()))

    @logged_execution(agent_id=lambda _: "a")
    def run() -> Iterator[Any]:
        yield from graph.stream(ask(), stream_mode=mode)

    with capture(capture_content=True) as cap:
        parts = list(run())
    assert len(parts) >= 3  # values repeats the state: summing it would count 1+2+2+...
    r = only(cap)
    assert (r.engine, r.status) == ("langgraph", "completed")
    res = r.result
    assert res.tokens == TWO_TURNS
    assert res.iterations == 2
    assert res.tool_calls == TOOL_CALLS
    assert (res.model, res.provider, res.response) == (ANSWERED, "openai", ANSWER)
    assert res.extras["stream_modes"] == [mode]
    assert res.extras["usage_scope"] == {"values": "since_last_human_message",
                                         "updates": "updates",
                                         "messages": "message_chunks"}[mode]


async def test_astream_messages_from_a_streaming_model_names_the_model_asked(
        spans: Spans) -> None:
    graph = tool_graph(StreamingFake())

    @logged_execution(agent_id=lambda _: "streamer")
    async def run() -> AsyncIterator[Any]:
        async for part in graph.astream(ask(), stream_mode="messages"):
            yield part

    with capture(capture_content=True, tracing=spans.tracing()) as cap:
        parts = [p async for p in run()]
    assert len(parts) == len(ANSWER.split(" ")) + 1
    r = only(cap)
    res = r.result
    assert res.tokens == TokenUsage(input_tokens=300, output_tokens=60, total_tokens=360,
                                    cached_input_tokens=256, cache_write_input_tokens=0,
                                    reasoning_tokens=24)
    assert (res.model, res.request_model, res.provider) == (ANSWERED, ASKED, "openai")
    assert (res.response, res.iterations, res.tool_calls) == (ANSWER, 1, [])
    assert_span(spans.ours(), r)


def test_v2_parts_with_several_modes_and_subgraphs() -> None:
    """A subgraph's messages reach the root's updates too: they are counted once."""
    inner = tool_graph(StreamingFake())

    graph = StateGraph(MessagesState)
    graph.add_node("inner", inner)
    graph.add_edge(START, "inner")
    outer = graph.compile()

    @logged_execution(agent_id=lambda _: "nested")
    def run() -> Iterator[Any]:
        yield from outer.stream(ask(), stream_mode=["updates", "messages", "values"],
                                subgraphs=True, version="v2")

    with capture(capture_content=True) as cap:
        parts = list(run())
    assert any(p["ns"] for p in parts)  # the subgraph's own parts were streamed too
    res = only(cap).result
    assert res.tokens is not None
    assert res.tokens.total_tokens == 360
    assert (res.iterations, res.request_model, res.model) == (1, ASKED, ANSWERED)
    assert res.extras["usage_scope"] == "updates"
    assert res.input == QUESTION


# -- LangChain alone -----------------------------------------------------------------------------


def test_a_bare_ai_message_and_a_chat_model_stream() -> None:
    model = StreamingFake()

    @logged_execution(agent_id=lambda _: "chat")
    def once() -> AIMessage:
        return model.invoke("Weather?")

    @logged_execution(agent_id=lambda _: "chat")
    def streamed() -> Iterator[AIMessageChunk]:
        yield from model.stream("Weather?")

    with capture(capture_content=True) as cap:
        once()
        list(streamed())
    for r in cap.records:
        assert (r.engine, r.status) == ("langgraph", "completed")
        assert r.result.tokens is not None
        assert r.result.tokens.total_tokens == 360
        assert (r.result.model, r.result.iterations, r.result.response) == (
            ANSWERED, 1, ANSWER)
    assert cap.records[1].result.extras["usage_scope"] == "message_chunks"


def test_tool_calls_a_bare_message_asks_for_are_not_run_yet() -> None:
    message = scripted()[0]
    res = get_adapter("langgraph").normalize(message)
    assert res.tool_calls == [ToolCall(name="get_weather", call_id="call_1"),
                              ToolCall(name="broken_weather", call_id="call_2")]
    assert res.response is None  # no text: the model only asked for tools


# -- detection -----------------------------------------------------------------------------------


def test_dicts_are_told_apart_by_their_keys() -> None:
    state = {"messages": [HumanMessage("hi"), AIMessage("hello")]}
    assert detect_adapter(state).name == "langgraph"
    assert detect_adapter({"messages": [], "__interrupt__": ()}).name == "langgraph"
    others: list[tuple[dict[str, Any], str]] = [
        ({"success": True, "messages": ["hi"]}, "mapping"),
        ({"tokens": {}, "messages": []}, "mapping"),
        ({"response": "hi"}, "mapping"), ({"message": "hi"}, "mapping"),
        ({"messages": [], "toolCalls": []}, "agentkit")]
    for other, owner in others:
        assert detect_adapter(other).name == owner, other
    assert not get_adapter("langgraph").matches(StreamedItems(["a", "b"]))


def test_odd_input_is_normalized_without_raising() -> None:
    adapter = get_adapter("langgraph")
    odd: list[object] = [
        {"messages": "not a list"}, {"messages": [1, None, object()]},
        {"messages": [{"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}]},
        {"__interrupt__": "junk"},
        StreamedItems([{"type": "values", "ns": (), "data": None},
                       ("messages", (None, None)), ("updates", {"agent": 5})]),
        AIMessage(content=[{"type": "text", "text": "a"}, {"type": "image"}],
                  usage_metadata={"input_tokens": -1, "output_tokens": 2,
                                  "total_tokens": 1}),
    ]
    for item in odd:
        res = adapter.normalize(item)
        assert res.success is True, item
    dicts = adapter.normalize(odd[2])
    assert (dicts.response, dicts.input, dicts.iterations) == ("hello", "hi", 1)
    message = adapter.normalize(odd[-1])
    assert message.response == "a"
    assert message.tokens == TokenUsage(output_tokens=2, total_tokens=1)  # -1: not a count


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "role", "content", "usage_metadata", "input_tokens",
                         "tool_calls", "name", "id", "status", "tool_call_id", "x"]),
        inner, max_size=5),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(_JSON, max_size=6), interrupt=_JSON)
def test_any_state_normalizes_to_a_valid_result(messages: list[Any], interrupt: Any) -> None:
    """Foreign data in a state never raises and never yields a negative or invented count."""
    res = get_adapter("langgraph").normalize({"messages": messages, "__interrupt__": interrupt})
    res.model_dump_json()
    assert res.tokens is None or all(
        v is None or v >= 0 for v in res.tokens.model_dump().values())
    kinds = []
    for m in messages:
        if isinstance(m, dict):
            raw = m.get("type") or m.get("role")
            kinds.append({"ai": "ai", "assistant": "ai", "human": "human", "user": "human"}
                         .get(raw, "other") if isinstance(raw, str) else "other")
    after = kinds[len(kinds) - kinds[::-1].index("human"):] if "human" in kinds else kinds
    assert res.iterations == (after.count("ai") or None)  # AI messages since the last human


def test_detection_imports_no_framework() -> None:
    from tests.conftest import run_python

    done = run_python(
        "import sys\n"
        "from instrument.adapters.registry import detect_adapter\n"
        "from instrument.adapters.protocol import StreamedItems\n"
        "names = [detect_adapter(r).name for r in ({'messages': []}, {'__interrupt__': ()},\n"
        "         StreamedItems([{'messages': [1]}]), {'success': True})]\n"
        "print(names)\n"
        "print(sorted(m for m in ('langgraph', 'langchain_core', 'pydantic_ai')\n"
        "             if m in sys.modules))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    names, loaded = done.stdout.strip().splitlines()[-2:]
    # no LangChain loaded: no dict can hold its messages, so these are the fallback's
    assert names == "['mapping', 'mapping', 'mapping', 'mapping']"
    assert loaded == "[]"
