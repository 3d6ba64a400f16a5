"""Module-level decorated executors (pickling resolves them by module and qualname)."""

from __future__ import annotations

from typing import Any

from instrument import logged_execution


@logged_execution(agent_id="agent_id")
def work(agent_id: str, x: int) -> dict[str, Any]:
    return {"success": True, "value": x * 2}


class Worker:
    def __init__(self, name: str) -> None:
        self.name = name

    @logged_execution(agent_id="self.name")
    def run(self, x: int) -> int:
        return x + 1

    @classmethod
    @logged_execution
    def build(cls, x: int) -> int:
        return x - 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Worker) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)
