"""`python -m fastapi_run_agent` (from examples/): call the route for both executors and print
what it answered and what the writers stored; `--serve` serves the app with uvicorn instead."""

from __future__ import annotations

import sys

import instrument
from instrument.config import resolve_settings
from instrument.stores import open_store

from .app import create_app


def self_check() -> None:
    from fastapi.testclient import TestClient

    settings = resolve_settings()
    store = open_store(settings.database_url)
    store.migrate()
    auth = {"Authorization": "Bearer user-1"}
    calls = [
        {"agent_id": "invoice-workflow", "execution_type": "api"},
        {"agent_id": "invoice-workflow", "use_agentkit": True},
        {"agent_id": "support-agent", "user_input": "Where is order 42?"},
        {"agent_id": "broken-workflow"},
        {"agent_id": "support-agent", "user_input": "crash please"},
    ]
    with TestClient(create_app(settings.database_url)) as client:
        for body in calls:
            r = client.post("/api/run-agent", json=body, headers=auth)
            kind = "orchestrator" if "orchestrator" in r.json() else "agentkit"
            print(f"{body['agent_id']:<17} -> {r.status_code} {kind:<12} "
                  f"success={r.json()['success']}")
        assert instrument.flush(10.0)
    try:
        for row in store.agent_stats():
            print(f"agent_stats {row['agent_id']}: runs={row['run_count']} "
                  f"ok={row['success_count']} failed={row['failure_count']}")
    finally:
        store.close()


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import uvicorn

        uvicorn.run("fastapi_run_agent.app:app", host="127.0.0.1", port=8000)
    else:
        self_check()
