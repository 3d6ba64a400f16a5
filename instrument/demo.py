"""The sample executors behind ``instrument demo``: one decorator, every engine, one store.

Two executors mirror the origin application's run-agent route: a workflow orchestrator and a
function-calling agent loop ("agentkit"). Neither contains a line of logging; each is decorated
with :func:`~instrument.logged_execution` and gets the same four writes (``agent_executions``,
``agent_logs``, ``agent_stats``, ``agent_intensity_metrics``) and one span per call. A few runs
fail on purpose, both ways an executor can fail: returning ``success: false`` and raising.

Library code: nothing here prints. :func:`run_demo` returns what ran; the CLI renders it.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from instrument.binding import literal
from instrument.config import resolve_settings
from instrument.context import current_execution, execution_context
from instrument.decorator import logged_execution
from instrument.record import ExecutionRecord
from instrument.runtime import configure, flush
from instrument.stores import SchemaAdmin, open_store
from instrument.writers import BUILTIN_WRITERS

__all__ = [
    "AGENTS",
    "DEMO_USER",
    "DemoAgent",
    "DemoRun",
    "run_agentkit",
    "run_demo",
    "run_mapping",
    "run_workflow",
]

_log = logging.getLogger(__name__)

DEMO_USER = "demo-user"


@dataclass(frozen=True, slots=True)
class DemoAgent:
    """An agent definition, shaped like the origin's ``agents`` row."""

    id: str
    name: str
    workflow_steps: tuple[dict[str, Any], ...] = ()
    plugins_required: tuple[str, ...] = ()


AGENTS: dict[str, DemoAgent] = {
    a.id: a
    for a in (
        DemoAgent(
            "invoice-pipeline", "Invoice pipeline",
            workflow_steps=(
                {"id": "fetch", "type": "action"},
                {"id": "extract", "type": "llm"},
                {"id": "check", "type": "conditional"},
                {"id": "notify", "type": "action", "parallel": True},
            ),
            plugins_required=("gmail", "sheets"),
        ),
        DemoAgent("support-triage", "Support triage", plugins_required=("gmail", "zendesk")),
        DemoAgent("lead-research", "Lead research"),
    )
}


class PluginTimeoutError(RuntimeError):
    """The exception the demo's failing agentkit run raises (recorded, then re-raised)."""


def _elapsed_ms(t0: float) -> int:
    return round((time.perf_counter() - t0) * 1000)


def _execution_id() -> str | None:
    ctx = current_execution()
    return str(ctx.execution_id) if ctx is not None else None


@logged_execution(
    engine="orchestrator", agent_id="agent.id", agent_name="agent.name",
    user_id="user_id", session_id="session_id",
)
def run_workflow(
    agent: DemoAgent, user_id: str, inputs: dict[str, Any], session_id: str | None = None
) -> dict[str, Any]:
    """A workflow orchestrator: runs the agent's steps, returns the origin's result shape."""
    t0 = time.perf_counter()
    fail_at = inputs.get("fail_at_step")
    done = failed = 0
    for step in agent.workflow_steps:
        time.sleep(0.002)
        if step["id"] == fail_at:
            failed += 1
            break
        done += 1
    skipped = len(agent.workflow_steps) - done - failed
    result: dict[str, Any] = {
        "success": failed == 0,
        "executionId": _execution_id(),
        "output": {"message": f"processed {inputs.get('invoices', 0)} invoices"},
        "stepsCompleted": done,
        "stepsFailed": failed,
        "stepsSkipped": skipped,
        "totalExecutionTime": _elapsed_ms(t0),
        "totalTokensUsed": 420 * done,
    }
    if failed:
        result["error"] = f"step {fail_at!r} failed: upstream returned HTTP 503"
        result["failedStep"] = fail_at
    return result


@logged_execution(
    engine="agentkit", agent_id="agent.id", agent_name="agent.name",
    user_id="user_id", session_id="session_id",
)
def run_agentkit(
    agent: DemoAgent, user_id: str, user_input: str, session_id: str | None = None
) -> dict[str, Any]:
    """A function-calling agent loop: returns the origin's AgentKit result shape."""
    t0 = time.perf_counter()
    if "crash" in user_input:
        time.sleep(0.002)
        raise PluginTimeoutError("plugin zendesk timed out after 3 attempts")
    loops = 10 if "loop" in user_input else 2
    calls = [
        {"plugin": "zendesk", "action": "search_tickets", "parameters": {"q": user_input},
         "result": {"items": [{"id": i} for i in range(3)]}, "success": True},
        {"plugin": "gmail", "action": "send_reply", "parameters": {"to": "customer"},
         "result": {"id": "msg-1"}, "success": True},
    ][: min(loops, 2)]
    time.sleep(0.003 * loops)
    prompt, completion = 900 * loops, 180 * loops
    result: dict[str, Any] = {
        "success": loops < 10,
        "response": "Replied to the customer and tagged the ticket.",
        "toolCalls": calls,
        "tokensUsed": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "executionTime": _elapsed_ms(t0),
        "iterations": loops,
        "model": "gpt-4o-mini",
        "provider": "openai",
        "memoryData": {"tokens": 120, "entryCount": 3, "types": ["summaries", "user_context"]},
    }
    if loops >= 10:
        result["error"] = "MAX_ITERATIONS_REACHED"
        del result["memoryData"]
    return result


