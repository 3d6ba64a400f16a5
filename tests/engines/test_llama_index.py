"""Real LlamaIndex agent workflows (``FunctionAgent``, ``ReActAgent``), fully offline: a scripted
``FunctionCallingLLM`` answers with tool calls and provider-shaped raw responses (an OpenAI
``ChatCompletion``, an Anthropic ``Message``), with the ``llama_index`` adapter. Records asserted
field by field, in the four tables of a real SQLite store and on the span."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ReActAgent
from llama_index.core.llms import ChatMessage, ChatResponse, LLMMetadata
from llama_index.core.llms.callbacks import llm_chat_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import ToolSelection
from llama_index.core.workflow import Context, HumanResponseEvent, InputRequiredEvent
from llama_index.core.workflow.errors import WorkflowRuntimeError
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import PrivateAttr

from instrument import logged_execution
from instrument.adapters import StreamedItems, detect_adapter, get_adapter
from instrument.adapters.conformance import Sample, check_adapter
from instrument.adapters.protocol import DeferredAdapter
from instrument.record import ExecutionRecord, TokenUsage
from instrument.redact import Redactor
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.rows import store_rows

#: One OpenAI request's usage, as the API reports it (input includes cached; output reasoning).
OPENAI_USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 30},
                "completion_tokens_details": {"reasoning_tokens": 5}}
ONE = TokenUsage(input_tokens=100, output_tokens=20, total_tokens=120, cached_input_tokens=30,
                 reasoning_tokens=5)
MODEL = "gpt-4o-mini-2024-07-18"


def times(n: int) -> TokenUsage:
    return TokenUsage(input_tokens=100 * n, output_tokens=20 * n, total_tokens=120 * n,
                      cached_input_tokens=30 * n, reasoning_tokens=5 * n)


def chat_completion(text: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The raw response LlamaIndex keeps: a real ChatCompletion, dumped as its OpenAI LLM does."""
    from openai.types.chat import ChatCompletion

    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
            "name": c["name"], "arguments": json.dumps(c["args"])}} for c in calls]
    return ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": MODEL, "usage": OPENAI_USAGE,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if calls else "stop"}]}).model_dump()


