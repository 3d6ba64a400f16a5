"""Conformance samples for the ``anthropic``, ``google_genai`` and ``google_adk`` adapters:
results built with the SDKs' own types from what the local stubs serve, and recorded ADK runs
(tests/adapters/test_conformance.py runs the checker on them; the adapters' own
``conformance_samples()`` add more). Imports of the SDKs happen only when a sample is made.
"""

from __future__ import annotations

from typing import Any

from instrument.adapters.conformance import Sample
from instrument.adapters.protocol import StreamedItems

__all__ = ["provider_samples"]

_UNREPORTED = {"retries", "steps", "memory", "workflow", "orchestration_ms"}


def _anthropic() -> list[object]:
    from anthropic.types import (
        Message,
        RawContentBlockDeltaEvent,
        RawContentBlockStartEvent,
        RawContentBlockStopEvent,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
        RawMessageStopEvent,
    )

    from tests.engines.anthropic_stub import TOOL_USAGE, Reply, message_json, stream_events

    kinds: dict[str, Any] = {
        "message_start": RawMessageStartEvent, "message_delta": RawMessageDeltaEvent,
        "message_stop": RawMessageStopEvent, "content_block_start": RawContentBlockStartEvent,
        "content_block_delta": RawContentBlockDeltaEvent,
        "content_block_stop": RawContentBlockStopEvent,
    }
    body = {"model": "claude-sonnet-4-5"}
    text = Reply([{"type": "thinking", "thinking": "The user greets me.", "signature": "sig"},
                  {"type": "text", "text": "Hello! How can I help you today?"}])
    tool = Reply([{"type": "tool_use", "id": "toolu_s1", "name": "lookup_order",
                   "input": {"order_id": "A-1001 for 221B Baker Street"}}], "tool_use",
                 dict(TOOL_USAGE))
    events = StreamedItems(kinds[kind].model_validate(data)
                           for kind, data in stream_events(body, text) if kind in kinds)
    return [
        Sample(Message.model_validate(message_json(body, text)), unmeasured=_UNREPORTED,
               label="message with cache and thinking"),
        Sample(Message.model_validate(message_json(body, tool)),
               unmeasured=_UNREPORTED | {"response", "tokens.reasoning_tokens"},
               label="tool use"),
        Sample(events, unmeasured=_UNREPORTED, label="raw stream events"),
    ]


def _google_genai() -> list[object]:
    from google.genai import types

    from tests.engines.gemini_stub import ANSWER, MODEL_VERSION

    history = [
        {"role": "user", "parts": [{"text": "What is the weather at 221B Baker Street?"}]},
        {"role": "model", "parts": [{"function_call": {
            "name": "get_weather", "args": {"address": "221B Baker Street, London"}}}]},
        {"role": "user", "parts": [{"function_response": {
            "name": "get_weather", "response": {"result": "rainy at 221B Baker Street"}}}]},
    ]
    response = types.GenerateContentResponse.model_validate({
        "candidates": [{"content": {"role": "model", "parts": [{"text": ANSWER}]},
                        "finish_reason": "STOP", "index": 0}],
        "model_version": MODEL_VERSION, "response_id": "resp-c1",
        "usage_metadata": {"prompt_token_count": 120, "cached_content_token_count": 80,
                           "candidates_token_count": 20, "thoughts_token_count": 15,
                           "total_token_count": 155},
        "automatic_function_calling_history": history,
    })
    return [Sample(response, unmeasured=_UNREPORTED, label="automatic function calling")]


def _google_adk() -> list[object]:
    from tests.engines.adk_recorded import load_events

    return [
        Sample(StreamedItems(load_events("tool")), unmeasured=_UNREPORTED | {"input"},
               label="recorded tool run"),
        Sample(StreamedItems(load_events("paused")), unmeasured=_UNREPORTED,
               label="recorded paused run"),
        Sample(load_events("blocked"), unmeasured=_UNREPORTED | {"response"},
               label="recorded blocked run, collected in a list"),
        Sample(StreamedItems(load_events("stream")), unmeasured=_UNREPORTED,
               label="recorded streamed run with partial events"),
    ]


_FACTORIES = {"anthropic": _anthropic, "google_genai": _google_genai, "google_adk": _google_adk}


def provider_samples(name: str) -> list[object]:
    """The samples for the built-in adapter `name`."""
    return _FACTORIES[name]()
