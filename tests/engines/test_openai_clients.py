"""The real ``openai`` client (sync and async, streaming and not) against the loopback stub,
through the ``openai_chat`` and ``openai_responses`` adapters."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, AsyncStream, OpenAI, Stream
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from instrument import logged_execution
from instrument.adapters import get_adapter
from instrument.adapters.protocol import DeferredAdapter, StreamedItems
from instrument.adapters.registry import detect_adapter
from instrument.record import ExecutionRecord, TokenUsage, ToolCall
from instrument.testing import capture
from tests.openai_stub import TEXT_USAGE, TOOL_USAGE, StubServer, Usage

MODEL = "gpt-4o-mini"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
RESP_TOOL = {"type": "function", "name": "get_weather",
             "parameters": WEATHER_TOOL["function"]["parameters"]}  # type: ignore[index]


def tokens(u: Usage) -> TokenUsage:
    return TokenUsage(input_tokens=u.prompt, output_tokens=u.completion, total_tokens=u.total,
                      cached_input_tokens=u.cached, reasoning_tokens=u.reasoning)


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


async def wait_for(cap: Any, n: int = 1) -> None:
    for _ in range(200):
        if len(cap.records) >= n:
            return
        await asyncio.sleep(0.01)


# -- chat completions -------------------------------------------------------------------------


def test_sync_chat_completion_with_a_tool_call(client: OpenAI) -> None:
    @logged_execution(agent_id="agent_id")
    def execute(agent_id: str) -> ChatCompletion:
        return client.chat.completions.create(model=MODEL, messages=msgs("weather?"),  # type: ignore[arg-type]
                                              tools=[WEATHER_TOOL])  # type: ignore[list-item]

    with capture() as cap:
        completion = execute("chat-agent")
    r = only(cap)
    call_id = completion.choices[0].message.tool_calls[0].id  # type: ignore[index]
    assert (r.engine, r.agent_id, r.status) == ("openai_chat", "chat-agent", "completed")
    res = r.result
    assert (res.model, res.provider, res.iterations) == (MODEL, "openai", 1)
    assert res.tokens == tokens(TOOL_USAGE)
    assert res.tool_calls == [ToolCall(name="get_weather", call_id=call_id)]
    assert res.extras["finish_reasons"] == ["tool_calls"]
    assert res.extras["completion_id"] == completion.id
    assert res.extras["system_fingerprint"] == "fp_stub"
    assert res.response is None  # content capture off


async def test_async_chat_completion_text(aclient: AsyncOpenAI) -> None:
    @logged_execution
    async def execute() -> ChatCompletion:
        return await aclient.chat.completions.create(model=MODEL, messages=msgs("hi"))  # type: ignore[arg-type]

    with capture(capture_content=True) as cap:
        completion = await execute()
    res = only(cap).result
    assert res.success is True
    assert res.response == completion.choices[0].message.content
    assert res.tokens == tokens(TEXT_USAGE)
    assert res.tool_calls == []
    assert res.extras["finish_reasons"] == ["stop"]


def test_sync_generator_yielding_chunks_with_usage(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Iterator[ChatCompletionChunk]:
        stream = client.chat.completions.create(
            model=MODEL, messages=msgs("hi"), stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True})
        yield from stream

    with capture(capture_content=True) as cap:
        chunks = list(execute())
    res = only(cap).result
    assert only(cap).engine == "openai_chat"
    assert res.tokens == tokens(TEXT_USAGE)
    assert res.model == MODEL
    assert res.provider == "openai"
    assert res.response == "".join(c.choices[0].delta.content or "" for c in chunks
                                   if c.choices)
    assert res.extras["finish_reasons"] == ["stop"]
    assert res.extras["stream_chunks"] == len(chunks)


async def test_async_generator_yielding_tool_call_chunks(aclient: AsyncOpenAI) -> None:
    @logged_execution(engine="openai_chat")
    async def execute() -> AsyncIterator[ChatCompletionChunk]:
        stream = await aclient.chat.completions.create(
            model=MODEL, messages=msgs("weather?"), tools=[WEATHER_TOOL],  # type: ignore[arg-type,list-item]
            stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            yield chunk

    with capture() as cap:
        chunks = [c async for c in execute()]
    call_id = next(c.choices[0].delta.tool_calls[0].id for c in chunks  # type: ignore[index]
                   if c.choices and c.choices[0].delta.tool_calls)
    res = only(cap).result
    assert res.tool_calls == [ToolCall(name="get_weather", call_id=call_id)]
    assert res.tokens == tokens(TOOL_USAGE)
    assert res.extras["finish_reasons"] == ["tool_calls"]


def test_stream_without_include_usage_has_no_tokens(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Iterator[ChatCompletionChunk]:
        yield from client.chat.completions.create(model=MODEL, messages=msgs("hi"),  # type: ignore[arg-type]
                                                  stream=True)

    with capture() as cap:
        list(execute())
    res = only(cap).result
    assert res.tokens is None  # not measured, never zero
    assert res.extras["usage_reported"] is False


def test_returned_sync_stream_is_recorded_when_consumed(client: OpenAI) -> None:
    made: list[Stream[ChatCompletionChunk]] = []

    @logged_execution(agent_id="agent_id")
    def execute(agent_id: str) -> Stream[ChatCompletionChunk]:
        stream = client.chat.completions.create(
            model=MODEL, messages=msgs("hi"), stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True})
        made.append(stream)
        return stream

    with capture() as cap:
        stream = execute("s-agent")
        assert stream is made[0]
        assert type(stream) is Stream
        assert cap.records == []
        chunks = list(stream)
        assert chunks
    r = only(cap)
    assert (r.engine, r.agent_id) == ("openai_chat", "s-agent")
    assert r.result.tokens == tokens(TEXT_USAGE)
    assert r.result.extras["stream_chunks"] == len(chunks)
    assert "stream_closed_early" not in r.result.extras


async def test_returned_async_stream_closed_early(aclient: AsyncOpenAI) -> None:
    @logged_execution
    async def execute() -> AsyncStream[ChatCompletionChunk]:
        return await aclient.chat.completions.create(
            model=MODEL, messages=msgs("SLOW_STREAM please"), stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True})

    with capture() as cap:
        stream = await execute()
        assert type(stream) is AsyncStream
        seen = 0
        async with stream:
            async for _chunk in stream:
                seen += 1
                if seen == 3:
                    break
        await wait_for(cap)
    res = only(cap).result
    assert res.extras["stream_closed_early"] is True
    assert res.tokens is None  # the usage chunk never arrived
    assert res.extras["stream_chunks"] == 3


def test_returned_stream_dropped_unread_is_recorded(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Stream[ChatCompletionChunk]:
        return client.chat.completions.create(model=MODEL, messages=msgs("hi"), stream=True)  # type: ignore[arg-type]

    with capture() as cap:
        stream = execute()
        stream.response.close()
        del stream
        gc.collect()
    res = only(cap).result
    assert res.extras["stream_closed_early"] is True
    assert res.extras["stream_chunks"] == 0


def test_stream_failing_midway_is_a_failed_record(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Stream[ChatCompletionChunk]:
        return client.chat.completions.create(model=MODEL, messages=msgs("STREAM_ERROR"),  # type: ignore[arg-type]
                                              stream=True)

    with capture() as cap:
        stream = execute()
        with pytest.raises(openai.APIError) as raised:
            for _ in stream:
                pass
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == type(raised.value).__name__ == "APIError"


def test_connection_failure_is_a_failed_record(stub: StubServer) -> None:
    dead = OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test", max_retries=0,
                  timeout=2)

    @logged_execution
    def execute() -> ChatCompletion:
        return dead.chat.completions.create(model=MODEL, messages=msgs("hi"))  # type: ignore[arg-type]

    with capture() as cap, pytest.raises(openai.APIConnectionError):
        execute()
    assert only(cap).result.error.type == "APIConnectionError"  # type: ignore[union-attr]


# -- responses --------------------------------------------------------------------------------


def test_sync_response_with_a_function_call(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Response:
        return client.responses.create(model=MODEL, input="weather?", tools=[RESP_TOOL])  # type: ignore[list-item]

    with capture() as cap:
        response = execute()
    r = only(cap)
    fc = response.output[0]
    assert r.engine == "openai_responses"
    res = r.result
    assert (res.model, res.provider, res.iterations, res.success) == (MODEL, "openai", 1, True)
    assert res.tokens == tokens(TOOL_USAGE)
    assert res.tool_calls == [ToolCall(name="get_weather", call_id=fc.call_id)]  # type: ignore[union-attr]
    assert res.extras["status"] == "completed"
    assert res.extras["response_id"] == response.id


async def test_async_response_text(aclient: AsyncOpenAI) -> None:
    @logged_execution
    async def execute() -> Response:
        return await aclient.responses.create(model=MODEL, input="hi")

    with capture(capture_content=True) as cap:
        response = await execute()
    res = only(cap).result
    assert res.response == response.output_text
    assert res.tokens == tokens(TEXT_USAGE)
    assert res.tokens.cached_input_tokens == 10
    assert res.tokens.reasoning_tokens == 4


async def test_returned_async_responses_stream(aclient: AsyncOpenAI) -> None:
    @logged_execution
    async def execute() -> Any:
        return await aclient.responses.create(model=MODEL, input="weather?",
                                              tools=[RESP_TOOL], stream=True)  # type: ignore[list-item]

    with capture() as cap:
        stream = await execute()
        assert type(stream) is AsyncStream
        events = [e async for e in stream]
        await wait_for(cap)
    done = events[-1]
    assert done.type == "response.completed"
    res = only(cap).result
    assert res.tokens == tokens(TOOL_USAGE)
    assert res.tool_calls == [ToolCall(name="get_weather",
                                       call_id=done.response.output[0].call_id)]
    assert res.extras["stream_events"] == len(events)


def test_generator_yielding_response_events(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Iterator[Any]:
        yield from client.responses.create(model=MODEL, input="hi", stream=True)

    with capture(capture_content=True) as cap:
        events = list(execute())
    r = only(cap)
    assert r.engine == "openai_responses"
    assert r.result.tokens == tokens(TEXT_USAGE)
    assert r.result.response == events[-1].response.output_text


def test_generator_abandoned_before_response_completed(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Iterator[Any]:
        yield from client.responses.create(model=MODEL, input="hi", stream=True)

    with capture(capture_content=True) as cap:
        gen = execute()
        first = [next(gen) for _ in range(6)]
        gen.close()
    res = only(cap).result
    assert res.extras["stream_closed_early"] is True
    assert res.tokens is None  # usage only arrives with response.completed
    assert res.model == MODEL
    deltas = "".join(e.delta for e in first if e.type == "response.output_text.delta")
    assert res.response == deltas


# -- the adapter contract -----------------------------------------------------------------


def test_matches_is_specific(client: OpenAI) -> None:
    chat, responses = get_adapter("openai_chat"), get_adapter("openai_responses")
    assert isinstance(chat, DeferredAdapter)
    assert isinstance(responses, DeferredAdapter)
    foreign: list[object] = [{"success": True}, [1], "x", None, StreamedItems([1]), object()]
    for obj in foreign:
        assert not chat.matches(obj)
        assert not responses.matches(obj)
    completion = client.chat.completions.create(model=MODEL, messages=msgs("hi"))  # type: ignore[arg-type]
    response = client.responses.create(model=MODEL, input="hi")
    assert detect_adapter(completion).name == "openai_chat"
    assert detect_adapter(response).name == "openai_responses"
    assert not responses.matches(completion)
    assert not chat.matches(response)
    chat_stream = client.chat.completions.create(model=MODEL, messages=msgs("hi"),  # type: ignore[arg-type]
                                                 stream=True)
    resp_stream = client.responses.create(model=MODEL, input="hi", stream=True)
    try:
        assert chat.matches(chat_stream)
        assert not responses.matches(chat_stream)
        assert responses.matches(resp_stream)
        assert not chat.matches(resp_stream)
    finally:
        chat_stream.close()
        resp_stream.close()


def test_generator_yielding_chat_stream_helper_events(client: OpenAI) -> None:
    @logged_execution
    def execute() -> Iterator[Any]:
        with client.chat.completions.stream(
                model=MODEL, messages=msgs("weather?"), tools=[WEATHER_TOOL],  # type: ignore[arg-type,list-item]
                stream_options={"include_usage": True}) as stream:
            yield from stream

    with capture() as cap:
        events = list(execute())
    assert {e.type for e in events} >= {"chunk", "tool_calls.function.arguments.done"}
    r = only(cap)
    assert r.engine == "openai_chat"
    assert r.result.tokens == tokens(TOOL_USAGE)
    assert r.result.tool_calls is not None
    assert [c.name for c in r.result.tool_calls] == ["get_weather"]


async def test_async_generator_yielding_responses_stream_helper_events(
        aclient: AsyncOpenAI) -> None:
    @logged_execution
    async def execute() -> AsyncIterator[Any]:
        async with aclient.responses.stream(model=MODEL, input="hi") as stream:
            async for event in stream:
                yield event

    with capture(capture_content=True) as cap:
        events = [e async for e in execute()]
    r = only(cap)
    assert r.engine == "openai_responses"
    assert r.result.tokens == tokens(TEXT_USAGE)
    assert r.result.response == events[-1].response.output_text


def test_adapters_do_not_import_the_sdks_for_foreign_results() -> None:
    from tests.conftest import run_python

    done = run_python(
        "import sys\n"
        "from instrument.adapters.registry import detect_adapter\n"
        "from instrument.adapters.protocol import StreamedItems\n"
        "for r in ({'success': True}, StreamedItems([{'a': 1}]), 'text', 3):\n"
        "    detect_adapter(r)\n"
        "print(sorted(m for m in ('openai', 'agents') if m in sys.modules))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