class ScriptedLLM(FunctionCallingLLM):
    """Answers each request with the next scripted turn ({"text", "calls", "raw"})."""

    _turns: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    def __init__(self, turns: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._turns = list(turns)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_function_calling_model=True, model_name="gpt-4o-mini")

    def _next(self) -> tuple[ChatMessage, Any]:
        turn = self._turns.pop(0)
        calls = turn.get("calls", [])
        message = ChatMessage(role="assistant", content=turn.get("text", ""),
                              additional_kwargs={"tool_calls": calls})
        raw = turn.get("raw", chat_completion(turn.get("text", ""), calls))
        return message, raw

    @llm_chat_callback()
    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        message, raw = self._next()
        return ChatResponse(message=message, raw=raw)

    @llm_chat_callback()
    async def achat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the agents here stream asynchronously")

    @llm_chat_callback()
    async def astream_chat(self, messages: Any, **kwargs: Any) -> Any:
        message, raw = self._next()
        text = message.content or ""
        pieces = [text[:4], text[4:]] if text else [""]

        async def gen() -> AsyncIterator[ChatResponse]:
            sofar = ""
            for i, piece in enumerate(pieces):
                sofar += piece
                last = i == len(pieces) - 1
                # Like OpenAI with include_usage: only the last chunk carries the usage.
                yield ChatResponse(
                    message=ChatMessage(role="assistant", content=sofar, additional_kwargs=(
                        message.additional_kwargs if last else {})),
                    delta=piece, raw=raw if last else {"id": "chunk", "model": MODEL})

        return gen()

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def stream_complete(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def acomplete(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def astream_complete(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _prepare_chat_with_tools(self, tools: Any, user_msg: Any = None,
                                 chat_history: Any = None, verbose: bool = False,
                                 allow_parallel_tool_calls: bool = False,
                                 **kwargs: Any) -> dict[str, Any]:
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(user_msg if isinstance(user_msg, ChatMessage)
                            else ChatMessage(role="user", content=user_msg))
        return {"messages": messages, "tools": tools}

    def get_tool_calls_from_response(self, response: ChatResponse,
                                     error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        return [ToolSelection(tool_id=c["id"], tool_name=c["name"], tool_kwargs=c["args"])
                for c in response.message.additional_kwargs.get("tool_calls", [])]


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def broken_tool(city: str) -> str:
    """A tool whose backend is down."""
    raise RuntimeError("backend down at 10.0.0.7")


async def approve_refund(ctx: Context, amount: int) -> str:
    """Refunds `amount` once a human approved it."""
    answer = await ctx.wait_for_event(
        HumanResponseEvent, waiter_event=InputRequiredEvent(prefix=f"Refund {amount}?"))
    return f"refund {answer.response}"


# LlamaIndex finds the context parameter by its annotation's type, which this module's
# postponed annotations turn into a string.
approve_refund.__annotations__["ctx"] = Context


def call(name: str, call_id: str, **args: Any) -> dict[str, Any]:
    return {"id": call_id, "name": name, "args": args}


WEATHER_TURNS = [{"calls": [call("get_weather", "c1", city="Paris"),
                            call("broken_tool", "c2", city="Oslo")]},
                 {"text": "Sunny in Paris."}]


def function_agent(turns: list[dict[str, Any]], *, streaming: bool = False) -> FunctionAgent:
    return FunctionAgent(tools=[get_weather, broken_tool, approve_refund], llm=ScriptedLLM(turns),
                         streaming=streaming)


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


def tool_calls(record: ExecutionRecord) -> list[tuple[str, str | None, bool | None, str | None]]:
    return [(c.name, c.call_id, c.success, c.error) for c in record.result.tool_calls or []]


WEATHER_CALLS = [("get_weather", "c1", True, None), ("broken_tool", "c2", False, "RuntimeError")]


@pytest.fixture
def spans() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, content_to_spans=False, redactor=Redactor()), exporter
    provider.shutdown()


def our_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans()
             if s.instrumentation_scope is not None
             and s.instrumentation_scope.name == "logged-execution"
             and s.name.startswith("invoke_")]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


# -- the awaited AgentOutput --------------------------------------------------------------------


async def test_awaited_output_of_a_single_request_is_exact(
        spans: tuple[Tracing, InMemorySpanExporter], tmp_path: Path) -> None:
    agent = function_agent([{"text": "Hello there."}])

    @logged_execution(agent_id="agent_id", user_id="user_id")
    async def execute(agent_id: str, user_id: str) -> AgentOutput:
        return await agent.run(user_msg="hi")

    tracing, exporter = spans
    with capture(tracing=tracing, capture_content=True) as cap:
        out = await execute("helper", "u-7")
    assert isinstance(out, AgentOutput)
    r = only(cap)
    assert (r.engine, r.status) == ("llama_index", "completed")
    res = r.result
    assert (res.tokens, res.iterations, res.model, res.provider) == (ONE, 1, MODEL, "openai")
    assert res.request_model is None  # the output does not say which model was asked for
    assert (res.response, res.tool_calls) == ("Hello there.", [])
    assert res.extras == {"agent": "Agent"}

    attrs = dict(our_span(exporter).attributes or {})
    assert attrs["instrument.status"] == "completed"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (100, 20)
    assert attrs["gen_ai.response.model"] == MODEL

    rows = store_rows(cap.records, tmp_path / "li.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["model"], ex["provider"]) == (
        "llama_index", "completed", MODEL, "openai")
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (100, 20, 120)
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 120)
    assert (rows.stats["run_count"], rows.stats["total_tokens"]) == (1, 120)
    assert (rows.intensity["total_input_tokens"], rows.intensity["total_output_tokens"],
            rows.intensity["total_tool_calls"]) == (100, 20, 0)


async def test_awaited_output_after_tool_calls_keeps_only_what_it_knows() -> None:
    """The final output carries every tool call but only the last request's usage."""
    agent = function_agent(WEATHER_TURNS)

    @logged_execution
    async def execute() -> AgentOutput:
        return await agent.run(user_msg="Weather in Paris and Oslo?")

    with capture(capture_content=True) as cap:
        await execute()
    r = only(cap)
    assert r.status == "completed"
    assert tool_calls(r) == WEATHER_CALLS
    assert (r.result.tokens, r.result.iterations) == (None, None)  # not measured, not 1 request
    assert r.result.extras["usage_scope"] == "last_response"
    assert r.result.extras["last_response_usage"] == ONE.model_dump(exclude_none=True)
    assert r.result.response == "Sunny in Paris."


async def test_anthropic_raw_usage_is_converted_to_include_the_cache() -> None:
    raw = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "stop_reason": "end_turn", "content": [{"type": "text", "text": "Hi."}],
           "usage": {"input_tokens": 40, "output_tokens": 12, "cache_read_input_tokens": 300,
                     "cache_creation_input_tokens": 60}}
    agent = function_agent([{"text": "Hi.", "raw": raw}])

    @logged_execution
    async def execute() -> AgentOutput:
        return await agent.run(user_msg="hi")

    with capture() as cap:
        await execute()
    res = only(cap).result
    assert (res.model, res.provider) == ("claude-sonnet-4-5", "anthropic")
    # Anthropic's input excludes cache reads and writes: 40 + 300 + 60
    assert res.tokens == TokenUsage(input_tokens=400, output_tokens=12, total_tokens=412,
                                    cached_input_tokens=300, cache_write_input_tokens=60)


