"""The real ``anthropic`` client (sync and async, whole and streamed) against a local Messages
API stub, through the ``anthropic`` adapter: the record, the four tables and the span."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import Message
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument import logged_execution
from instrument.adapters import get_adapter
from instrument.adapters.protocol import DeferredAdapter, StreamedItems
from instrument.adapters.registry import detect_adapter
from instrument.record import ExecutionRecord, TokenUsage, ToolCall
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.anthropic_stub import TOOL_USAGE, AnthropicStub, Reply, answered_model
from tests.engines.rows import store_rows

MODEL = "claude-sonnet-4-5"
ANSWERED = answered_model(MODEL)
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
#: TEXT_USAGE in the record's definition: input = 25 fresh + 100 cache reads + 40 cache writes.
TEXT_TOKENS = TokenUsage(input_tokens=165, output_tokens=30, total_tokens=195,
                         cached_input_tokens=100, cache_write_input_tokens=40,
                         reasoning_tokens=12)
TOOL_TOKENS = TokenUsage(input_tokens=50, output_tokens=9, total_tokens=59,
                         cached_input_tokens=0, cache_write_input_tokens=0)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def stub() -> Iterator[AnthropicStub]:
    with AnthropicStub() as server:
        yield server


@dataclass
class Spans:
    exporter: InMemorySpanExporter
    provider: TracerProvider
    tracing: Tracing

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def ours(self) -> ReadableSpan:
        """The execution's span, whatever the conventions name it."""
        found = [s for s in self.finished() if "instrument.execution_id" in (s.attributes or {})
                 and not s.name.startswith("execute_tool")]
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]

    def client_span(self) -> ReadableSpan:
        found = [s for s in self.finished() if s.name == "anthropic.messages.create"]
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    yield Spans(exporter, provider, Tracing(provider, meters))
    provider.shutdown()
    meters.shutdown()


@pytest.fixture
def client(stub: AnthropicStub, spans: Spans) -> Iterator[anthropic.Anthropic]:
    stub.clear()
    with anthropic.Anthropic(base_url=stub.base_url, api_key="sk-ant-test", max_retries=0,
                             timeout=10,
                             open_telemetry={"tracer_provider": spans.provider}) as c:
        yield c


@pytest.fixture
def aclient(stub: AnthropicStub) -> anthropic.AsyncAnthropic:
    stub.clear()
    return anthropic.AsyncAnthropic(base_url=stub.base_url, api_key="sk-ant-test",
                                    max_retries=0, timeout=10)


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


async def wait_for(cap: Any, n: int = 1) -> None:
    for _ in range(300):
        if len(cap.records) >= n:
            return
        await asyncio.sleep(0.01)


# -- whole messages ---------------------------------------------------------------------------


def test_message_in_the_record_the_four_tables_and_the_span(
        client: anthropic.Anthropic, spans: Spans, tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id", user_id="user_id")
    def answer(agent_id: str, user_id: str) -> Message:
        return client.messages.create(model=MODEL, max_tokens=200, messages=ask("hi"))

    with capture(tracing=spans.tracing, capture_content=True) as cap:
        message = answer("claude-agent", "u-1")
    r = only(cap)
    res = r.result
    assert (r.engine, r.status, res.success) == ("anthropic", "completed", True)
    assert res.tokens == TEXT_TOKENS
    assert (res.model, res.request_model, res.provider) == (ANSWERED, None, "anthropic")
    assert (res.service_tier, res.iterations, res.tool_calls) == ("priority", 1, [])
    assert res.response == "Stub answer from Claude."
    assert res.extras == {"message_id": message.id, "stop_reason": "end_turn"}

    rows = store_rows(cap.records, tmp_path / "anthropic.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["agent_id"], ex["user_id"]) == (
        "anthropic", "completed", "claude-agent", "u-1")
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (165, 30, 195)
    assert (ex["model"], ex["provider"]) == (ANSWERED, "anthropic")
    logs = json.loads(ex["logs"])
    assert logs["response"] == "Stub answer from Claude."
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 195)
    assert (rows.stats["run_count"], rows.stats["success_count"], rows.stats["total_tokens"],
            rows.stats["token_run_count"]) == (1, 1, 195, 1)
    assert (rows.intensity["total_executions"], rows.intensity["total_input_tokens"],
            rows.intensity["total_output_tokens"], rows.intensity["n_iteration_runs"],
            rows.intensity["total_iterations"]) == (1, 165, 30, 1, 1)

    ours = spans.ours()
    attrs = dict(ours.attributes or {})
    assert attrs["instrument.status"] == "completed"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (165, 30)
    assert attrs["gen_ai.response.model"] == ANSWERED
    # The client's own span is a child of ours and counts input the same way.
    theirs = spans.client_span()
    assert theirs.parent is not None
    assert theirs.parent.span_id == ours.context.span_id
    assert dict(theirs.attributes or {})["gen_ai.usage.input_tokens"] == 165


