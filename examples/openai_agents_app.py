"""An OpenAI Agents SDK app with ``@logged_execution``: a triage agent hands weather questions
to a specialist that has a tool.

Both entry points are decorated; the adapter (``openai_agents``) is picked from the result:

- :func:`answer` awaits ``Runner.run`` and returns the ``RunResult``;
- :func:`answer_streamed` returns ``Runner.run_streamed``'s live ``RunResultStreaming``
  unchanged; the record is written when the run ends, however the caller consumes it.

``build_agents(model)`` takes any model the SDK accepts: a name, an ``agents.Model`` (the tests
pass a scripted one, and one talking to the loopback stub), or ``None`` for the SDK default.

Run it offline (``python examples/openai_agents_app.py`` starts the loopback stub when neither
``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL`` is set; SDK tracing to OpenAI is then disabled) or
online with ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    Model,
    OpenAIResponsesModel,
    Runner,
    RunResult,
    RunResultStreaming,
    function_tool,
    handoff,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

import instrument
from instrument import literal, logged_execution

MAX_TURNS = 6


@function_tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny and 21°C in {city}."


def build_agents(model: str | Model | None = None) -> Agent[Any]:
    """The triage agent (entry point) with a handoff to the weather specialist."""
    kw: dict[str, Any] = {} if model is None else {"model": model}
    weather = Agent(name="Weather specialist", tools=[get_weather],
                    instructions="Answer weather questions using get_weather.", **kw)
    return Agent(name="Triage", handoffs=[handoff(weather)],
                 instructions="Hand weather questions to the weather specialist.", **kw)


@logged_execution(agent_id=literal("agents-weather-app"), user_id="user_id",
                  session_id="session_id", agent_name="agent.name")
async def answer(user_id: str, question: str, agent: Agent[Any],
                 session_id: str | None = None) -> RunResult:
    return await Runner.run(agent, question, max_turns=MAX_TURNS)


@logged_execution(agent_id=literal("agents-weather-app"), user_id="user_id",
                  session_id="session_id", agent_name="agent.name")
def answer_streamed(user_id: str, question: str, agent: Agent[Any],
                    session_id: str | None = None) -> RunResultStreaming:
    return Runner.run_streamed(agent, question, max_turns=MAX_TURNS)


async def _demo(model: str | Model | None) -> None:
    agent = build_agents(model)
    result = await answer("user-1", "What's the weather in Paris?", agent,
                          session_id=str(uuid.uuid4()))
    print(f"final output: {result.final_output!r} (last agent: {result.last_agent.name})")
    streamed = answer_streamed("user-1", "And in Oslo?", agent)
    async for event in streamed.stream_events():
        if event.type == "run_item_stream_event":
            print(f"  event: {event.name}")
    print(f"streamed final output: {streamed.final_output!r}")


def main() -> int:
    stub = None
    model: str | Model | None = None
    if not os.environ.get("OPENAI_API_KEY"):
        set_tracing_disabled(True)  # nothing to export traces to offline
        base_url = os.environ.get("OPENAI_BASE_URL")
        if base_url is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.openai_stub import StubServer

            stub = StubServer().start()
            base_url = stub.base_url
        model = OpenAIResponsesModel(model="gpt-4o-mini", openai_client=AsyncOpenAI(
            base_url=base_url, api_key="offline-stub"))
    try:
        asyncio.run(_demo(model))
    finally:
        instrument.flush()
        if stub is not None:
            stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