async def test_react_agent_answer() -> None:
    llm = ScriptedLLM([{"text": "Thought: I can answer without tools.\nAnswer: 42"}])
    agent = ReActAgent(tools=[get_weather], llm=llm, streaming=False)

    @logged_execution
    async def execute() -> AgentOutput:
        return await agent.run(user_msg="the answer?")

    with capture(capture_content=True) as cap:
        await execute()
    res = only(cap).result
    assert (res.response, res.tokens, res.iterations, res.tool_calls) == ("42", ONE, 1, [])


async def test_max_iterations_raised_is_a_failed_record() -> None:
    loop = [{"calls": [call("get_weather", f"c{i}", city="Rome")]} for i in range(3)]
    agent = function_agent(loop)

    @logged_execution
    async def execute() -> AgentOutput:
        return await agent.run(user_msg="loop", max_iterations=2)

    with capture() as cap, pytest.raises(WorkflowRuntimeError):
        await execute()
    r = only(cap)
    assert (r.status, r.result.error.type if r.result.error else None) == (
        "failed", "WorkflowRuntimeError")


# -- yielded events -----------------------------------------------------------------------------


async def test_yielded_events_sum_usage_over_every_request(
        spans: tuple[Tracing, InMemorySpanExporter], tmp_path: Path) -> None:
    agent = function_agent(WEATHER_TURNS, streaming=True)

    @logged_execution(agent_id="agent_id")
    async def execute(agent_id: str) -> AsyncIterator[Any]:
        handler = agent.run(user_msg="Weather in Paris and Oslo?")
        async for event in handler.stream_events():
            yield event
        await handler

    tracing, exporter = spans
    with capture(tracing=tracing, capture_content=True) as cap:
        events = [e async for e in execute("streamer")]
    streamed = [e for e in events if type(e).__name__ == "AgentStream"]
    assert len(streamed) >= 3  # chunks carry raw responses too: they are not summed
    r = only(cap)
    assert (r.engine, r.status) == ("llama_index", "completed")
    res = r.result
    assert (res.tokens, res.iterations, res.model) == (times(2), 2, MODEL)
    assert tool_calls(r) == WEATHER_CALLS
    assert res.response == "Sunny in Paris."
    assert res.extras == {"streamed": True, "agent": "Agent"}

    attrs = dict(our_span(exporter).attributes or {})
    assert (attrs["instrument.status"], attrs["gen_ai.usage.input_tokens"]) == ("completed", 200)

    rows = store_rows(cap.records, tmp_path / "events.db")[0]
    ex = rows.execution
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (200, 40, 240)
    assert [c["name"] for c in json.loads(ex["logs"])["tool_calls"]] == [
        "get_weather", "broken_tool"]
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 240)
    assert (rows.intensity["total_tool_calls"], rows.intensity["total_tokens_used"]) == (2, 240)


async def test_a_run_waiting_for_a_human_is_paused(tmp_path: Path) -> None:
    agent = function_agent([{"calls": [call("approve_refund", "r1", amount=40)]},
                            {"text": "Refund done."}])
    handlers: list[Any] = []

    @logged_execution(agent_id="agent_id")
    async def execute(agent_id: str) -> AsyncIterator[Any]:
        handler = agent.run(user_msg="Refund my order")
        handlers.append(handler)
        async for event in handler.stream_events():
            yield event
            if isinstance(event, InputRequiredEvent):
                return  # ask the human; the run waits

    with capture() as cap:
        events = [e async for e in execute("refunds")]
    assert isinstance(events[-1], InputRequiredEvent)
    r = only(cap)
    assert (r.status, r.result.success, r.result.paused) == ("paused", True, True)
    assert r.result.tokens == ONE
    assert tool_calls(r) == [("approve_refund", "r1", None, None)]
    assert r.result.extras["waiting_for"] == "input"
    rows = store_rows(cap.records, tmp_path / "paused.db")[0]
    assert (rows.execution["status"], rows.log["status"]) == ("paused", "paused")

    handler = handlers[0]  # the human answers: the same run finishes
    handler.ctx.send_event(HumanResponseEvent(response="approved"))
    out = await handler
    assert str(out) == "Refund done."


# -- a returned handler -------------------------------------------------------------------------


