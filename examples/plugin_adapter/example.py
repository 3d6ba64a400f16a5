"""Use the installed plug-in: the decorator recognizes Acme results by itself.

Run after ``pip install -e examples/plugin_adapter``::

    python examples/plugin_adapter/example.py
"""

from __future__ import annotations

from typing import Any

from instrument import logged_execution
from instrument.adapters import available_adapters
from instrument.testing import capture


@logged_execution(agent_id="agent_id")
def plan_trip(agent_id: str, request: str) -> dict[str, Any]:
    # A real executor would call Acme Planner here.
    return {"plan_id": "pl_7", "status": "done", "answer": f"Planned: {request}",
            "usage": {"in": 80, "out": 12}, "rounds": 1,
            "actions": [{"tool": "timetable", "ok": True, "ms": 8.0, "hits": 2}]}


def main() -> None:
    assert "acme_planner" in available_adapters()
    with capture() as cap:
        plan_trip("agent-7", "Lisbon to Porto tomorrow morning")
    (record,) = cap.records
    print(record.engine, record.result.tokens, [c.name for c in record.result.tool_calls or ()])


if __name__ == "__main__":
    main()
