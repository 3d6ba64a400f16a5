"""The real ``google-genai`` client (sync and ``client.aio``, whole and streamed, with automatic
function calling) against a local Gemini API stub, through the ``google_genai`` adapter: the
record, the four tables and the span."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument import logged_execution
from instrument.adapters import get_adapter
from instrument.adapters.protocol import StreamedItems
from instrument.adapters.registry import detect_adapter
from instrument.record import ExecutionRecord, TokenUsage, ToolCall
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.gemini_stub import ANSWER, MODEL_VERSION, GeminiStub
from tests.engines.rows import store_rows

MODEL = "gemini-3.8-flash"
#: TEXT_USAGE in the record's definition: input = 120 prompt (80 of them cached) + 10 tool
#: results; output = 20 answer + 15 thoughts.
TEXT_TOKENS = TokenUsage(input_tokens=130, output_tokens=35, total_tokens=165,
                         cached_input_tokens=80, reasoning_tokens=15)
CALL_TOKENS = TokenUsage(input_tokens=60, output_tokens=8, total_tokens=68)


def get_weather(city: str) -> dict[str, str]:
    """The weather in a city."""
    return {"forecast": f"sunny in {city}"}


def broken_weather(city: str) -> dict[str, str]:
    """The weather in a city."""
    raise RuntimeError("weather service down")


@pytest.fixture(scope="module")
def stub() -> Iterator[GeminiStub]:
    with GeminiStub() as server:
        yield server


@pytest.fixture
def client(stub: GeminiStub) -> genai.Client:
    stub.requests.clear()
    return genai.Client(api_key="test-key", http_options={"base_url": stub.base_url})


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


def afc(*tools: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(tools=list(tools))


def test_response_in_the_record_the_four_tables_and_the_span(client: genai.Client,
                                                             tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, MeterProvider(metric_readers=[InMemoryMetricReader()],
                                              shutdown_on_exit=False))

    @logged_execution(agent_id="agent_id", user_id="user_id")
    def answer(agent_id: str, user_id: str) -> types.GenerateContentResponse:
        return client.models.generate_content(model=MODEL, contents="weather in Paris?")

    with capture(tracing=tracing, capture_content=True) as cap:
        response = answer("gemini-agent", "u-2")
    r = only(cap)
    res = r.result
    assert (r.engine, r.status) == ("google_genai", "completed")
    assert res.tokens == TEXT_TOKENS
    assert (res.model, res.request_model, res.provider) == (MODEL_VERSION, None, "gcp.gen_ai")
    assert (res.iterations, res.tool_calls, res.response) == (1, [], ANSWER)  # no thoughts
    assert res.extras == {"response_id": response.response_id, "finish_reason": "STOP"}

    rows = store_rows(cap.records, tmp_path / "gemini.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["input_tokens"], ex["output_tokens"],
            ex["total_tokens"], ex["model"], ex["provider"]) == (
        "google_genai", "completed", 130, 35, 165, MODEL_VERSION, "gcp.gen_ai")
    assert json.loads(ex["logs"])["response"] == ANSWER
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 165)
    assert (rows.stats["run_count"], rows.stats["success_count"],
            rows.stats["total_tokens"]) == (1, 1, 165)
    assert (rows.intensity["total_input_tokens"], rows.intensity["total_output_tokens"],
            rows.intensity["total_iterations"]) == (130, 35, 1)

    spans = [s for s in exporter.get_finished_spans()
             if "instrument.execution_id" in (s.attributes or {})]
    assert len(spans) == 1
    attrs = dict(spans[0].attributes or {})
    assert attrs["instrument.status"] == "completed"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (130, 35)
    assert attrs["gen_ai.response.model"] == MODEL_VERSION
    provider.shutdown()


def test_automatic_function_calling_keeps_only_the_last_requests_usage(
        client: genai.Client, stub: GeminiStub, tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id")
    def answer(agent_id: str) -> types.GenerateContentResponse:
        return client.models.generate_content(model=MODEL, contents="weather in Paris?",
                                              config=afc(get_weather))

    with capture(capture_content=True) as cap:
        answer("afc-agent")
    res = only(cap).result
    assert len(stub.requests) == 2  # the SDK ran the tool and asked again
    assert res.iterations == 2
    assert res.tokens == TEXT_TOKENS  # the SDK kept no usage of the first request
    assert res.extras["usage_covers"] == "last_request"
    assert res.tool_calls == [ToolCall(name="get_weather", success=True)]
    assert (res.input, res.response) == ("weather in Paris?", ANSWER)
    rows = store_rows(cap.records, tmp_path / "afc.db")[0]
    assert (rows.intensity["n_tool_runs"], rows.intensity["total_tool_calls"],
            rows.intensity["total_iterations"]) == (1, 1, 2)


def test_a_tool_that_raises_is_a_failed_call_without_its_arguments(
        client: genai.Client) -> None:
    @logged_execution
    def answer() -> types.GenerateContentResponse:
        return client.models.generate_content(model=MODEL, contents="weather?",
                                              config=afc(broken_weather))

    with capture() as cap:
        answer()
    res = only(cap).result
    assert res.success is True  # the model still answered
    assert res.tool_calls == [ToolCall(name="broken_weather", success=False,
                                       error="weather service down")]


def test_stream_counts_the_last_cumulative_usage_not_the_sum(client: genai.Client,
                                                             tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id")
    def answer(agent_id: str) -> Iterator[types.GenerateContentResponse]:
        yield from client.models.generate_content_stream(model=MODEL, contents="weather?")

    with capture(capture_content=True) as cap:
        chunks = list(answer("stream-agent"))
    assert len(chunks) > 2
    res = only(cap).result
    assert only(cap).engine == "google_genai"
    assert res.tokens == TEXT_TOKENS
    assert (res.iterations, res.model, res.response) == (1, MODEL_VERSION, ANSWER)
    assert res.extras["stream_chunks"] == len(chunks)
    rows = store_rows(cap.records, tmp_path / "stream.db")[0]
    assert (rows.execution["input_tokens"], rows.execution["output_tokens"]) == (130, 35)


async def test_async_stream_with_automatic_function_calling_adds_requests_up(
        client: genai.Client, stub: GeminiStub) -> None:
    @logged_execution
    async def answer() -> AsyncIterator[types.GenerateContentResponse]:
        stream = await client.aio.models.generate_content_stream(
            model=MODEL, contents="weather in Paris?", config=afc(get_weather))
        async for chunk in stream:
            yield chunk

    with capture(capture_content=True) as cap:
        _ = [c async for c in answer()]
    res = only(cap).result
    assert len(stub.requests) == 2
    assert res.iterations == 2
    # a stream shows every request's usage: the call's and the answer's, each counted once
    assert res.tokens == TokenUsage(input_tokens=190, output_tokens=43, total_tokens=233,
                                    cached_input_tokens=80, reasoning_tokens=15)
    assert res.tool_calls == [ToolCall(name="get_weather", success=True)]
    assert (res.input, res.response) == ("weather in Paris?", ANSWER)


def test_a_blocked_prompt_is_a_failure(client: genai.Client, tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id")
    def answer(agent_id: str) -> types.GenerateContentResponse:
        return client.models.generate_content(model=MODEL, contents="BLOCK_PROMPT please")

    with capture() as cap:
        answer("blocked-agent")
    r = only(cap)
    assert (r.status, r.result.success, r.result.response) == ("failed", False, None)
    assert r.result.error is not None
    assert (r.result.error.type, r.result.error.message) == (
        "PROMPT_BLOCKED_SAFETY", "the prompt was blocked (SAFETY); the model did not answer")
    assert r.result.tokens == TokenUsage(input_tokens=9, total_tokens=9)
    rows = store_rows(cap.records, tmp_path / "blocked.db")[0]
    assert (rows.execution["status"], rows.execution["error_type"],
            rows.execution["input_tokens"]) == ("failed", "PROMPT_BLOCKED_SAFETY", 9)
    assert (rows.stats["failure_count"], rows.intensity["failed_executions"]) == (1, 1)


async def test_a_safety_stop_in_a_stream_is_a_failure(client: genai.Client) -> None:
    @logged_execution
    async def answer() -> AsyncIterator[types.GenerateContentResponse]:
        async for chunk in await client.aio.models.generate_content_stream(
                model=MODEL, contents="UNSAFE_ANSWER"):
            yield chunk

    with capture() as cap:
        _ = [c async for c in answer()]
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == "SAFETY"
    assert r.result.extras["finish_reason"] == "SAFETY"


def test_chat_with_automatic_function_calling_shows_only_its_last_request(
        client: genai.Client, stub: GeminiStub) -> None:
    """``Chat.send_message`` runs the tools itself and returns the last response WITHOUT the
    calling history (it keeps it in ``chat.get_history()``): the record can only show that
    response (documented in docs/adapters.md)."""
    chat = client.chats.create(model=MODEL, config=afc(get_weather))

    @logged_execution
    def turn(text: str) -> types.GenerateContentResponse:
        return chat.send_message(text)

    with capture() as cap:
        turn("weather in Paris?")
    res = only(cap).result
    assert len(stub.requests) == 2
    assert (res.iterations, res.tokens, res.tool_calls) == (1, TEXT_TOKENS, [])
    assert "usage_covers" not in res.extras


def test_matches_is_specific(client: genai.Client) -> None:
    adapter = get_adapter("google_genai")
    response = client.models.generate_content(model=MODEL, contents="hi")
    assert detect_adapter(response).name == "google_genai"
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    assert detect_adapter(StreamedItems(chunks)).name == "google_genai"
    for foreign in ({"success": True}, StreamedItems(["text"]), response.usage_metadata,
                    response.candidates, "gemini", None, chunks):
        assert not adapter.matches(foreign), foreign
