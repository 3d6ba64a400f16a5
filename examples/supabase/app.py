"""Log agent executions to your Supabase project.

Before the first run, apply the schema once (see README.md), then::

    cp .env.example .env   # fill in SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY
    set -a; . ./.env; set +a
    python app.py

Every call of a decorated executor writes one row to ``agent_executions`` and ``agent_logs``
and updates ``agent_stats`` and ``agent_intensity_metrics``, in one RPC per batch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import instrument
from instrument import logged_execution
from instrument.config import resolve_settings
from instrument.stores import open_store

# "supabase" = use SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_KEY) from the environment.
instrument.configure(database_url="supabase")


@dataclass
class Agent:
    id: str
    name: str


@logged_execution(engine="agentkit", agent_id="agent.id", agent_name="agent.name",
                  user_id="user_id", execution_type="api")
def run_agent(agent: Agent, user_id: str, question: str) -> dict[str, Any]:
    """A stand-in for your function-calling loop; returns an AgentKit-shaped result."""
    if "refund" in question:
        raise RuntimeError("the billing tool is unavailable")
    return {
        "success": True,
        "response": f"Here is what I found about {question!r}.",
        "toolCalls": [{"plugin": "knowledge-base", "action": "search", "success": True,
                       "parameters": {"q": question}, "result": ["doc-1", "doc-2"]}],
        "tokensUsed": {"prompt": 420, "completion": 96, "total": 516},
        "iterations": 2,
        "model": "gpt-4o-mini",
        "provider": "openai",
    }


def main() -> None:
    agent = Agent(id="support-bot", name="Support bot")
    # Supabase user ids are UUIDs: row level security lets each user read only their rows.
    user_id = str(uuid.UUID(int=0x5EED))
    for question in ("shipping times", "opening hours", "refund for order 42"):
        try:
            run_agent(agent, user_id, question)
        except RuntimeError as exc:
            print(f"executor failed (and was logged as a failed execution): {exc}")

    if not instrument.flush(timeout_s=10):
        raise SystemExit("records are still waiting: check SUPABASE_URL and the service-role key")

    settings = resolve_settings(database_url="supabase")
    store = open_store("supabase", supabase_url=settings.supabase_url,
                       supabase_key=settings.supabase_key)
    try:
        for row in store.agent_stats():
            print(f"{row['agent_id']}: {row['run_count']} runs, {row['success_count']} ok, "
                  f"{row['failure_count']} failed, {row['total_tokens']} tokens")
    finally:
        store.close()
    instrument.shutdown()


if __name__ == "__main__":
    main()
