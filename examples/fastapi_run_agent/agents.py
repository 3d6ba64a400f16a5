"""Agents and system configuration: what the origin loaded from Supabase, kept in memory here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    owner_id: str
    #: Non-empty = a workflow the orchestrator can run (the origin's `workflow_steps`).
    workflow_steps: tuple[dict[str, Any], ...] = ()
    plugins_required: tuple[str, ...] = ()
    input_values: dict[str, Any] = field(default_factory=dict)


AGENTS: dict[str, Agent] = {
    a.id: a
    for a in (
        Agent("invoice-workflow", "Invoice workflow", owner_id="user-1",
              workflow_steps=({"id": "fetch", "type": "action"},
                              {"id": "extract", "type": "llm"},
                              {"id": "approve", "type": "conditional"},
                              {"id": "file", "type": "action"}),
              plugins_required=("gmail", "drive"), input_values={"folder": "inbox"}),
        Agent("broken-workflow", "Broken workflow", owner_id="user-1",
              workflow_steps=({"id": "fetch", "type": "action"},
                              {"id": "explode", "type": "action", "fails": True},
                              {"id": "file", "type": "action"})),
        Agent("support-agent", "Support agent", owner_id="user-1",
              plugins_required=("zendesk",)),
        Agent("someone-elses-agent", "Private agent", owner_id="user-2"),
    )
}

#: The origin's system config `pilot_enabled` (default false there; on here).
SYSTEM_CONFIG: dict[str, Any] = {"orchestrator_enabled": True}
