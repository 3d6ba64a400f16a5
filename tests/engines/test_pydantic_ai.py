"""PydanticAI, driven for real and offline: real ``Agent`` runs with tools, on PydanticAI's own
``FunctionModel`` (scripted responses with exact ``RequestUsage``: cache reads and writes,
reasoning) and ``TestModel``; ``run``/``run_sync``, ``run_stream``/``run_stream_sync``,
``run_stream_events``, ``iter``; a tool that asks for a retry, one that raises, one that needs
approval (``DeferredToolRequests``: paused). Records are asserted field by field, in the four
tables (a real SQLite store) and on the span."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ModelRetry
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.run import AgentRunResult
from pydantic_ai.usage import RequestUsage, RunUsage, UsageLimits

from instrument import logged_execution
from instrument.adapters import StreamedItems, detect_adapter, get_adapter
from instrument.record import ExecutionRecord, TokenUsage
from instrument.redact import Redactor
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.rows import store_rows

ANSWERED = "gpt-4.1-mini-2025-04-14"
QUESTION = "Where is order A-1001?"
ANSWER = "Order A-1001 has shipped."

#: per request: input (cache included), output (reasoning included), cache read/write, reasoning
FIRST = RequestUsage(input_tokens=200, output_tokens=40, cache_read_tokens=128,
                     cache_write_tokens=32, output_reasoning_tokens=16)
SECOND = RequestUsage(input_tokens=260, output_tokens=20, cache_read_tokens=192,
                      details={"reasoning_tokens": 8})  # older/custom models: in details
THIRD = RequestUsage(input_tokens=300, output_tokens=60, cache_read_tokens=256,
                     output_reasoning_tokens=24)
RUN = TokenUsage(input_tokens=760, output_tokens=120, total_tokens=880,
                 cached_input_tokens=576, cache_write_input_tokens=32, reasoning_tokens=48)


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Two tools at once (one retries), the retried call again, then the answer."""
    turn = sum(1 for m in messages if isinstance(m, ModelResponse))
    if turn == 0:
        return ModelResponse(parts=[
            ToolCallPart("lookup_order", {"order_id": "A-1001"}, tool_call_id="call_1"),
            ToolCallPart("cancel_order", {"order_id": "A-1001"}, tool_call_id="call_2"),
        ], usage=FIRST, model_name=ANSWERED)
    if turn == 1:
        return ModelResponse(parts=[
            ToolCallPart("cancel_order", {"order_id": "A-1001"}, tool_call_id="call_3"),
        ], usage=SECOND, model_name=ANSWERED)
    return ModelResponse(parts=[TextPart(ANSWER)], usage=THIRD, model_name=ANSWERED,
                         finish_reason="stop")


async def stream_script(messages: list[ModelMessage], info: AgentInfo
                        ) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
    """`script`, streamed (FunctionModel estimates a streamed response's usage itself)."""
    turn = sum(1 for m in messages if isinstance(m, ModelResponse))
    args = '{"order_id": "A-1001"}'
    if turn == 0:
        yield {0: DeltaToolCall("lookup_order", args, tool_call_id="call_1"),
               1: DeltaToolCall("cancel_order", args, tool_call_id="call_2")}
    elif turn == 1:
        yield {0: DeltaToolCall("cancel_order", args, tool_call_id="call_3")}
    else:
        for word in ANSWER.split(" "):
            yield word if word.endswith(".") else f"{word} "


def streamed_tokens(usage: RunUsage) -> TokenUsage:
    """The framework's own count for one streamed run (nothing carried in)."""
    return TokenUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                      total_tokens=usage.input_tokens + usage.output_tokens,
                      cached_input_tokens=usage.cache_read_tokens,
                      cache_write_input_tokens=usage.cache_write_tokens,
                      reasoning_tokens=usage.output_reasoning_tokens)


def make_agent() -> Agent[None, str]:
    agent = Agent(FunctionModel(script, stream_function=stream_script,
                                model_name="gpt-4.1-mini"))
    attempts = {"cancel": 0}

    @agent.tool_plain
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"{order_id}: shipped"

    @agent.tool_plain
    def cancel_order(order_id: str) -> str:
        """Cancel an order."""
        attempts["cancel"] += 1
        if attempts["cancel"] == 1:
            raise ModelRetry("the warehouse is busy, try again")
        return f"{order_id}: too late to cancel"

    return agent


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

    def all_ours(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans()
                if s.instrumentation_scope is not None
                and s.instrumentation_scope.name == "logged-execution"]

    def ours(self) -> ReadableSpan:
        """The execution's span (tool calls with a start time get ``execute_tool`` spans)."""
        found = [s for s in self.all_ours() if not s.name.startswith("execute_tool")]
        assert len(found) == 1, [s.name for s in self.all_ours()]
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
    assert attrs.get("gen_ai.request.model") in (None, record.result.request_model)


