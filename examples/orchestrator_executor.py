"""A small workflow orchestrator: steps, some of them LLM calls on the real ``openai`` client.

The workflow fetches inputs, asks the model for a summary, branches on it (a conditional
step), drafts a reply, tries to publish it (a step that fails without credentials) and skips
what depended on the failed step. It returns the workflow result shape (``success``,
``executionId``, ``output``, ``stepsCompleted``/``Failed``/``Skipped``,
``totalExecutionTime``, ``totalTokensUsed``, ``error``, ``failedStep``) and is decorated with
``@logged_execution(engine="orchestrator")``.

Unlike the origin, ``success`` is false when any step failed: "nothing threw" is not success.

Run it offline (``python examples/orchestrator_executor.py`` starts the loopback stub when
neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL`` is set) or online with ``OPENAI_API_KEY``.
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

from openai import OpenAI

import instrument
from instrument import current_execution, logged_execution

DEFAULT_MODEL = "gpt-4o-mini"


class StepFailed(RuntimeError):
    """A step could not do its work."""


@dataclass
class Step:
    id: str
    type: str  # "action" | "llm" | "conditional"
    prompt: str | None = None  # llm: a template over the context
    run: Callable[[dict[str, Any]], Any] | None = None  # action
    condition: Callable[[dict[str, Any]], bool] | None = None  # conditional
    on_false_skip: tuple[str, ...] = ()  # conditional: steps to skip when false
    depends_on: tuple[str, ...] = ()


@dataclass
class Workflow:
    agent_id: str
    name: str
    steps: list[Step]
    model: str = DEFAULT_MODEL


def _publish(ctx: dict[str, Any]) -> Any:
    token = ctx["inputs"].get("publish_token")
    if not token:
        raise StepFailed("no publishing credentials configured")
    return {"published": True, "chars": len(str(ctx.get("draft", "")))}


def default_workflow(agent_id: str = "agent-digest-1") -> Workflow:
    return Workflow(agent_id=agent_id, name="Daily digest", steps=[
        Step("fetch", "action", run=lambda ctx: {"items": ["release 1.2", "incident closed"]}),
        Step("summarize", "llm", prompt="Summarize these updates: {fetch}",
             depends_on=("fetch",)),
        Step("worth_sending", "conditional",
             condition=lambda ctx: bool(ctx.get("summarize")), on_false_skip=("draft",)),
        Step("draft", "llm", prompt="Draft a short email from: {summarize}",
             depends_on=("summarize",)),
        Step("translate", "conditional",
             condition=lambda ctx: ctx["inputs"].get("language", "en") != "en",
             on_false_skip=("translate_draft",)),
        Step("translate_draft", "llm", prompt="Translate: {draft}", depends_on=("draft",)),
        Step("publish", "action", run=_publish, depends_on=("draft",)),
        Step("notify", "action", run=lambda ctx: {"notified": True}, depends_on=("publish",)),
    ])


@dataclass
class _State:
    started: float = field(default_factory=time.perf_counter)
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tokens: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@logged_execution(engine="orchestrator", agent_id="workflow.agent_id", user_id="user_id",
                  agent_name="workflow.name", session_id="session_id")
def run_workflow(user_id: str, workflow: Workflow, inputs: dict[str, Any],
                 session_id: str | None = None, *, client: OpenAI | None = None
                 ) -> dict[str, Any]:
    """Run every step in order and return the workflow result shape."""
    client = client or OpenAI()
    live = current_execution()
    execution_id = str(live.execution_id) if live is not None else str(uuid.uuid4())
    state = _State()
    ctx: dict[str, Any] = {"inputs": inputs}
    skip: set[str] = set()
    for step in workflow.steps:
        blocked = [d for d in step.depends_on if d not in state.completed]
        if step.id in skip or blocked:
            state.skipped.append(step.id)
            continue
        try:
            if step.type == "conditional":
                assert step.condition is not None
                ctx[step.id] = step.condition(ctx)
                if not ctx[step.id]:
                    skip.update(step.on_false_skip)
            elif step.type == "llm":
                assert step.prompt is not None
                completion = client.chat.completions.create(
                    model=workflow.model,
                    messages=[{"role": "user", "content": step.prompt.format(**{
                        k: json.dumps(v) if not isinstance(v, str) else v
                        for k, v in ctx.items()})}])
                if completion.usage is not None:
                    state.tokens += completion.usage.total_tokens
                ctx[step.id] = completion.choices[0].message.content or ""
            else:
                assert step.run is not None
                ctx[step.id] = step.run(ctx)
            state.completed.append(step.id)
        except Exception as exc:  # a failed step is reported in the result, not raised
            state.failed.append(step.id)
            state.errors.append((step.id, f"{type(exc).__name__}: {exc}"))
    result: dict[str, Any] = {
        "success": not state.failed,
        "executionId": execution_id,
        "output": {"message": ctx.get("draft") or ctx.get("summarize") or "Workflow completed"},
        "stepsCompleted": len(state.completed),
        "stepsFailed": len(state.failed),
        "stepsSkipped": len(state.skipped),
        "completedStepIds": state.completed,
        "failedStepIds": state.failed,
        "skippedStepIds": state.skipped,
        "totalExecutionTime": round((time.perf_counter() - state.started) * 1000),
        "totalTokensUsed": state.tokens,
        "model": workflow.model,
        "provider": "openai",
    }
    if state.errors:
        result["failedStep"], result["error"] = state.errors[0]
    return result


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
        result = run_workflow("user-1", default_workflow(), {"language": "en"},
                              session_id=str(uuid.uuid4()), client=client)
        print(json.dumps(result, indent=2))
    finally:
        instrument.flush()
        if stub is not None:
            stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
