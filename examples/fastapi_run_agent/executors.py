"""The two executors. Each is decorated once, here; neither contains a line of logging."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from instrument import current_execution, logged_execution

from .agents import Agent


@dataclass
class WorkflowExecutionResult:
    """The orchestrator's result, as an object with snake_case attributes."""

    success: bool
    execution_id: str | None
    output: dict[str, Any]
    steps_completed: int
    steps_failed: int
    steps_skipped: int
    total_execution_time: int
    total_tokens_used: int
    error: str | None = None
    failed_step: str | None = None
    completed_step_ids: list[str] = field(default_factory=list)


@logged_execution(engine="orchestrator", agent_id="agent.id", agent_name="agent.name",
                  user_id="user_id", session_id="session_id")
def run_orchestrator(agent: Agent, user_id: str, user_input: str, input_values: dict[str, Any],
                     session_id: str) -> WorkflowExecutionResult:
    """Run the agent's workflow steps in order; a failing step fails the run."""
    t0 = time.perf_counter()
    ctx = current_execution()
    done: list[str] = []
    failed: str | None = None
    for step in agent.workflow_steps:
        time.sleep(0.001)
        if step.get("fails"):
            failed = step["id"]
            break
        done.append(step["id"])
    skipped = len(agent.workflow_steps) - len(done) - (1 if failed else 0)
    return WorkflowExecutionResult(
        success=failed is None,
        execution_id=str(ctx.execution_id) if ctx else None,  # the same id as the rows
        output={"message": f"{len(done)} steps done for {user_input!r}"},
        steps_completed=len(done), steps_failed=1 if failed else 0, steps_skipped=skipped,
        total_execution_time=round((time.perf_counter() - t0) * 1000),
        total_tokens_used=350 * len(done),
        error=f"step {failed!r} failed" if failed else None, failed_step=failed,
        completed_step_ids=done,
    )


@logged_execution(engine="agentkit", agent_id="agent.id", agent_name="agent.name",
                  user_id="user_id", session_id="session_id")
def run_agentkit(agent: Agent, user_id: str, user_input: str, input_values: dict[str, Any],
                 session_id: str) -> dict[str, Any]:
    """A function-calling loop; returns the origin's AgentKit result (a camelCase dict)."""
    t0 = time.perf_counter()
    if "crash" in user_input:
        raise ConnectionError("model endpoint unreachable")
    time.sleep(0.002)
    calls = [{"plugin": p, "action": "search", "parameters": {"q": user_input},
              "result": {"items": [1, 2]}, "success": True} for p in agent.plugins_required]
    return {
        "success": True,
        "response": f"Handled: {user_input}",
        "toolCalls": calls,
        "tokensUsed": {"prompt": 600, "completion": 90, "total": 690},
        "executionTime": round((time.perf_counter() - t0) * 1000),
        "iterations": 1 + len(calls),
        "model": "gpt-4o-mini",
        "provider": "openai",
    }
