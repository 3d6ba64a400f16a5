"""Executors that yield ``str`` chunks, sync and async: recorded by the ``text_stream`` adapter
as a stream (chunks, characters, time to first chunk, closed early or not), through the real
decorator and, for the four tables, a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from instrument import logged_execution
from instrument.adapters import StreamedItems, detect_adapter, get_adapter
from instrument.record import ExecutionRecord
from instrument.testing import capture
from tests.engines.rows import store_rows

CHUNKS = ["The ", "answer ", "is ", "42 ✨"]
TEXT = "".join(CHUNKS)
FIRST_DELAY_S = 0.05


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


@logged_execution(agent_id="agent_id", user_id="user_id")
def talk(agent_id: str, user_id: str, chunks: list[str] = CHUNKS) -> Iterator[str]:
    time.sleep(FIRST_DELAY_S)  # the model "thinks" before its first token
    yield from chunks


@logged_execution(agent_id="agent_id")
async def atalk(agent_id: str, fail_after: int | None = None) -> AsyncIterator[str]:
    await asyncio.sleep(FIRST_DELAY_S)
    for i, chunk in enumerate(CHUNKS):
        if fail_after is not None and i == fail_after:
            raise ConnectionResetError("the model server hung up")
        yield chunk


def test_sync_text_stream_in_the_record_and_the_four_tables(tmp_path: Path) -> None:
    with capture(capture_content=True) as cap:
        assert list(talk("writer-1", "u-1")) == CHUNKS
    r = only(cap)
    assert (r.engine, r.status, r.agent_id, r.user_id) == ("text_stream", "completed",
                                                           "writer-1", "u-1")
    res = r.result
    assert res.response == TEXT
    assert (res.tokens, res.model, res.provider, res.iterations, res.tool_calls) == (
        None, None, None, None, None)  # plain text reports none of them: not measured
    extras = dict(res.extras)
    ttfc = extras.pop("time_to_first_chunk_ms")
    assert isinstance(ttfc, float)
    assert FIRST_DELAY_S * 1000 <= ttfc <= r.duration_ms
    assert extras == {"stream_chunks": 4, "stream_chars": len(TEXT),
                      "stream_closed_early": False}

    rows = store_rows(cap.records, tmp_path / "text.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["agent_id"], ex["user_id"]) == (
        "text_stream", "completed", "writer-1", "u-1")
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"], ex["model"]) == (
        None, None, None, None)
    logs = json.loads(ex["logs"])
    assert logs["response"] == TEXT
    assert logs["extras"]["stream_chunks"] == 4
    assert logs["extras"]["stream_chars"] == len(TEXT)
    assert logs["extras"]["time_to_first_chunk_ms"] == ttfc
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", None)
    assert json.loads(rows.log["full_output"])["text_stream_metadata"]["response"] == TEXT
    assert (rows.stats["run_count"], rows.stats["success_count"],
            rows.stats["token_run_count"]) == (1, 1, 0)
    assert (rows.intensity["total_executions"], rows.intensity["successful_executions"],
            rows.intensity["n_token_runs"], rows.intensity["n_iteration_runs"]) == (1, 1, 0, 0)


def test_response_text_is_dropped_without_content_capture() -> None:
    with capture(capture_content=False) as cap:
        list(talk("writer-2", "u-2"))
    res = only(cap).result
    assert res.response is None
    assert res.extras["stream_chars"] == len(TEXT)  # counts are metadata: kept


async def test_async_text_stream() -> None:
    with capture(capture_content=True) as cap:
        got = [c async for c in atalk("async-writer")]
    assert got == CHUNKS
    r = only(cap)
    assert r.engine == "text_stream"
    assert r.result.response == TEXT
    assert r.result.extras["stream_chunks"] == 4
    assert r.result.extras["stream_closed_early"] is False
    ttfc = r.result.extras["time_to_first_chunk_ms"]
    assert isinstance(ttfc, float)
    assert FIRST_DELAY_S * 1000 <= ttfc <= r.duration_ms


async def test_async_text_stream_closed_early() -> None:
    with capture(capture_content=True) as cap:
        stream = atalk("async-writer")
        assert [await anext(stream), await anext(stream)] == CHUNKS[:2]  # type: ignore[arg-type]
        await stream.aclose()  # type: ignore[attr-defined]
    r = only(cap)
    assert (r.engine, r.status) == ("text_stream", "completed")
    assert r.result.response == "".join(CHUNKS[:2])
    assert r.result.extras["stream_chunks"] == 2
    assert r.result.extras["stream_chars"] == len("".join(CHUNKS[:2]))
    assert r.result.extras["stream_closed_early"] is True


def test_sync_text_stream_closed_early() -> None:
    with capture() as cap:
        gen = talk("w", "u")
        assert next(gen) == CHUNKS[0]
        gen.close()
    r = only(cap)
    assert r.engine == "text_stream"
    assert r.result.extras["stream_chunks"] == 1
    assert r.result.extras["stream_closed_early"] is True


async def test_text_stream_failing_midway_is_a_failed_record(tmp_path: Path) -> None:
    got: list[str] = []

    async def drain() -> None:
        async for chunk in atalk("flaky-writer", fail_after=2):
            got.append(chunk)

    with capture(capture_content=True) as cap, pytest.raises(ConnectionResetError):
        await drain()
    assert got == CHUNKS[:2]
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert (r.result.error.type, r.result.error.message) == (
        "ConnectionResetError", "the model server hung up")
    rows = store_rows(cap.records, tmp_path / "failed.db")[0]
    assert (rows.execution["status"], rows.execution["error_type"]) == (
        "failed", "ConnectionResetError")
    assert (rows.stats["run_count"], rows.stats["failure_count"]) == (1, 1)
    assert rows.intensity["failed_executions"] == 1


def test_an_empty_stream_is_an_empty_text_stream() -> None:
    with capture(capture_content=True) as cap:
        assert list(talk("quiet", "u", chunks=[])) == []
    res = only(cap).result
    assert only(cap).engine == "text_stream"
    assert res.response is None
    assert res.extras == {"stream_chunks": 0, "stream_chars": 0, "stream_closed_early": False}


def _chunk(content: str | None, finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({
        "id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "gpt-4o-mini", "choices": [
            {"index": 0, "delta": {} if content is None else {"content": content},
             "finish_reason": finish}]})


def test_detection_is_per_stream_not_memoized_by_the_first_one() -> None:
    """One function's first stream may be empty; its next one decides by its own items."""
    chunks = [_chunk("Hi"), _chunk(None, "stop")]

    @logged_execution
    def relay(n: int) -> Iterator[ChatCompletionChunk]:
        yield from chunks[:n]

    @logged_execution
    def relay_then_text(kind: str) -> Iterator[Any]:
        yield from (chunks if kind == "chat" else CHUNKS)

    with capture() as cap:
        for n in (0, 2, 0, 2):
            list(relay(n))
        for kind in ("chat", "text", "chat"):
            list(relay_then_text(kind))
    assert [r.engine for r in cap.records] == [
        "text_stream", "openai_chat", "text_stream", "openai_chat",
        "openai_chat", "text_stream", "openai_chat"]
    assert all("normalization_error" not in r.result.extras for r in cap.records)


