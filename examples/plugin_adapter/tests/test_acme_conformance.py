"""The plug-in's own test: the SDK's conformance helper against real Acme results."""

from __future__ import annotations

from acme_planner_adapter import ADAPTER

from instrument.adapters.conformance import Sample, check_adapter

DONE = {
    "plan_id": "pl_1", "status": "done", "answer": "Booked the 9:40 train.",
    "usage": {"in": 120, "out": 30}, "rounds": 2,
    "actions": [{"tool": "timetable", "ok": True, "ms": 12.5, "hits": 3,
                 "args": {"from": "Lisbon Oriente", "to": "Porto Campanha"}}],
}
FAILED = {"plan_id": "pl_2", "status": "error", "error": "no seats left"}


def test_acme_adapter_conforms() -> None:
    check_adapter(ADAPTER, [
        Sample(DONE, unmeasured={"retries", "memory", "steps", "model"}),
        Sample(FAILED, unmeasured={"tokens", "iterations", "tool_calls"}),
    ])