@logged_execution(agent_id="agent_id", user_id="user_id", agent_name=literal("Lead research"))
def run_mapping(agent_id: str, user_id: str, company: str) -> dict[str, Any]:
    """Any other executor: a plain dict with the record's own field names (``mapping``)."""
    time.sleep(0.002)
    return {
        "success": True,
        "tokens": {"input_tokens": 640, "output_tokens": 210, "total_tokens": 850},
        "model": "gpt-4o-mini",
        "provider": "openai",
        "iterations": 1,
        "extras": {"company": company},
    }


# --------------------------------------------------------------------------------------------
# Optional engines: sample results built locally (no network), when the package is installed.
# --------------------------------------------------------------------------------------------


def _chat_completion() -> Any:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({
        "id": "chatcmpl-demo", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "Three leads found."}}],
        "usage": {"prompt_tokens": 310, "completion_tokens": 42, "total_tokens": 352},
    })


def _response() -> Any:
    from openai.types.responses import Response

    return Response.model_validate({
        "id": "resp-demo", "object": "response", "created_at": 1_700_000_000,
        "model": "gpt-4o-mini", "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "status": "completed",
        "output": [{"type": "message", "id": "msg-demo", "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Summary ready.",
                                 "annotations": []}]}],
        "usage": {"input_tokens": 280, "output_tokens": 35, "total_tokens": 315,
                  "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 0}},
    })


def _optional_engine(engine: str, package: str) -> str | None:
    """Why `engine` cannot run here, or None when its adapter and package are importable."""
    if importlib.util.find_spec(f"instrument.adapters.{engine}") is None:
        return f"adapters.{engine} is not built yet"
    if importlib.util.find_spec(package) is None:
        extra = "agents" if package == "agents" else "openai"
        return (f"{package} is not installed (pip install -e '.[{extra}]' in the checkout; "
                f"once published: pip install 'logged-execution[{extra}]')")
    return None


def _openai_executors() -> dict[str, Callable[[str, str], Any]]:
    """Decorated at first use: their adapters import the optional `openai` package."""
    completion, response = _chat_completion(), _response()  # what the API would have returned

    @logged_execution(engine="openai_chat", agent_id="agent_id", user_id="user_id",
                      agent_name=literal("Lead research"))
    def run_chat(agent_id: str, user_id: str) -> Any:
        time.sleep(0.004)
        return completion

    @logged_execution(engine="openai_responses", agent_id="agent_id", user_id="user_id",
                      agent_name=literal("Lead research"))
    def run_responses(agent_id: str, user_id: str) -> Any:
        time.sleep(0.004)
        return response

    return {"openai_chat": run_chat, "openai_responses": run_responses}