def test_matches_only_str_streams() -> None:
    adapter = get_adapter("text_stream")
    assert adapter.matches(StreamedItems(["a", "b"]))
    assert adapter.matches(StreamedItems())
    for foreign in (["a", "b"], "ab", StreamedItems(["a", 1]), StreamedItems([b"a"]),
                    StreamedItems([{"content": "a"}]), {"success": True}, None):
        assert not adapter.matches(foreign), foreign
    assert detect_adapter(StreamedItems(["a"])).name == "text_stream"
    assert detect_adapter(["a"]).name == "mapping"  # a returned list is not a stream


def test_forcing_text_stream_on_foreign_items_records_a_normalization_error() -> None:
    @logged_execution(engine="text_stream")
    def numbers() -> Iterator[int]:
        yield from (1, 2)

    with capture() as cap:
        assert list(numbers()) == [1, 2]
    r = only(cap)
    assert (r.engine, r.status) == ("text_stream", "completed")
    assert r.result.extras["normalization_error"] == (
        "TypeError: text_stream: chunk 0 is a int, not a str; register an adapter for this "
        "stream's items (docs/adapters.md)")


def test_streamed_items_time_their_first_item() -> None:
    timed = StreamedItems()
    assert timed.first_item_ms is None
    time.sleep(0.02)
    timed.append("x")
    first = timed.first_item_ms
    assert first is not None
    assert first >= 20
    timed.append("y")
    assert timed.first_item_ms == first  # the first item only
    assert StreamedItems(["given"]).first_item_ms is None  # nobody timed it
