"""A scripted ``agents.models.interface.Model`` so the real ``Runner`` runs fully offline.

Each call of the model takes the next scripted turn (a list of output items); the script may
also be a callable that builds a turn from the call number (for "call a tool forever"). Usage is
fixed per turn so records can be asserted exactly. Streaming yields ``response.created``, one
``response.output_item.done`` per item and ``response.completed``, with a short sleep between
events so a test can walk away halfway through.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from agents import Usage
from agents.items import ModelResponse
from agents.models.interface import Model
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

__all__ = ["TURN_USAGE", "FakeModel", "call", "say"]

#: input, output, cached input, reasoning tokens of every fake turn.
TURN_USAGE = (100, 20, 40, 5)

Turn = list[Any]
Script = Sequence[Turn] | Callable[[int], Turn]


def say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg_{abs(hash(text)) % 10**8}", type="message", role="assistant",
        status="completed",
        content=[ResponseOutputText(text=text, type="output_text", annotations=[],
                                    logprobs=[])])


def call(name: str, args: dict[str, Any], call_id: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(id=f"fc_{call_id}", call_id=call_id, type="function_call",
                                    name=name, arguments=json.dumps(args))


def _usage() -> ResponseUsage:
    inp, out, cached, reasoning = TURN_USAGE
    return ResponseUsage(
        input_tokens=inp, output_tokens=out, total_tokens=inp + out,
        input_tokens_details=InputTokensDetails(cached_tokens=cached, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning))


class FakeModel(Model):
    """Plays a script of turns. ``model`` is the name it reports; ``calls`` counts requests."""

    provider = "fake"

    def __init__(self, script: Script, *, model: str = "fake-gpt", delay: float = 0.005
                 ) -> None:
        self.script = script
        self.model = model
        self.delay = delay
        self.calls = 0

    def _next_turn(self) -> Turn:
        n = self.calls
        self.calls += 1
        if callable(self.script):
            return self.script(n)
        if n >= len(self.script):
            raise AssertionError(f"fake model called {n + 1} times; script has "
                                 f"{len(self.script)} turns")
        return list(self.script[n])

    def _response(self, output: Turn) -> Response:
        return Response(id=f"resp_fake_{self.calls}", created_at=time.time(), model=self.model,
                        object="response", output=output, parallel_tool_calls=True,
                        tool_choice="auto", tools=[], status="completed", usage=_usage())

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any,
                           tools: Any, output_schema: Any, handoffs: Any, tracing: Any, *,
                           previous_response_id: Any = None, conversation_id: Any = None,
                           prompt: Any = None, **_: Any) -> ModelResponse:
        output = self._next_turn()
        await asyncio.sleep(0)
        inp, out, cached, reasoning = TURN_USAGE
        details = InputTokensDetails(cached_tokens=cached, cache_write_tokens=0)
        usage = Usage(requests=1, input_tokens=inp, output_tokens=out, total_tokens=inp + out,
                      input_tokens_details=details,
                      output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning))
        return ModelResponse(output=output, usage=usage, response_id=f"resp_fake_{self.calls}")

    async def stream_response(self, system_instructions: Any, input: Any, model_settings: Any,
                              tools: Any, output_schema: Any, handoffs: Any, tracing: Any, *,
                              previous_response_id: Any = None, conversation_id: Any = None,
                              prompt: Any = None, **_: Any) -> AsyncIterator[Any]:
        output = self._next_turn()
        final = self._response(output)
        pending = final.model_copy(update={"output": [], "status": "in_progress",
                                           "usage": None})
        seq = 0
        yield ResponseCreatedEvent(type="response.created", response=pending,
                                   sequence_number=seq)
        for index, item in enumerate(output):
            await asyncio.sleep(self.delay)
            seq += 1
            yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item,
                                              output_index=index, sequence_number=seq)
        await asyncio.sleep(self.delay)
        yield ResponseCompletedEvent(type="response.completed", response=final,
                                     sequence_number=seq + 1)
