"""An AgentKit-style executor: a function-calling loop on the real ``openai`` client.

The executor calls the model, runs the tools it asks for, feeds the results back and repeats
until the model answers without tool calls, within limits: a maximum number of iterations,
a token budget per iteration and for the whole run, and loop detection (the same tool called
too often in a row). It returns the AgentKit result shape (``success``, ``response``,
``toolCalls``, ``tokensUsed {prompt, completion, total}``, ``executionTime``, ``iterations``,
``model``, ``provider``, ``error``) and is decorated with ``@logged_execution``, which is all
it takes to get a span and the four writes per run.

Unlike the origin, a failed run keeps the tokens it already spent.

Run it:

- offline: ``python examples/agentkit_executor.py`` (starts the repository's loopback stub
  server when neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL`` is set);
- against any OpenAI-compatible server: ``OPENAI_BASE_URL=http://127.0.0.1:8000/v1``;
- online: ``OPENAI_API_KEY=sk-...``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from openai import OpenAI

import instrument
from instrument import logged_execution

DEFAULT_MODEL = "gpt-4o-mini"


@dataclass
class Agent:
    id: str
    name: str
    instructions: str = "You are a helpful assistant. Use the tools when they help."
    model: str = DEFAULT_MODEL
    plugins: tuple[str, ...] = ("weather", "calendar")


@dataclass
class Limits:
    max_iterations: int = 10
    max_tokens_per_iteration: int = 50_000
    max_total_tokens: int = 200_000
    max_same_tool_repeats: int = 3
    loop_detection_window: int = 3


@dataclass
class Tool:
    plugin: str
    action: str
    description: str
    parameters: dict[str, Any]
    run: Callable[..., Any]

    @property
    def name(self) -> str:
        return f"{self.plugin}__{self.action}"

    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


def _forecast(city: str) -> dict[str, Any]:
    return {"city": city, "items": [{"day": "today", "sky": "sunny", "high_c": 21},
                                    {"day": "tomorrow", "sky": "cloudy", "high_c": 18}]}


def _events(day: str) -> dict[str, Any]:
    return {"day": day, "events": [{"time": "09:00", "title": "Stand-up"}]}


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("weather", "get_forecast", "Weather forecast for a city",
         {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
         _forecast),
    Tool("calendar", "list_events", "Calendar events of a day",
         {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]},
         _events),
)}


@dataclass
class _Run:
    started: float = field(default_factory=time.perf_counter)
    prompt: int = 0
    completion: int = 0
    total: int = 0
    iterations: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def result(self, *, success: bool, model: str, response: str = "",
               error: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "success": success,
            "response": response,
            "toolCalls": self.tool_calls,
            "tokensUsed": {"prompt": self.prompt, "completion": self.completion,
                           "total": self.total},
            "executionTime": round((time.perf_counter() - self.started) * 1000),
            "iterations": self.iterations,
            "model": model,
            "provider": "openai",
        }
        if error is not None:
            out["error"] = error
        return out


def _run_tool(tool_name: str, arguments: str) -> dict[str, Any]:
    tool = TOOLS.get(tool_name)
    plugin, _, action = tool_name.partition("__")
    started = time.perf_counter()
    call: dict[str, Any] = {"plugin": plugin or "unknown", "action": action or tool_name}
    try:
        params = json.loads(arguments or "{}")
        call["parameters"] = params
        if tool is None:
            raise LookupError(f"unknown tool {tool_name!r}")
        call["result"] = tool.run(**params)
        call["success"] = True
    except Exception as exc:  # a failing tool is reported to the model, not raised
        call["success"] = False
        call["error"] = f"{type(exc).__name__}: {exc}"
        call["result"] = None
    call["executionTime"] = round((time.perf_counter() - started) * 1000, 3)
    return call


@logged_execution(engine="agentkit", agent_id="agent.id", user_id="user_id",
                  agent_name="agent.name", session_id="session_id")
def run_agentkit(user_id: str, agent: Agent, user_input: str, session_id: str | None = None,
                 *, client: OpenAI | None = None, limits: Limits | None = None
                 ) -> dict[str, Any]:
    """Run one AgentKit execution and return the AgentKit result shape."""
    limits = limits or Limits()
    client = client or OpenAI()
    tools = [TOOLS[n].schema() for n in TOOLS if TOOLS[n].plugin in agent.plugins]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": agent.instructions},
        {"role": "user", "content": user_input},
    ]
    run = _Run()
    recent: list[str] = []
    try:
        while run.iterations < limits.max_iterations:
            run.iterations += 1
            completion = client.chat.completions.create(
                model=agent.model, messages=messages, tools=tools,  # type: ignore[arg-type]
                temperature=0.1)
            usage = completion.usage
            used = usage.total_tokens if usage else 0
            if usage is not None:
                run.prompt += usage.prompt_tokens
                run.completion += usage.completion_tokens
                run.total += usage.total_tokens
            if used > limits.max_tokens_per_iteration:
                return run.result(success=False, model=completion.model, error=(
                    f"Iteration {run.iterations} used {used} tokens, over the "
                    f"{limits.max_tokens_per_iteration} per-iteration limit"))
            if run.total > limits.max_total_tokens:
                return run.result(success=False, model=completion.model, error=(
                    f"Run used {run.total} tokens, over the {limits.max_total_tokens} limit"))
            message = completion.choices[0].message
            if not message.tool_calls:
                return run.result(success=True, model=completion.model,
                                  response=message.content or "")
            messages.append(message.model_dump(exclude_none=True))
            for tc in message.tool_calls:
                name = getattr(getattr(tc, "function", None), "name", "")
                args = getattr(getattr(tc, "function", None), "arguments", "{}")
                call = _run_tool(name, args)
                run.tool_calls.append(call)
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": json.dumps(
                    call["result"] if call["success"] else {"error": call["error"]})})
                recent = ([*recent, name])[-limits.loop_detection_window:]
                if (len(recent) >= limits.max_same_tool_repeats
                        and recent.count(name) >= limits.max_same_tool_repeats):
                    return run.result(success=False, model=completion.model, error=(
                        f"Loop detected: {name} called {limits.max_same_tool_repeats} times "
                        f"in the last {limits.loop_detection_window} calls"))
        return run.result(success=False, model=agent.model, error="MAX_ITERATIONS_REACHED")
    except openai.OpenAIError as exc:  # the origin returned zero tokens here; we keep them
        return run.result(success=False, model=agent.model,
                          error=f"{type(exc).__name__}: {exc}")


def main() -> int:
    stub = None
    if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("OPENAI_BASE_URL"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.openai_stub import StubServer

        stub = StubServer().start()
        client = OpenAI(base_url=stub.base_url, api_key="offline-stub")
    else:
        client = OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "offline-stub")
    try:
        agent = Agent(id="agent-weather-1", name="Weather helper")
        result = run_agentkit("user-1", agent, "What's the weather in Paris today?",
                              session_id=str(uuid.uuid4()), client=client)
        print(json.dumps({k: v for k, v in result.items() if k != "toolCalls"}, indent=2))
        print(f"tool calls: {[c['plugin'] + '.' + c['action'] for c in result['toolCalls']]}")
    finally:
        instrument.flush()
        if stub is not None:
            stub.stop()
    return 0 if result["success"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
