"""Runs real Google ADK agents offline; executed by tests/engines/test_google_adk.py in a side
virtual environment (google-adk caps OpenTelemetry and google-genai below what the main test
environment has, so the two cannot share one).

The model is a custom ``BaseLlm`` that returns canned ``LlmResponse`` objects (with usage, tool
calls and an error), so every run is real ADK (Runner, session service, tool execution,
long-running tools, tool confirmation) without a network.

    python tests/engines/adk_driver.py record DIR   # write each scenario's events as JSON
    python tests/engines/adk_driver.py run DB       # run each scenario under @logged_execution
                                                    # writing to sqlite:///DB; print the ids

Not collected by pytest (no ``test_`` prefix) and never imported by the main environment.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from google.adk import version as adk_version
from google.adk.agents import LlmAgent, RunConfig
from google.adk.agents.run_config import StreamingMode
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.adk.tools import FunctionTool
from google.adk.tools.long_running_tool import LongRunningFunctionTool
from google.genai import types
from google.genai import version as genai_version
from pydantic import Field

MODEL_VERSION = "gemini-3.8-flash-001"
PROMPT = "What is the weather in Paris?"


def usage(prompt: int, answer: int, thoughts: int | None = None,
          cached: int | None = None) -> types.GenerateContentResponseUsageMetadata:
    return types.GenerateContentResponseUsageMetadata(
        prompt_token_count=prompt, candidates_token_count=answer,
        thoughts_token_count=thoughts, cached_content_token_count=cached,
        total_token_count=prompt + answer + (thoughts or 0))


def call(name: str, call_id: str, **args: Any) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(
        function_call=types.FunctionCall(id=call_id, name=name, args=args))]),
        usage_metadata=usage(40, 8, thoughts=3), model_version=MODEL_VERSION)


def say(text: str, **kw: Any) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]),
                       usage_metadata=kw.pop("usage", usage(60, 5, cached=20)),
                       model_version=MODEL_VERSION, **kw)


class ScriptedModel(BaseLlm):
    """Answers each model request with the next scripted response; with ``stream=True`` it
    first sends the text in partial fragments, as a streaming model does."""

    script: list[LlmResponse] = Field(default_factory=list)

    async def generate_content_async(self, llm_request: LlmRequest, stream: bool = False
                                     ) -> AsyncIterator[LlmResponse]:
        response = self.script.pop(0)
        text = response.content.parts[0].text if response.content and response.content.parts \
            else None
        if stream and text:
            for i in range(0, len(text), 6):
                yield LlmResponse(content=types.Content(role="model", parts=[
                    types.Part(text=text[i:i + 6])]), partial=True,
                    usage_metadata=usage(60, 1 + i // 6), model_version=MODEL_VERSION)
        yield response


def get_weather(city: str) -> dict[str, str]:
    """The weather in a city."""
    return {"forecast": f"sunny in {city}"}


def ask_manager(amount: int) -> dict[str, str]:
    """Ask a manager to approve a refund; they answer later."""
    return {"status": "pending", "ticket": f"refund-{amount}"}


def scenarios() -> dict[str, tuple[list[LlmResponse], list[Any], bool]]:
    """name -> (scripted model responses, tools, streamed)."""
    return {
        "tool": ([call("get_weather", "fc-1", city="Paris"), say("It is sunny in Paris.")],
                 [get_weather], False),
        "blocked": ([LlmResponse(error_code="SAFETY", error_message="The answer was blocked.",
                                 usage_metadata=usage(10, 0), model_version=MODEL_VERSION)],
                    [], False),
        "paused": ([call("ask_manager", "fc-2", amount=40),
                    say("I asked your manager; waiting for the answer.")],
                   [LongRunningFunctionTool(ask_manager)], False),
        "confirm": ([call("get_weather", "fc-3", city="Rome")],
                    [FunctionTool(get_weather, require_confirmation=True)], False),
        "unknown_tool": ([call("lookup_order", "fc-4", order="A-1"),
                          say("I could not look that up.")], [get_weather], False),
        "stream": ([say("Sunny and mild in Paris today.")], [], True),
    }


async def run_scenario(name: str) -> AsyncIterator[Any]:
    script, tools, streamed = scenarios()[name]
    agent = LlmAgent(name="weather_agent", model=ScriptedModel(model="scripted", script=script),
                     tools=tools, instruction="Answer weather questions.")
    runner = InMemoryRunner(agent=agent, app_name="adk-driver")
    session = await runner.session_service.create_session(app_name="adk-driver", user_id="u-1")
    config = RunConfig(streaming_mode=StreamingMode.SSE if streamed else StreamingMode.NONE)
    message = types.Content(role="user", parts=[types.Part(text=PROMPT)])
    async for event in runner.run_async(user_id="u-1", session_id=session.id,
                                        new_message=message, run_config=config):
        yield event


async def record(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in scenarios():
        events = [json.loads(e.model_dump_json(exclude_none=True))
                  async for e in run_scenario(name)]
        doc = {"recorded_with": {"google-adk": adk_version.__version__,
                                 "google-genai": genai_version.__version__},
               "scenario": name, "events": events}
        (out / f"google_adk_{name}.json").write_text(json.dumps(doc, indent=1) + "\n",
                                                     encoding="utf-8")


async def run(db: Path) -> None:
    import instrument
    from instrument import current_execution, logged_execution

    instrument.configure(database_url=f"sqlite:///{db}", capture_content=True, traces="none")
    ids: dict[str, str] = {}

    @logged_execution(agent_id="agent_id", user_id=instrument.literal("u-1"))
    async def run_agent(agent_id: str, scenario: str) -> AsyncIterator[Any]:
        ctx = current_execution()
        assert ctx is not None
        ids[scenario] = str(ctx.execution_id)
        async for event in run_scenario(scenario):
            yield event

    @logged_execution(agent_id="agent_id")
    async def collect(agent_id: str, scenario: str) -> list[Any]:
        ctx = current_execution()
        assert ctx is not None
        ids[f"{scenario}:list"] = str(ctx.execution_id)
        return [event async for event in run_scenario(scenario)]

    for name in scenarios():
        async for _ in run_agent(f"adk-{name}", name):
            pass
    await collect("adk-collected", "tool")
    assert instrument.flush(30), "records were not written"
    instrument.shutdown()
    print(json.dumps(ids))


if __name__ == "__main__":
    mode, where = sys.argv[1], Path(sys.argv[2])
    asyncio.run(record(where) if mode == "record" else run(where))