def test_tool_use_is_a_tool_call_the_caller_runs(client: anthropic.Anthropic,
                                                 tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id")
    def answer(agent_id: str) -> Message:
        return client.messages.create(model=MODEL, max_tokens=200, messages=ask("weather?"),
                                      tools=[WEATHER])  # type: ignore[list-item]

    with capture() as cap:
        message = answer("tool-agent")
    res = only(cap).result
    call_id = message.content[0].id  # type: ignore[union-attr]
    assert res.tool_calls == [ToolCall(name="get_weather", call_id=call_id)]
    assert (res.success, res.tokens, res.extras["stop_reason"]) == (True, TOOL_TOKENS,
                                                                    "tool_use")
    assert res.service_tier == "standard"
    assert res.response is None  # no text block; and content capture is off
    rows = store_rows(cap.records, tmp_path / "tool.db")[0]
    assert (rows.intensity["n_tool_runs"], rows.intensity["total_tool_calls"]) == (1, 1)


@pytest.mark.parametrize(("reason", "details", "message"), [
    ("max_tokens", None, "the answer was cut off: max_tokens was reached"),
    ("model_context_window_exceeded", None,
     "the answer was cut off: the context window is full"),
    ("refusal", {"type": "refusal", "category": "cyber", "explanation": "Not that."},
     "the model declined to answer (cyber): Not that."),
])
def test_stop_reasons_that_are_failures(client: anthropic.Anthropic, stub: AnthropicStub,
                                        tmp_path: Path, reason: str,
                                        details: dict[str, Any] | None, message: str) -> None:
    stub.enqueue(Reply([{"type": "text", "text": "Partial ans"}], reason,
                       stop_details=details))

    @logged_execution(agent_id="agent_id")
    def answer(agent_id: str) -> Message:
        return client.messages.create(model=MODEL, max_tokens=5, messages=ask("long story"))

    with capture() as cap:
        answer(f"stop-{reason}")
    r = only(cap)
    assert (r.status, r.result.success) == ("failed", False)
    assert r.result.error is not None
    assert (r.result.error.type, r.result.error.message) == (reason, message)
    assert r.result.tokens == TEXT_TOKENS  # what the failed answer cost is still counted
    rows = store_rows(cap.records, tmp_path / "stop.db")[0]
    assert (rows.execution["status"], rows.execution["error_type"],
            rows.execution["error_message"]) == ("failed", reason, message)
    assert (rows.stats["failure_count"], rows.intensity["failed_executions"]) == (1, 1)
    if reason == "refusal":
        assert r.result.extras["refusal_category"] == "cyber"


def test_pause_turn_with_server_tools(client: anthropic.Anthropic, stub: AnthropicStub) -> None:
    usage = {"input_tokens": 70, "output_tokens": 20,
             "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0}}
    stub.enqueue(Reply([
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
         "input": {"query": "weather Paris"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
            {"type": "web_search_result", "title": "Paris", "url": "https://example.test",
             "encrypted_content": "x", "page_age": None}]},
        {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search",
         "input": {"query": "weather Lyon"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_2", "content": {
            "type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}},
    ], "pause_turn", usage))

    @logged_execution
    def answer() -> Message:
        return client.messages.create(model=MODEL, max_tokens=200, messages=ask("search"))

    with capture() as cap:
        answer()
    r = only(cap)
    # pause_turn: the application sends the turn back at once; nobody is waited for.
    assert (r.status, r.result.paused, r.result.extras["stop_reason"]) == (
        "completed", False, "pause_turn")
    assert r.result.tool_calls == [
        ToolCall(name="web_search", call_id="srvtoolu_1", success=True),
        ToolCall(name="web_search", call_id="srvtoolu_2", success=False,
                 error="max_uses_exceeded"),
    ]
    assert r.result.extras["server_tool_use"] == {"web_search_requests": 2}
    assert r.result.tokens == TokenUsage(input_tokens=70, output_tokens=20, total_tokens=90)


# -- streams ----------------------------------------------------------------------------------


def test_returned_stream_is_recorded_when_read(client: anthropic.Anthropic, spans: Spans,
                                               tmp_path: Path) -> None:
    made: list[object] = []

    @logged_execution(agent_id="agent_id")
    def answer(agent_id: str) -> anthropic.Stream[Any]:
        stream = client.messages.create(model=MODEL, max_tokens=200, stream=True,
                                        messages=ask("tell me about Paris"))
        made.append(stream)
        return stream

    with capture(tracing=spans.tracing, capture_content=True) as cap:
        stream = answer("stream-agent")
        assert stream is made[0]
        assert type(stream) is anthropic.Stream
        assert cap.records == []  # not read yet
        events = list(stream)
    r = only(cap)
    res = r.result
    assert (r.engine, r.status) == ("anthropic", "completed")
    assert res.tokens == TEXT_TOKENS  # input from message_start, output from message_delta
    assert (res.model, res.request_model) == (ANSWERED, MODEL)  # answered vs asked
    assert (res.input, res.response) == ("tell me about Paris", "Stub answer from Claude.")
    assert res.extras["stream_events"] == len(events)
    assert "stream_closed_early" not in res.extras
    rows = store_rows(cap.records, tmp_path / "stream.db")[0]
    assert (rows.execution["input_tokens"], rows.execution["output_tokens"],
            rows.execution["model"]) == (165, 30, ANSWERED)
    ours, theirs = spans.ours(), spans.client_span()
    assert theirs.parent is not None
    assert theirs.parent.span_id == ours.context.span_id
    assert theirs.end_time is not None
    assert ours.end_time is not None
    assert theirs.end_time <= ours.end_time  # our span ends after the client's child span
    assert dict(ours.attributes or {})["instrument.status"] == "completed"


async def test_returned_async_stream_closed_early(aclient: anthropic.AsyncAnthropic) -> None:
    @logged_execution
    async def answer() -> anthropic.AsyncStream[Any]:
        return await aclient.messages.create(model=MODEL, max_tokens=200, stream=True,
                                             messages=ask("hi"))

    with capture() as cap:
        stream = await answer()
        assert type(stream) is anthropic.AsyncStream
        seen = 0
        async with stream:
            async for _event in stream:
                seen += 1
                if seen == 3:
                    break
        await wait_for(cap)
    res = only(cap).result
    assert res.extras["stream_closed_early"] is True
    assert res.extras["stream_events"] == 3
    # message_start came: the input side is known; the output count never arrived
    assert res.tokens == TokenUsage(input_tokens=165, output_tokens=1, total_tokens=166,
                                    cached_input_tokens=100, cache_write_input_tokens=40)
    assert res.request_model == MODEL


def test_returned_stream_dropped_unread_is_recorded(client: anthropic.Anthropic) -> None:
    @logged_execution
    def answer() -> anthropic.Stream[Any]:
        return client.messages.create(model=MODEL, max_tokens=200, stream=True,
                                      messages=ask("hi"))

    with capture() as cap:
        answer()
        gc.collect()
    res = only(cap).result
    assert res.extras["stream_closed_early"] is True
    assert res.tokens is None  # nothing was read: not measured
    assert res.extras == {"stream_events": 0, "stream_closed_early": True}
    assert (res.iterations, res.request_model, res.provider) == (None, MODEL, "anthropic")


def test_generator_yielding_helper_events_with_a_tool(client: anthropic.Anthropic) -> None:
    @logged_execution
    def answer() -> Iterator[Any]:
        with client.messages.stream(model=MODEL, max_tokens=200, messages=ask("weather?"),
                                    tools=[WEATHER]) as stream:  # type: ignore[list-item]
            yield from stream

    with capture() as cap:
        events = list(answer())
    r = only(cap)
    final = next(e for e in events if e.type == "message_stop").message
    assert r.engine == "anthropic"
    assert r.result.tool_calls == [ToolCall(name="get_weather", call_id=final.content[0].id)]
    assert r.result.tokens == TOOL_TOKENS
    assert (r.result.model, r.result.request_model) == (ANSWERED, None)  # events only


async def test_async_agent_loop_yields_two_messages(aclient: anthropic.AsyncAnthropic,
                                                    stub: AnthropicStub) -> None:
    """An executor that runs the tool and asks again: one record, both requests counted."""
    @logged_execution
    async def loop() -> AsyncIterator[Any]:
        messages: list[dict[str, Any]] = ask("weather?")
        for _ in range(2):
            async with aclient.messages.stream(model=MODEL, max_tokens=200, messages=messages,  # type: ignore[arg-type]
                                               tools=[WEATHER]) as stream:  # type: ignore[list-item]
                async for event in stream:
                    yield event
                final = await stream.get_final_message()
            if final.stop_reason != "tool_use":
                break
            messages += [{"role": "assistant", "content": final.content}, {
                "role": "user", "content": [{"type": "tool_result",
                                             "tool_use_id": final.content[0].id,  # type: ignore[union-attr]
                                             "content": "sunny"}]}]

    with capture(capture_content=True) as cap:
        _ = [e async for e in loop()]
    res = only(cap).result
    assert len(stub.requests) == 2
    assert res.iterations == 2
    assert res.tokens == TokenUsage(input_tokens=215, output_tokens=39, total_tokens=254,
                                    cached_input_tokens=100, cache_write_input_tokens=40,
                                    reasoning_tokens=12)
    assert [c.name for c in res.tool_calls or []] == ["get_weather"]
    assert res.response == "Stub answer from Claude."
    assert len(res.extras["message_ids"]) == 2  # type: ignore[arg-type]


def test_returned_message_stream(client: anthropic.Anthropic) -> None:
    @logged_execution
    def answer() -> Any:
        return client.messages.stream(model=MODEL, max_tokens=200,
                                      messages=ask("hi")).__enter__()

    with capture() as cap:
        stream = answer()
        assert cap.records == []
        assert stream.get_final_text() == "Stub answer from Claude."
        stream.close()
    res = only(cap).result
    assert (res.tokens, res.request_model) == (TEXT_TOKENS, MODEL)


def test_stream_failing_midway_is_a_failed_record(client: anthropic.Anthropic,
                                                  stub: AnthropicStub, tmp_path: Path) -> None:
    stub.enqueue(Reply([{"type": "text", "text": "never sent"}], fail_midstream=True))

    @logged_execution(agent_id="agent_id")
    def answer(agent_id: str) -> anthropic.Stream[Any]:
        return client.messages.create(model=MODEL, max_tokens=200, stream=True,
                                      messages=ask("hi"))

    with capture() as cap:
        stream = answer("flaky")
        with pytest.raises(anthropic.APIStatusError) as raised:
            list(stream)
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == type(raised.value).__name__
    assert "Overloaded" in r.result.error.message
    rows = store_rows(cap.records, tmp_path / "failed.db")[0]
    assert (rows.execution["status"], rows.stats["failure_count"]) == ("failed", 1)


def test_response_text_is_dropped_without_content_capture(client: anthropic.Anthropic) -> None:
    @logged_execution
    def answer() -> anthropic.Stream[Any]:
        return client.messages.create(model=MODEL, max_tokens=200, stream=True,
                                      messages=ask("a secret prompt"))

    with capture(capture_content=False) as cap:
        list(answer())
    res = only(cap).result
    assert (res.response, res.input) == (None, None)  # the prompt follows the same policy
    assert res.tokens == TEXT_TOKENS


# -- detection --------------------------------------------------------------------------------


def test_matches_is_specific(client: anthropic.Anthropic) -> None:
    adapter = get_adapter("anthropic")
    assert isinstance(adapter, DeferredAdapter)
    message = client.messages.create(model=MODEL, max_tokens=10, messages=ask("hi"))
    assert detect_adapter(message).name == "anthropic"
    events = list(client.messages.create(model=MODEL, max_tokens=10, messages=ask("hi"),
                                         stream=True))
    assert detect_adapter(StreamedItems(events)).name == "anthropic"
    for foreign in ({"success": True}, StreamedItems(["text"]), message.usage, message.content,
                    "claude", None, [message]):
        assert not adapter.matches(foreign), foreign
    assert TOOL_USAGE["input_tokens"] == 50  # the stub's numbers the tests above rely on


def test_adapter_does_not_import_anthropic_for_foreign_results() -> None:
    from tests.conftest import run_python

    done = run_python(
        "import sys\n"
        "from instrument.adapters.registry import detect_adapter\n"
        "from instrument.adapters.protocol import StreamedItems\n"
        "for r in ({'success': True}, StreamedItems([{'a': 1}]), StreamedItems(['t']), 3):\n"
        "    detect_adapter(r)\n"
        "print(sorted(m for m in ('anthropic', 'google.genai', 'google.adk')"
        " if m in sys.modules))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