#: The SQLite store keeps `paused` once the stores count it (issue 15, being built alongside);
#: until then a paused run is stored as the success it also is.
PAUSED_STORED = ("paused", "completed")


# -- run / run_sync --------------------------------------------------------------------------


def test_run_with_tools_in_the_record_the_four_tables_and_the_span(
        tmp_path: Path, spans: Spans) -> None:
    agent = make_agent()

    @logged_execution(agent_id="agent_id", user_id="user_id")
    def run(agent_id: str, user_id: str, question: str) -> AgentRunResult[str]:
        return agent.run_sync(question)

    with capture(capture_content=True, tracing=spans.tracing()) as cap:
        result = run("orders", "u-1", QUESTION)
    assert result.output == ANSWER
    r = only(cap)
    assert (r.engine, r.status, r.agent_id) == ("pydantic_ai", "completed", "orders")
    res = r.result
    assert (res.success, res.error, res.paused) == (True, None, False)
    assert res.tokens == RUN
    assert result.usage.input_tokens == RUN.input_tokens  # the framework agrees (one run)
    assert res.iterations == 3
    calls = [(c.name, c.call_id, c.success, c.error) for c in res.tool_calls or ()]
    assert calls == [
        ("lookup_order", "call_1", True, None),
        ("cancel_order", "call_2", False, "the tool asked the model to retry (model_retry)"),
        ("cancel_order", "call_3", True, None)]
    responses = [m for m in result.new_messages() if isinstance(m, ModelResponse)]
    for call in res.tool_calls or ():
        assert call.started_at is not None
        assert call.duration_ms is not None
        assert call.duration_ms >= 0
    assert res.tool_calls is not None
    assert res.tool_calls[0].started_at == responses[0].timestamp
    # FunctionModel reports its own name as the model that answered; model_id is what was asked
    assert (res.model, res.request_model, res.provider) == (
        "gpt-4.1-mini", "gpt-4.1-mini", "function")
    assert (res.response, res.input) == (ANSWER, QUESTION)
    assert res.extras["requests"] == 3
    assert res.extras["finish_reason"] == "stop"
    assert "run_usage" not in res.extras  # RunUsage is this run's own here
    assert_span(spans.ours(), r)
    assert [s.name for s in spans.all_ours() if s.name.startswith("execute_tool")] == [
        "execute_tool lookup_order", "execute_tool cancel_order", "execute_tool cancel_order"]

    rows = store_rows(cap.records, tmp_path / "pai.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["model"], ex["provider"]) == (
        "pydantic_ai", "completed", "gpt-4.1-mini", "function")
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (760, 120, 880)
    logs = json.loads(ex["logs"])
    assert logs["response"] == ANSWER
    assert [(c["name"], c["success"]) for c in logs["tool_calls"]] == [
        ("lookup_order", True), ("cancel_order", False), ("cancel_order", True)]
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 880)
    assert (rows.stats["run_count"], rows.stats["success_count"],
            rows.stats["total_tokens"]) == (1, 1, 880)
    assert (rows.intensity["total_executions"], rows.intensity["total_input_tokens"],
            rows.intensity["total_output_tokens"]) == (1, 760, 120)


def test_a_carried_conversation_counts_only_this_runs_usage() -> None:
    """``conversation=`` carries the earlier runs' usage into ``result.usage``; the record
    keeps this run's own and shows the carried totals in extras."""
    agent = Agent(TestModel())

    @logged_execution(agent_id=lambda _: "chat")
    def run(prompt: str, conversation: Any = None) -> AgentRunResult[str]:
        return agent.run_sync(prompt, conversation=conversation)

    with capture() as cap:
        first = run("hello")
        second = run("again", first.conversation)
    one, two = cap.records
    assert one.result.tokens is not None
    assert two.result.tokens is not None
    first_own = first.usage
    assert (one.result.tokens.input_tokens, one.result.tokens.output_tokens) == (
        first_own.input_tokens, first_own.output_tokens)
    assert second.usage.input_tokens == (first_own.input_tokens
                                         + two.result.tokens.input_tokens)
    assert two.result.iterations == 1
    assert two.result.extras["run_usage"] == {
        "requests": 2, "input_tokens": second.usage.input_tokens,
        "output_tokens": second.usage.output_tokens, "tool_calls": 0}