async def test_returned_handler_streamed_by_the_caller_has_the_totals() -> None:
    agent = function_agent(WEATHER_TURNS, streaming=True)

    @logged_execution
    async def execute() -> Any:
        return agent.run(user_msg="Weather in Paris and Oslo?")

    assert isinstance(get_adapter("llama_index"), DeferredAdapter)
    with capture(capture_content=True) as cap:
        handler = await execute()
        seen = [e async for e in handler.stream_events()]
        assert not cap.records  # not finished before the caller has its events
        out = await handler
        await asyncio.sleep(0)
    assert str(out) == "Sunny in Paris."
    assert seen
    r = only(cap)
    assert (r.engine, r.status) == ("llama_index", "completed")
    assert (r.result.tokens, r.result.iterations) == (times(2), 2)
    assert tool_calls(r) == WEATHER_CALLS
    assert r.result.response == "Sunny in Paris."


async def test_returned_handler_only_awaited_keeps_the_final_output() -> None:
    agent = function_agent(WEATHER_TURNS)

    @logged_execution
    async def execute() -> Any:
        return agent.run(user_msg="Weather?")

    with capture() as cap:
        handler = await execute()
        await handler
        await asyncio.sleep(0)
    r = only(cap)
    assert tool_calls(r) == WEATHER_CALLS
    assert r.result.tokens is None
    assert r.result.extras["usage_scope"] == "last_response"


async def test_returned_handler_whose_run_fails_is_a_failed_record() -> None:
    agent = function_agent([{"calls": [call("get_weather", f"c{i}", city="Rome")]}
                            for i in range(3)])

    @logged_execution
    async def execute() -> Any:
        return agent.run(user_msg="loop", max_iterations=2)

    with capture() as cap:
        handler = await execute()
        with pytest.raises(WorkflowRuntimeError):
            await handler
        await asyncio.sleep(0)
    r = only(cap)
    assert (r.status, r.result.error.type if r.result.error else None) == (
        "failed", "WorkflowRuntimeError")


async def test_returned_handler_cancelled_while_waiting_for_a_human_is_paused() -> None:
    agent = function_agent([{"calls": [call("approve_refund", "r1", amount=40)]}])

    @logged_execution
    async def execute() -> Any:
        return agent.run(user_msg="Refund my order")

    with capture() as cap:
        handler = await execute()
        async for event in handler.stream_events():
            if isinstance(event, InputRequiredEvent):
                break  # the question goes to a human; this process stops waiting
        await handler.cancel_run()
        await asyncio.sleep(0)
    r = only(cap)
    assert (r.status, r.result.success, r.result.paused) == ("paused", True, True)
    assert r.result.tokens == ONE
    assert tool_calls(r) == [("approve_refund", "r1", None, None)]


# -- detection and conformance ------------------------------------------------------------------


async def test_detection_and_conformance_on_real_results() -> None:
    out = await function_agent([{"text": "Hello."}]).run(user_msg="hi")
    agent = function_agent(WEATHER_TURNS)
    handler = agent.run(user_msg="Weather?")
    events = StreamedItems([e async for e in handler.stream_events()])
    with_tools = await handler
    assert detect_adapter(out).name == "llama_index"
    assert detect_adapter(events).name == "llama_index"
    assert detect_adapter({"response": "x", "tool_calls": []}).name != "llama_index"
    unmeasured = {"retries", "steps", "memory", "request_model"}
    # The tool calls' names and ids also sit in the model's raw response (`arguments`,
    # `content`...), which the checker's no-tool-payloads rule reads as payloads: the runs with
    # tools are checked field by field above; here a single-request run and the empty stream.
    check_adapter(get_adapter("llama_index"), [
        Sample(out, unmeasured=unmeasured, label="awaited output"),
        Sample(StreamedItems([e for e in events if type(e).__name__ == "AgentInput"]),
               unmeasured=unmeasured | {"tokens", "model", "provider", "response",
                                        "iterations"}, label="stream before any output"),
    ])
    assert with_tools.tool_calls


def test_foreign_results_do_not_import_llama_index() -> None:
    from tests.conftest import run_python

    done = run_python(
        "import sys\n"
        "import instrument\n"
        "from instrument.adapters import get_adapter\n"
        "from instrument.adapters.registry import detect_adapter\n"
        "from instrument.adapters.protocol import StreamedItems\n"
        "a = get_adapter('llama_index')\n"
        "for r in ({'success': True}, StreamedItems([{'delta': 'x'}]), 'text', 3):\n"
        "    a.matches(r); detect_adapter(r)\n"
        "print(sorted(m for m in ('llama_index', 'workflows') if m in sys.modules))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
