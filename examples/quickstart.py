"""Quickstart: two executors with different result shapes, one decorator, four writes each.

Run it from a checkout (after `pip install -e '.[all]'`):

    python examples/quickstart.py

It writes to INSTRUMENT_DATABASE_URL, else the embedded sqlite:///instrument.db in the current
directory, then reads the rows back. `instrument tail` and `instrument stats` show the same.
"""

from __future__ import annotations

import instrument
from instrument import current_execution, execution_context, logged_execution
from instrument.config import resolve_settings
from instrument.stores import open_store


@logged_execution(engine="orchestrator", agent_id="agent.id", agent_name="agent.name")
def run_workflow(agent: dict, inputs: dict) -> dict:
    """A workflow orchestrator: step counts and one token total."""
    steps = agent["steps"]
    failed = 1 if inputs.get("broken") else 0
    return {"success": not failed, "stepsCompleted": len(steps) - failed, "stepsFailed": failed,
            "stepsSkipped": 0, "totalExecutionTime": 35, "totalTokensUsed": 400 * len(steps),
            "error": "step 'file' failed: disk full" if failed else None,
            "output": {"message": f"processed {inputs['invoices']} invoices"}}


@logged_execution(engine="agentkit", agent_id="agent.id", agent_name="agent.name")
def run_agentkit(agent: dict, user_input: str) -> dict:
    """A function-calling loop: iterations, tool calls, a token split."""
    if "refund" in user_input:
        raise PermissionError("refunds need a human")  # recorded as failed, re-raised as is
    run = current_execution()
    return {"success": True, "response": f"answered (execution {run.execution_id})",
            "iterations": 2, "model": "gpt-4o-mini", "provider": "openai",
            "tokensUsed": {"prompt": 800, "completion": 120, "total": 920},
            "toolCalls": [{"plugin": "zendesk", "action": "search", "success": True,
                           "result": {"items": [1, 2, 3]}}]}


def main() -> None:
    invoices = {"id": "invoice-bot", "name": "Invoice bot", "steps": ["fetch", "extract", "file"]}
    helpdesk = {"id": "helpdesk-bot", "name": "Helpdesk bot"}
    with execution_context(user_id="user-42", execution_type="api"):
        print("workflow:", run_workflow(invoices, {"invoices": 3})["output"]["message"])
        print("workflow:", run_workflow(invoices, {"invoices": 1, "broken": True})["error"])
        print("agentkit:", run_agentkit(helpdesk, "where is my order?")["success"])
        try:
            run_agentkit(helpdesk, "I want a refund")
        except PermissionError as exc:
            print("agentkit raised:", exc)
    assert instrument.flush(10.0), "records were not written in time"

    settings = resolve_settings()
    store = open_store(settings.database_url)
    try:
        rows = store.recent_executions(4)
        stats = {r["agent_id"]: r for r in store.agent_stats()}
    finally:
        store.close()
    print(f"\nlast {len(rows)} rows of agent_executions in {store.display_url}:")
    for r in reversed(rows):
        print(f"  {r['engine']:<12} {r['agent_id']:<13} {r['status']:<9} "
              f"tokens={r['total_tokens']} error={r['error_type']}")
    for agent in ("invoice-bot", "helpdesk-bot"):
        s = stats[agent]
        print(f"agent_stats {agent}: runs={s['run_count']} ok={s['success_count']} "
              f"failed={s['failure_count']}")


if __name__ == "__main__":
    main()