def test_an_answer_cut_at_the_token_limit_is_a_failure(tmp_path: Path) -> None:
    def cut(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("Order A-1001 has")], finish_reason="length",
                             usage=RequestUsage(input_tokens=50, output_tokens=4))

    agent = Agent(FunctionModel(cut))

    @logged_execution(agent_id=lambda _: "cut")
    def run() -> AgentRunResult[str]:
        return agent.run_sync(QUESTION)

    with capture() as cap:
        run()
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == "max_tokens"
    rows = store_rows(cap.records, tmp_path / "cut.db")[0]
    assert (rows.execution["status"], rows.execution["error_type"]) == ("failed", "max_tokens")
    assert (rows.execution["input_tokens"], rows.stats["failure_count"]) == (50, 1)


def test_a_tool_that_raises_fails_the_run() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def explode(city: str) -> str:
        """A tool that raises."""
        raise RuntimeError("backend down")

    @logged_execution
    def run() -> AgentRunResult[str]:
        return agent.run_sync("x")

    with capture() as cap, pytest.raises(RuntimeError):
        run()
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert (r.result.error.type, r.result.error.message) == ("RuntimeError", "backend down")


def test_a_usage_limit_failure_keeps_what_the_run_spent() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def lookup(city: str) -> str:
        """Look up."""
        return "ok"

    @logged_execution
    def run() -> AgentRunResult[str]:
        return agent.run_sync("x", usage_limits=UsageLimits(request_limit=1))

    with capture() as cap, pytest.raises(UsageLimitExceeded) as raised:
        run()
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == "UsageLimitExceeded"
    spent = raised.value.conversation
    assert spent is not None
    assert r.result.tokens is not None
    assert r.result.tokens.input_tokens == spent.usage.input_tokens
    assert (r.result.iterations, r.result.response) == (1, None)
    assert [(c.name, c.success) for c in r.result.tool_calls or ()] == [("lookup", True)]


# -- paused: tools awaiting approval -------------------------------------------------------------


def test_deferred_tool_requests_is_a_paused_run_and_the_resume_completes(
        tmp_path: Path, spans: Spans) -> None:
    agent = Agent(TestModel(), output_type=[str, DeferredToolRequests])

    @agent.tool_plain(requires_approval=True)
    def send_email(to: str) -> str:
        """Send an email."""
        return "sent"

    @logged_execution(agent_id=lambda _: "mailer")
    def run(prompt: str, history: Any = None, results: Any = None) -> AgentRunResult[Any]:
        return agent.run_sync(prompt, message_history=history, deferred_tool_results=results)

    with capture(capture_content=True, tracing=spans.tracing()) as cap:
        paused_run = run("Email Ana")
    assert isinstance(paused_run.output, DeferredToolRequests)
    r = only(cap)
    assert (r.engine, r.status) == ("pydantic_ai", "paused")
    res = r.result
    assert (res.success, res.paused, res.response) == (True, True, None)
    assert res.extras["deferred_approvals"] == 1
    assert [(c.name, c.success) for c in res.tool_calls or ()] == [("send_email", None)]
    assert_span(spans.ours(), r)
    rows = store_rows(cap.records, tmp_path / "paused.db")[0]
    assert rows.execution["status"] in PAUSED_STORED
    assert rows.execution["error_type"] is None

    approvals = DeferredToolResults(approvals={
        paused_run.output.approvals[0].tool_call_id: True})
    with capture(capture_content=True) as cap:
        done = run(None, paused_run.all_messages(), approvals)
    assert isinstance(done.output, str)
    r = only(cap)
    assert (r.status, r.result.paused) == ("completed", False)
    assert [(c.name, c.success) for c in r.result.tool_calls or ()] == [("send_email", True)]


# -- streams ---------------------------------------------------------------------------------


async def test_run_stream_returned_after_reading() -> None:
    agent = make_agent()

    @logged_execution(agent_id=lambda _: "streamer")
    async def run() -> Any:
        async with agent.run_stream(QUESTION) as result:
            assert await result.get_output() == ANSWER
        return result

    with capture(capture_content=True) as cap:
        returned = await run()
    res = only(cap).result
    assert res.tokens == streamed_tokens(returned.usage)
    assert (res.iterations, res.response, res.extras["streamed"]) == (3, ANSWER, True)
    assert [c.success for c in res.tool_calls or ()] == [True, False, True]
    assert "complete" not in res.extras


