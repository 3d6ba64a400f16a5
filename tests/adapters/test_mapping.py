"""The mapping fallback: the record's own field names, tolerant of junk."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from instrument import logged_execution
from instrument.adapters import detect_adapter, get_adapter
from instrument.record import (
    ErrorInfo,
    ExecutionResult,
    MemoryUsage,
    StepCounts,
    TokenUsage,
    ToolCall,
    WorkflowShape,
)
from instrument.testing import capture
from tests.adapters.samples import mapping_result

ADAPTER = get_adapter("mapping")


def test_fields_by_name() -> None:
    r = ADAPTER.normalize(mapping_result())
    assert r == ExecutionResult(
        success=True,
        tokens=TokenUsage(input_tokens=40, output_tokens=9, total_tokens=49),
        iterations=2,
        tool_calls=[ToolCall(name="search", call_id="c1", success=True, duration_ms=4.5,
                             items_returned=3)],
        model="local-llm",
        provider="ollama",
        response="hello",
        steps=StepCounts(completed=2, failed=1, skipped=0),
        extras={"run_kind": "nightly", "ignored_keys": ["team"]},
    )


def test_every_field() -> None:
    started = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    r = ADAPTER.normalize({
        "success": False, "error": {"type": "Timeout", "message": "slow"}, "retries": 2,
        "memory": {"tokens": 5, "entry_count": 1, "types": ["patterns"]},
        "workflow": {"steps": 4, "branches": 1, "loops": 0, "parallel": 2},
        "orchestration_ms": 12.5,
        "tool_calls": [{"name": "t", "started_at": started.isoformat(), "error": "e"}],
    })
    assert r.error == ErrorInfo(type="Timeout", message="slow")
    assert r.retries == 2
    assert r.memory == MemoryUsage(tokens=5, entry_count=1, types=["patterns"])
    assert r.workflow == WorkflowShape(steps=4, branches=1, loops=0, parallel=2)
    assert r.orchestration_ms == 12.5
    assert r.tool_calls == [ToolCall(name="t", started_at=started, error="e")]


def test_string_error_and_inferred_success() -> None:
    r = ADAPTER.normalize({"error": "it broke"})
    assert r.success is False
    assert r.error == ErrorInfo(type="Error", message="it broke")
    assert r.extras["normalization_notes"] == [
        "success: missing or not a boolean; inferred from the error field"]


def test_coercions_and_notes() -> None:
    r = ADAPTER.normalize({
        "success": "true", "iterations": "3", "retries": -1, "model": 7,
        "tokens": {"input_tokens": "10", "output_tokens": float("nan"), "bogus": 1},
        "steps": "three", "response": ["not", "text"],
    })
    assert r.success is True
    assert r.iterations == 3
    assert r.retries is None
    assert r.model == "7"
    assert r.tokens == TokenUsage(input_tokens=10)
    assert r.steps is None
    assert r.response is None
    notes = r.extras["normalization_notes"]
    assert isinstance(notes, list)
    text = " | ".join(str(n) for n in notes)
    for fragment in ("retries", "tokens.output_tokens", "tokens: unknown keys dropped: bogus",
                     "steps: expected an object", "response"):
        assert fragment in text


def test_unknown_keys_are_never_persisted_only_named() -> None:
    """A returned dict may carry user content: only its field names and `extras` are kept."""
    cyclic: dict[str, object] = {}
    cyclic["me"] = cyclic
    r = ADAPTER.normalize({"success": True, "ok": [1, "a", None, {"b": 2.5}],
                           "nan": float("nan"), "obj": object(), "cycle": cyclic,
                           "big": "x" * 10_000, 5: "int key"})
    assert r.extras == {"ignored_keys": ["ok", "nan", "obj", "cycle", "big", "int"]}
    json.loads(r.model_dump_json())


def test_explicit_extras_made_json_safe() -> None:
    r = ADAPTER.normalize({"success": True, "extras": {"when": dt.date(2026, 1, 1),
                                                       "f": float("inf"), "t": (1, 2)}})
    assert r.extras == {"when": "2026-01-01", "f": None, "t": [1, 2]}


def test_tool_call_payloads_dropped_and_names_filled() -> None:
    r = ADAPTER.normalize({"success": True, "tool_calls": [
        {"plugin": "gmail", "action": "send", "arguments": {"body": "secret text"}},
        {"result": [1, 2]},
        "junk",
    ]})
    assert r.tool_calls == [ToolCall(name="gmail.send", plugin="gmail", action="send"),
                            ToolCall(name="unknown")]
    assert "secret text" not in r.model_dump_json()


def test_none_and_execution_result_pass_through() -> None:
    assert ADAPTER.normalize(None) == ExecutionResult(success=True)
    given = ExecutionResult(success=False, iterations=4)
    assert ADAPTER.normalize(given) is given
    assert ADAPTER.matches(given)
    assert ADAPTER.matches(None)


@pytest.mark.parametrize("value", ["text", 42, [1, 2], b"x", object()])
def test_non_mappings_raise_type_error(value: object) -> None:
    assert ADAPTER.matches(value) is False
    with pytest.raises(TypeError, match="no adapter understands"):
        ADAPTER.normalize(value)


def test_plain_dict_detects_as_mapping() -> None:
    assert detect_adapter({"success": True, "iterations": 2, "tool_calls": []}) is ADAPTER
    assert detect_adapter("anything") is ADAPTER  # the fallback


def test_unnormalizable_result_still_records(caplog: pytest.LogCaptureFixture) -> None:
    value = ["a", "list", "result"]

    @logged_execution
    def run() -> list[str]:
        return value

    with capture() as cap, caplog.at_level(logging.WARNING):
        assert run() is value
    (record,) = cap.records
    assert record.result.success is True
    assert "list" in str(record.result.extras["normalization_error"])
    assert any("adapter" in r.getMessage() for r in caplog.records)


def test_none_result_is_a_plain_success() -> None:
    @logged_execution
    def side_effect_only() -> None:
        return None

    with capture() as cap:
        assert side_effect_only() is None
    (record,) = cap.records
    assert record.engine == "mapping"
    assert record.result == ExecutionResult(success=True)