def _agents_executor() -> Callable[[str, str], Any]:
    """The Agents SDK's real ``Runner`` with a recorded model: a tool call, then an answer."""
    from agents import Agent, RunConfig, Runner, Usage, function_tool
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    class RecordedModel(Model):  # plays back two turns: no network, no API key
        def __init__(self) -> None:
            self.turn = 0

        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            self.turn += 1
            output: list[Any]
            if self.turn == 1:
                output = [ResponseFunctionToolCall.model_validate({
                    "id": "fc_demo", "call_id": "call_demo", "type": "function_call",
                    "name": "lookup_order", "arguments": '{"order_id": "1042"}'})]
            else:
                output = [ResponseOutputMessage.model_validate({
                    "id": "msg_demo", "type": "message", "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Order 1042 ships tomorrow.",
                                 "annotations": [], "logprobs": []}]})]
            usage = Usage(
                requests=1, input_tokens=240, output_tokens=30, total_tokens=270,
                input_tokens_details=InputTokensDetails.model_validate(
                    {"cached_tokens": 0, "cache_write_tokens": 0}),
                output_tokens_details=OutputTokensDetails.model_validate(
                    {"reasoning_tokens": 0}),
            )
            return ModelResponse(output=output, usage=usage, response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("the demo does not stream")

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: ships tomorrow"

    @logged_execution(engine="openai_agents", agent_id="agent_id", user_id="user_id",
                      agent_name=literal("Order assistant"))
    async def run_agents_sdk(agent_id: str, user_id: str) -> Any:
        agent = Agent(name="Order assistant", instructions="Answer order questions.",
                      tools=[lookup_order], model=RecordedModel())
        return await Runner.run(agent, "Where is order 1042?",
                                run_config=RunConfig(tracing_disabled=True))

    def run(agent_id: str, user_id: str) -> Any:
        return asyncio.run(run_agents_sdk(agent_id, user_id))

    return run


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class DemoRun:
    """What :func:`run_demo` did."""

    database_url: str
    #: Every record the store committed, in commit order.
    records: list[ExecutionRecord] = field(default_factory=list)
    #: Engines that ran.
    engines: list[str] = field(default_factory=list)
    #: engine -> why it was left out.
    skipped: dict[str, str] = field(default_factory=dict)
    #: Exceptions the executors raised (the decorator recorded, then re-raised them).
    raised: list[str] = field(default_factory=list)
    flushed: bool = False

    @property
    def failures(self) -> int:
        return sum(1 for r in self.records if not r.result.success)


class _Committed:
    """A custom writer: it runs after the store's batch committed, so it sees what landed."""

    name = "demo-committed"

    def __init__(self) -> None:
        self.records: list[ExecutionRecord] = []
        self._lock = threading.Lock()

    def write(self, records: Sequence[ExecutionRecord]) -> None:
        with self._lock:
            self.records.extend(records)


def _scenarios(optional: dict[str, Callable[[str, str], Any]]) -> list[
    tuple[str, Callable[[], Any]]
]:
    inv, sup = AGENTS["invoice-pipeline"], AGENTS["support-triage"]
    u = DEMO_USER
    return [
        ("orchestrator", lambda: run_workflow(inv, u, {"invoices": 12}, session_id="s-1")),
        ("agentkit", lambda: run_agentkit(sup, u, "Where is my order #1042?", session_id="s-2")),
        ("orchestrator", lambda: run_workflow(inv, u, {"invoices": 7})),
        ("agentkit", lambda: run_agentkit(sup, u, "Refund request for #1043")),
        ("orchestrator", lambda: run_workflow(inv, u, {"invoices": 3, "fail_at_step": "check"})),
        ("agentkit", lambda: run_agentkit(sup, u, "Keep asking in a loop")),
        ("agentkit", lambda: run_agentkit(sup, u, "crash the plugin")),
        ("mapping", lambda: run_mapping("lead-research", u, "Acme Corp")),
    ] + [(engine, functools.partial(f, "order-assistant" if engine == "openai_agents"
                                    else "lead-research", u))
         for engine, f in optional.items()]


def run_demo(
    database_url: str | None = None, *, migrate: bool = True, timeout_s: float = 30.0
) -> DemoRun:
    """Migrate the store, run every available sample executor through the decorator, flush.

    ``database_url`` defaults to ``INSTRUMENT_DATABASE_URL``, else the embedded
    ``sqlite:///instrument.db``. The SDK is (re)configured for that store, with a custom writer
    that collects what was committed, and left configured. Raises
    :class:`~instrument.errors.ConfigurationError` for a bad URL and the store's errors when
    the database cannot be reached.
    """
    settings = resolve_settings(database_url=database_url)
    store = open_store(settings.database_url, supabase_url=settings.supabase_url,
                       supabase_key=settings.supabase_key)
    try:
        if migrate and isinstance(store, SchemaAdmin):  # every built-in store is one
            store.migrate()
    finally:
        store.close()

    committed = _Committed()
    configure(database_url=settings.database_url, writers=[*BUILTIN_WRITERS, committed])
    run = DemoRun(database_url=store.display_url)
    optional: dict[str, Callable[[str, str], Any]] = {}
    for engine in ("openai_chat", "openai_responses"):
        reason = _optional_engine(engine, "openai")
        if reason is not None:
            run.skipped[engine] = reason
    if len(run.skipped) < 2:
        optional = {k: v for k, v in _openai_executors().items() if k not in run.skipped}
    reason = _optional_engine("openai_agents", "agents")
    if reason is None:
        optional["openai_agents"] = _agents_executor()
    else:
        run.skipped["openai_agents"] = reason
    with execution_context(execution_type="test"):
        for engine, call in _scenarios(optional):
            if engine not in run.engines:
                run.engines.append(engine)
            try:
                call()
            except PluginTimeoutError as exc:  # the demo's deliberate failure: already recorded
                run.raised.append(f"{type(exc).__name__}: {exc}")
    run.flushed = flush(timeout_s)
    run.records = list(committed.records)
    return run
