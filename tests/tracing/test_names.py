"""Span names and the GenAI names we emit: current by default, previous behind the setting."""

from __future__ import annotations

from typing import Any

import pytest

from instrument import logged_execution
from instrument.config import resolve_settings
from instrument.tracing.semconv import CURRENT, DUP, PREVIOUS, conventions_from_opt_in
from tests.tracing.conftest import Otel, tracing_for
from tests.tracing.test_spans import run_agent


@logged_execution(agent_id="agent_id", user_id="user_id")
def unnamed(agent_id: str, user_id: str) -> dict[str, Any]:
    return {"success": True, "model": "m-1", "tokens": {"input_tokens": 5, "output_tokens": 1,
                                                        "cached_input_tokens": 2}}


def test_an_agent_without_a_name_is_named_after_the_operation_only(otel: Otel) -> None:
    with otel.capture():
        unnamed("ag", "u")
    span = otel.span()
    assert span.name == "invoke_agent"  # {op} {gen_ai.agent.name}, else {op}: nothing invented
    attrs = dict(span.attributes or {})
    assert "gen_ai.agent.name" not in attrs
    assert attrs["instrument.name"] == "unnamed"  # the function, findable by tag


def test_no_conversation_id_is_made_up(otel: Otel) -> None:
    with otel.capture():
        unnamed("ag", "u")
    assert "gen_ai.conversation.id" not in dict(otel.span().attributes or {})


def test_previous_names_only_with_gen_ai_previous(otel: Otel) -> None:
    with otel.capture(conventions=PREVIOUS) as cap:
        unnamed("ag", "u")
        with pytest.raises(ValueError):
            run_agent("ag", "u", "Planner", "s", fail=ValueError("x"))
    spans = {s.name: s for s in otel.spans()}
    assert set(spans) == {"invoke_agent unnamed", "invoke_agent Planner"}
    assert dict(spans["invoke_agent unnamed"].attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": "ag",
        "gen_ai.request.model": "m-1",
        "gen_ai.response.model": "m-1",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 1,
        "gen_ai.usage.cache_read.input_tokens": 2,
        "user.id": "u",
        "instrument.engine": "mapping",
        "instrument.execution_id": str(cap.records[0].execution_id),
        "instrument.execution_type": "manual",
        "instrument.status": "completed",
    }
    failed = spans["invoke_agent Planner"]
    assert [e.name for e in failed.events] == ["exception"]
    assert dict(failed.events[0].attributes or {})["exception.escaped"] is True


def test_dup_emits_the_current_and_the_previous_names(otel: Otel) -> None:
    with otel.capture(conventions=DUP):
        unnamed("ag", "u")
        with pytest.raises(ValueError):
            run_agent("ag", "u", "Planner", "s", fail=ValueError("x"))
    spans = {s.name: s for s in otel.spans()}
    assert set(spans) == {"invoke_agent", "invoke_agent Planner"}  # names: the current rule
    attrs = dict(spans["invoke_agent"].attributes or {})
    assert attrs["gen_ai.agent.id"] == attrs["instrument.agent_id"] == "ag"
    assert (attrs["gen_ai.usage.cache_read.input_tokens"]
            == attrs["instrument.usage.cache_read.input_tokens"] == 2)
    # one key, two meanings: the current one (what was asked) wins
    assert "gen_ai.request.model" not in attrs
    assert attrs["gen_ai.invocation.is_nested"] is False
    assert [e.name for e in spans["invoke_agent Planner"].events] == [
        "gen_ai.client.operation.exception", "exception"]


@pytest.mark.parametrize(("raw", "expected"), [
    (None, CURRENT), ("", CURRENT), ("http", CURRENT), ("gen_ai", CURRENT),
    ("gen_ai_latest_experimental", CURRENT), ("gen_ai/previous", PREVIOUS),
    ("http/dup, gen_ai/previous", PREVIOUS), ("gen_ai/dup", DUP), ("GEN_AI/DUP", DUP),
    ("gen_ai/previous,gen_ai/dup", DUP), ("gen_ai,gen_ai/previous", DUP),
    ("gen_ai/nonsense", CURRENT),
])
def test_the_stability_opt_in_values(raw: str | None, expected: object) -> None:
    assert conventions_from_opt_in(raw) is expected


def test_an_unknown_gen_ai_value_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert conventions_from_opt_in("gen_ai/old") is CURRENT
    assert "'gen_ai/old' is not one of gen_ai, gen_ai/dup, gen_ai/previous" in caplog.text


def test_configure_reads_the_setting_from_the_environment() -> None:
    for raw, expected in ((None, CURRENT), ("gen_ai/dup", DUP), ("gen_ai/previous", PREVIOUS)):
        environ = {} if raw is None else {"OTEL_SEMCONV_STABILITY_OPT_IN": raw}
        tracing = tracing_for(resolve_settings(environ=environ))
        assert tracing is not None
        assert tracing.conventions is expected
        assert tracing.metrics.conventions is expected
