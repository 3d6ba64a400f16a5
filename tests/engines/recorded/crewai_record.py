"""Record CrewAI's real result objects as JSON, for tests that run without CrewAI installed.

CrewAI 1.15 cannot share the test environment (it needs openai < 3, pydantic < 2.13 and
mcp < 2; about 1 GB): run this with a side environment's Python, where ``pip install crewai``
put it. It runs real crews, agents and flows offline (a ``BaseLLM`` subclass answering with
canned ReAct text, with CrewAI's own usage counters) and writes ``crewai_results.json`` next to
itself: each object's module, class, CrewAI version and ``model_dump(mode="json")``.

With ``--execute DB``, it instead runs one crew inside ``@logged_execution`` writing to the
SQLite database ``DB`` (tests/engines/test_crewai.py's slow test reads the rows back).

    CREWAI_DISABLE_TELEMETRY=true python tests/engines/recorded/crewai_record.py
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

from crewai import Agent, Crew, Process, Task
from crewai.flow import Flow, human_feedback, start
from crewai.flow.async_feedback import HumanFeedbackPending
from crewai.llms.base_llm import BaseLLM
from crewai.tools import tool
from crewai.tools.tool_failure import ToolExecutionFailedError, ToolFailurePolicy

HERE = Path(__file__).resolve().parent
#: One request's usage as OpenAI reports it: CrewAI normalizes and sums it per LLM object.
USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
         "prompt_tokens_details": {"cached_tokens": 40}}


class CannedLLM(BaseLLM):
    """Answers each request with the next canned text and reports `USAGE` for it."""

    def __init__(self, replies: list[str], **kwargs: Any) -> None:
        super().__init__(model="canned-1", **kwargs)
        self._replies = list(replies)

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None,
             available_functions: Any = None, from_task: Any = None, from_agent: Any = None,
             response_model: Any = None) -> str:
        self._track_token_usage_internal(dict(USAGE))
        return self._replies.pop(0)

    def supports_function_calling(self) -> bool:
        return False

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 8192


@tool("get_weather")
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@tool("broken_tool")
def broken_tool(city: str) -> str:
    """A tool whose backend is down."""
    raise RuntimeError("backend down")


WEATHER = [
    'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris"}',
    'Thought: And Oslo.\nAction: broken_tool\nAction Input: {"city": "Oslo"}',
    "Thought: I now know the final answer\nFinal Answer: Sunny in Paris; Oslo unknown.",
]


def weather_crew(policy: ToolFailurePolicy | None = None, *, stream: bool = False) -> Crew:
    extra = {} if policy is None else {"tool_failure_policy": policy}
    agent = Agent(role="Forecaster", goal="Answer weather questions", backstory="A forecaster.",
                  llm=CannedLLM(WEATHER), tools=[get_weather, broken_tool], max_iter=5, **extra)
    task = Task(description="Weather in Paris and Oslo?", expected_output="One sentence.",
                agent=agent)
    return Crew(agents=[agent], tasks=[task], process=Process.sequential, stream=stream)


class PendingProvider:
    """A feedback provider that hands the question to an external system and pauses."""

    def request_feedback(self, context: Any, flow: Any) -> str:
        raise HumanFeedbackPending(context=context, callback_info={"ticket": "T-7"})


class ReviewFlow(Flow):  # type: ignore[type-arg]
    @start()
    @human_feedback(message="Approve this draft?", emit=["approved", "rejected"],
                    llm="gpt-4o-mini", provider=PendingProvider())  # type: ignore[arg-type]
    def draft(self) -> str:
        return "A draft"


def dump(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    if isinstance(obj, HumanFeedbackPending):
        data: Any = {"context": obj.context.to_dict(), "callback_info": obj.callback_info,
                     "message": str(obj)}
    elif isinstance(obj, ToolExecutionFailedError):
        data = {"record": obj.record.model_dump(mode="json"), "message": str(obj)}
    else:
        data = obj.model_dump(mode="json")
    return {"module": cls.__module__, "class": cls.__name__, "data": data}


def record() -> None:
    results: dict[str, Any] = {"crewai_version": importlib.metadata.version("crewai")}
    results["crew_with_a_failed_tool"] = dump(weather_crew().kickoff())
    solo = Agent(role="Greeter", goal="Greet", backstory="Friendly.",
                 llm=CannedLLM(["Thought: easy\nFinal Answer: Hello!"]))
    results["agent_kickoff"] = dump(solo.kickoff("Say hello"))
    results["paused_flow"] = dump(ReviewFlow().kickoff())
    try:
        weather_crew(ToolFailurePolicy.RAISE).kickoff()
    except ToolExecutionFailedError as exc:
        results["tool_failure_raised"] = dump(exc)
    out = HERE / "crewai_results.json"
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


def execute(db: str) -> None:
    """One crew run inside the decorator, written to the SQLite database `db`."""
    import instrument
    from instrument import logged_execution

    instrument.configure(database_url=f"sqlite:///{db}", capture_content=True)

    @logged_execution(agent_id="agent_id", user_id="user_id")
    def run_crew(agent_id: str, user_id: str) -> Any:
        return weather_crew().kickoff()

    @logged_execution(agent_id="agent_id")
    def review(agent_id: str) -> Any:
        return ReviewFlow().kickoff()

    @logged_execution(agent_id="agent_id")
    def run_streamed(agent_id: str) -> Any:
        return weather_crew(stream=True).kickoff()  # returned unread: the adapter follows it

    out = run_crew("forecaster", "u-1")
    paused = review("reviewer")
    streaming = run_streamed("streamer")
    chunks = list(streaming)
    instrument.shutdown(30.0)
    print(json.dumps({"raw": out.raw, "paused": type(paused).__name__,
                      "streamed": [type(streaming).__name__, len(chunks),
                                   streaming.result.raw]}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--execute":
        execute(sys.argv[2])
    else:
        record()