async def test_run_stream_left_early_records_what_it_got_to() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def lookup(city: str) -> str:
        """Look up."""
        return "ok"

    @logged_execution(agent_id=lambda _: "streamer")
    async def run() -> Any:
        async with agent.run_stream("x") as result:
            async for _ in result.stream_text():
                break
        return result

    with capture(capture_content=True) as cap:
        returned = await run()
    res = only(cap).result
    assert (res.extras["complete"], res.response) == (False, None)
    assert res.tokens is not None
    assert res.tokens.input_tokens == returned.usage.input_tokens  # the answer in flight too
    assert res.iterations == 2


def test_run_stream_sync() -> None:
    agent = make_agent()

    @logged_execution(agent_id=lambda _: "streamer")
    def run() -> Any:
        result = agent.run_stream_sync(QUESTION)
        assert "".join(result.stream_text(delta=True)) == ANSWER
        return result

    with capture(capture_content=True) as cap:
        returned = run()
    res = only(cap).result
    assert (res.tokens, res.iterations, res.response) == (
        streamed_tokens(returned.usage), 3, ANSWER)


async def test_yielded_run_events_and_iter_nodes() -> None:
    @logged_execution(agent_id=lambda _: "events")
    async def events() -> AsyncIterator[Any]:
        async with make_agent().run_stream_events(QUESTION) as stream:
            async for event in stream:
                yield event

    @logged_execution(agent_id=lambda _: "nodes")
    async def nodes() -> AsyncIterator[Any]:
        async with make_agent().iter(QUESTION) as run:
            async for node in run:
                yield node

    with capture(capture_content=True) as cap:
        streamed = [e async for e in events()]
        assert [n async for n in nodes()]
        early_stream = events()
        async for event in early_stream:  # the consumer stops after the first tool result
            if type(event).__name__ == "FunctionToolResultEvent":
                break
        await early_stream.aclose()  # type: ignore[attr-defined]
    full, iterated, early = cap.records
    run_usage = streamed[-1].result.usage  # the final AgentRunResultEvent's run
    for r, tokens in ((full, streamed_tokens(run_usage)), (iterated, RUN)):
        assert (r.engine, r.status) == ("pydantic_ai", "completed")
        assert (r.result.tokens, r.result.iterations, r.result.response) == (tokens, 3, ANSWER)
        assert [c.success for c in r.result.tool_calls or ()] == [True, False, True]
    assert iterated.result.extras["iterated"] is True
    assert early.engine == "pydantic_ai"
    assert early.result.tokens is None  # events carry no usage until the final one
    assert early.result.extras["complete"] is False
    assert early.result.extras["stream_closed_early"] is True
    # both calls were announced; the consumer stopped after the first result
    assert [(c.name, c.success) for c in early.result.tool_calls or ()] == [
        ("lookup_order", True), ("cancel_order", None)]


def test_an_agent_run_returned_from_iter() -> None:
    agent = make_agent()

    @logged_execution(agent_id=lambda _: "iter")
    async def run() -> Any:
        async with agent.iter(QUESTION) as agent_run:
            async for _ in agent_run:
                pass
        return agent_run

    with capture(capture_content=True) as cap:
        asyncio.run(run())
    res = only(cap).result
    assert (res.tokens, res.response, res.extras["iterated"]) == (RUN, ANSWER, True)


# -- detection -----------------------------------------------------------------------------------


def test_detection_is_by_type_and_imports_nothing() -> None:
    from tests.conftest import run_python

    result = Agent(TestModel()).run_sync("hi")
    assert detect_adapter(result).name == "pydantic_ai"
    adapter = get_adapter("pydantic_ai")
    for foreign in ({"output": "x"}, StreamedItems(["a"]), "text", None):
        assert not adapter.matches(foreign)
    done = run_python(
        "import sys\n"
        "from instrument.adapters.registry import detect_adapter\n"
        "from instrument.adapters.protocol import StreamedItems\n"
        "for r in ({'output': 1}, StreamedItems([object()]), 'x'):\n"
        "    detect_adapter(r)\n"
        "print(sorted(m for m in ('pydantic_ai', 'pydantic_graph') if m in sys.modules))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
