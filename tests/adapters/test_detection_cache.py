"""Auto-detection of dict results is memoized per key set only while every adapter decides
by keys; an adapter that looks at values turns the memo off."""

from __future__ import annotations

from typing import Any

import pytest

from instrument import logged_execution
from instrument.adapters import registry
from instrument.adapters.registry import (
    BUILTIN_ORDER,
    get_adapter,
    register_adapter,
    unregister_adapter,
)
from instrument.record import ExecutionResult
from instrument.testing import capture


@logged_execution
def run(result: dict[str, Any]) -> dict[str, Any]:
    return result


ORCH = {"success": True, "stepsCompleted": 2, "stepResults": []}
KIT = {"success": True, "iterations": 2, "toolCalls": []}
PLAIN = {"success": True}


def test_builtins_decide_by_keys() -> None:
    assert all(get_adapter(name).detect_by_keys is True for name in BUILTIN_ORDER)  # type: ignore[attr-defined]
    assert registry.keys_decide()


def test_each_key_set_gets_its_own_adapter_across_repeated_calls() -> None:
    with capture() as got:
        for _ in range(3):
            for result in (ORCH, KIT, PLAIN, {**KIT, "model": "m"}):
                run(result)
    expected = [get_adapter(n).name for n in ("orchestrator", "agentkit", "mapping", "agentkit")]
    assert [r.engine for r in got.records] == expected * 3


class ByValue:
    """A third-party adapter that decides by a value, not by keys."""

    name = "by_value"

    def matches(self, result: object) -> bool:
        return isinstance(result, dict) and result.get("kind") == "special"

    def normalize(self, result: object) -> ExecutionResult:
        return ExecutionResult(success=True, extras={"seen": "special"})


@pytest.fixture
def by_value() -> Any:
    adapter = register_adapter(ByValue())
    yield adapter
    unregister_adapter(adapter.name)


def test_an_adapter_deciding_by_value_turns_the_memo_off(by_value: Any) -> None:
    assert not registry.keys_decide()
    with capture() as got:
        for _ in range(2):  # same keys, different values: detected per call
            run({"kind": "special", "success": True})
            run({"kind": "other", "success": True})
    assert [r.engine for r in got.records] == ["by_value", "mapping"] * 2
