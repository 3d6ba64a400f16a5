"""The ``text_stream`` adapter: an executor that yields ``str`` chunks (sync or async).

The most common LLM pattern::

    @logged_execution
    async def answer(question: str):
        async for delta in llm.stream(question):
            yield delta

The decorator hands the yielded chunks over as one
:class:`~instrument.adapters.protocol.StreamedItems`; it is a text stream when every chunk
(looked at: the first and last 32) is a ``str``. A generator that yielded nothing is an empty
text stream (no other adapter can claim it). The record is a success (a stream that raised is
recorded as failed by the decorator) with, in ``extras``:

- ``stream_chunks``: how many chunks were yielded;
- ``stream_chars``: their total length in characters;
- ``time_to_first_chunk_ms``: from the call's stream start to the first chunk, as the consumer
  saw it (absent when not measured: no chunk, or items not timed by the decorator);
- ``stream_closed_early``: ``False`` here; the decorator sets ``True`` when the consumer closed
  or dropped the stream before it ended.

The joined text is the ``response`` (persisted and put on spans only under the content policy).
Tokens, model and provider are not in plain text, so they stay ``None`` (not measured).
"""

from __future__ import annotations

from pydantic import JsonValue

from instrument.adapters._coerce import MAX_TEXT, is_a, truncate
from instrument.adapters._openai import ends
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult

__all__ = ["ADAPTER", "TextStreamAdapter"]


class TextStreamAdapter:
    """``text_stream``: the ``str`` chunks a generator executor yielded."""

    name = "text_stream"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if type(result) is not StreamedItems:
            return False
        return all(is_a(item, str) for item in ends(result))

    def normalize(self, result: object) -> ExecutionResult:
        if type(result) is not StreamedItems:
            raise TypeError(
                f"text_stream needs the str chunks a generator executor yielded, got "
                f"{type(result).__qualname__}; return or yield str chunks, or pass another "
                "engine=")
        chunks: list[str] = []
        for i, item in enumerate(result):
            if not is_a(item, str):
                raise TypeError(
                    f"text_stream: chunk {i} is a {type(item).__qualname__}, not a str; "
                    "register an adapter for this stream's items (docs/adapters.md)")
            chunks.append(str.__str__(item))
        text = "".join(chunks)
        extras: dict[str, JsonValue] = {
            "stream_chunks": len(chunks),
            "stream_chars": len(text),
            "stream_closed_early": False,
        }
        first = result.first_item_ms
        if first is not None:
            extras["time_to_first_chunk_ms"] = round(first, 3)
        return ExecutionResult(success=True,
                               response=truncate(text, MAX_TEXT) if text else None,
                               extras=extras)


ADAPTER = TextStreamAdapter()


def conformance_samples() -> list[object]:
    """Streams as executors really yield them, for
    :func:`instrument.adapters.conformance.check_adapter`.

    Run: ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k text_stream``.
    """
    from instrument.adapters.conformance import Sample

    unmeasured = {"tokens", "iterations", "retries", "tool_calls", "model", "provider",
                  "memory", "steps", "workflow", "orchestration_ms"}
    timed = StreamedItems()
    for chunk in ("The answer", " is ", "42."):
        timed.append(chunk)
    return [
        Sample(timed, unmeasured=unmeasured, label="timed text stream"),
        Sample(StreamedItems(["Bonjour", " ", "à tous ✨"]), unmeasured=unmeasured,
               label="untimed, non-ASCII"),
        Sample(StreamedItems(), unmeasured=unmeasured | {"response"}, label="empty stream"),
    ]
