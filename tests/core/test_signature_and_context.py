"""Introspection parity, identity resolution (paths, callables, literals, ambient) and context."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import pytest

import instrument
from instrument import current_execution, execution_context, literal, logged_execution
from instrument.testing import capture


def original(user_id: str, agent: Any, *, session_id: str = "s0") -> dict[str, Any]:
    """Run one agent."""
    return {"success": True}


def test_signature_name_doc_and_wrapped_are_preserved() -> None:
    decorated = logged_execution(agent_id="agent.id")(original)
    assert inspect.signature(decorated) == inspect.signature(original)
    assert decorated.__name__ == "original"
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__doc__ == "Run one agent."
    assert decorated.__wrapped__ is original
    assert inspect.iscoroutinefunction(logged_execution(_coro))
    assert inspect.isasyncgenfunction(logged_execution(_agen))
    assert inspect.isgeneratorfunction(logged_execution(_gen))


async def _coro() -> None:
    return None


async def _agen() -> Any:
    yield 1


def _gen() -> Any:
    yield 1


class Agent:
    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name


def test_paths_callables_literals_and_defaults() -> None:
    @logged_execution(
        agent_id="agent.id",
        agent_name="agent.name",
        user_id="request.user",
        session_id=lambda bound: f"sess-{bound['request']['session']}",
        execution_type="scheduled",
    )
    def run(agent: Agent, request: dict[str, Any], extra: int = 3) -> dict[str, Any]:
        ctx = current_execution()
        assert ctx is not None
        assert ctx.agent_id == "a-1"
        return {"success": True}

    with capture() as cap:
        run(Agent("a-1", "Support"), {"user": "u-9", "session": "42"})
    (rec,) = cap.records
    assert (rec.agent_id, rec.agent_name, rec.user_id, rec.session_id, rec.execution_type) == (
        "a-1", "Support", "u-9", "sess-42", "scheduled")
    assert rec.name == "Support"  # operation name defaults to the agent name


def test_literal_and_name_override() -> None:
    @logged_execution(agent_id=literal("fixed"), name="nightly-report")
    def run() -> dict[str, Any]:
        return {"success": True}

    with capture() as cap:
        run()
    assert (cap.records[0].agent_id, cap.records[0].name) == ("fixed", "nightly-report")


def test_unresolved_path_gives_none_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    @logged_execution(agent_id="agent.missing")
    def run(agent: Any) -> dict[str, Any]:
        return {"success": True}

    with capture() as cap, caplog.at_level(logging.WARNING, logger="instrument"):
        for _ in range(3):
            run(Agent("a", "b"))
    assert [r.agent_id for r in cap.records] == [None, None, None]
    warnings = [r for r in caplog.records if "did not resolve" in r.getMessage()]
    assert len(warnings) == 1


def test_unknown_root_parameter_warns_at_decoration(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="instrument"):
        @logged_execution(agent_id="nope.id")
        def run(agent: Any) -> None:
            return None
    assert any("has no parameter 'nope'" in r.getMessage() for r in caplog.records)


def test_execution_context_supplies_values_and_decorator_wins() -> None:
    @logged_execution(user_id="user_id")
    def run(user_id: str | None = None) -> dict[str, Any]:
        return {"success": True}

    with capture() as cap, execution_context(agent_id="ambient-agent", user_id="ambient-user",
                                             execution_type="webhook"):
        run()
        run(user_id="explicit")
        with execution_context(session_id="s-1"):
            run()
    a, b, c = cap.records
    assert (a.agent_id, a.user_id, a.execution_type) == ("ambient-agent", "ambient-user",
                                                         "webhook")
    assert b.user_id == "explicit"
    assert (c.agent_id, c.session_id) == ("ambient-agent", "s-1")


def test_current_execution_inside_and_outside() -> None:
    seen: list[Any] = []

    @logged_execution(agent_id="agent_id")
    async def run(agent_id: str) -> dict[str, Any]:
        seen.append(current_execution())
        await asyncio.sleep(0)
        seen.append(current_execution())
        return {"success": True}

    assert current_execution() is None
    with capture() as cap:
        asyncio.run(run("a"))
    assert current_execution() is None
    assert seen[0] is seen[1]
    assert seen[0].execution_id == cap.records[0].execution_id
    assert seen[0].agent_id == "a"


def test_context_is_not_attached_across_a_yield() -> None:
    observed: list[Any] = []

    @logged_execution
    def stream() -> Any:
        observed.append(current_execution())
        yield 1
        observed.append(current_execution())
        yield 2

    with capture():
        gen = stream()
        next(gen)
        between = current_execution()
        next(gen)
        list(gen)
    assert between is None
    assert observed[0] is not None
    assert observed[0] is observed[1]


def test_execution_id_is_fresh_per_call_and_timing_is_measured() -> None:
    @logged_execution
    def run() -> dict[str, Any]:
        return {"success": True}

    with capture() as cap:
        run()
        run()
    a, b = cap.records
    assert a.execution_id != b.execution_id
    assert a.started_at.tzinfo is not None
    assert a.completed_at >= a.started_at
    assert a.duration_ms >= 0


def test_disabled_is_a_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_DISABLED", "1")
    sentinel = object()

    @logged_execution
    def run() -> object:
        assert current_execution() is None
        return sentinel

    instrument.configure(database_url="sqlite:///:memory:")
    assert run() is sentinel


def test_unknown_engine_is_reported_at_decoration_in_strict_mode() -> None:
    with pytest.raises(RuntimeError, match="unknown engine"):
        logged_execution(engine="no-such-engine")(original)


def test_unknown_engine_falls_back_when_not_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_STRICT", "0")
    run = logged_execution(engine="no-such-engine")(original)
    with capture(strict=False) as cap:
        assert run("u", None) == {"success": True}
    assert cap.records[0].engine == "mapping"


def test_result_no_adapter_understands_still_records() -> None:
    weird = object()

    @logged_execution
    def run() -> object:
        return weird

    with capture() as cap:
        assert run() is weird
    (rec,) = cap.records
    assert rec.result.success is True
    assert "normalization_error" in rec.result.extras


def test_secrets_in_errors_are_redacted() -> None:
    @logged_execution
    def run() -> None:
        raise ValueError(
            "auth failed for postgresql://bob:hunter2@db/x with key sk-abcdef123456789")

    with capture() as cap, pytest.raises(ValueError, match="hunter2"):
        run()
    message = cap.records[0].result.error.message  # type: ignore[union-attr]
    assert "hunter2" not in message
    assert "sk-abcdef" not in message


class _Hostile:
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


def test_exception_whose_str_raises_reaches_the_host_unchanged() -> None:
    error = ValueError(_Hostile())

    @logged_execution
    def run() -> None:
        raise error

    with capture() as cap, pytest.raises(ValueError) as info:
        run()
    assert info.value is error
    (rec,) = cap.records
    assert rec.result.error is not None
    assert rec.result.error.message == "<unprintable ValueError>"


def test_a_writer_name_that_is_not_configured_is_reported(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    @logged_execution(writers=["executoins"])  # a typo would route the record nowhere
    def run() -> dict[str, Any]:
        return {"success": True}

    with capture(), pytest.raises(RuntimeError, match="executoins"):
        run()  # strict mode (the test suite's) raises it

    monkeypatch.setenv("INSTRUMENT_STRICT", "0")

    @logged_execution(writers=["executoins"])
    def run_lenient() -> dict[str, Any]:
        return {"success": True}

    with capture(strict=False), caplog.at_level(logging.WARNING, logger="instrument"):
        assert run_lenient() == {"success": True}
        run_lenient()
    reports = [r for r in caplog.records if "executoins" in r.getMessage()]
    assert len(reports) == 1  # once per function, not per call
    assert "configured" in reports[0].getMessage()


def test_a_broken_configuration_makes_flush_report_the_unrecorded_calls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_STRICT", "0")
    monkeypatch.setenv("INSTRUMENT_BATCH_SIZE", "banana")

    @logged_execution
    def run() -> int:
        return 42

    assert run() == 42  # the host is never affected
    assert instrument.flush(1.0) is False  # ... but the loss is not silent
    assert instrument.flush(1.0) is True  # reported once


def test_a_call_after_shutdown_uses_the_configured_store_not_the_default(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the env default would be ./instrument.db

    @logged_execution(agent_id=literal("a"))
    def run() -> dict[str, Any]:
        return {"success": True}

    instrument.configure(database_url=f"sqlite:///{tmp_path / 'agents.db'}")
    run()
    assert instrument.shutdown(10.0)
    run()  # rebuilds the configured pipeline
    assert instrument.flush(10.0)
    assert not (tmp_path / "instrument.db").exists()
    from instrument.stores import open_store

    store = open_store(f"sqlite:///{tmp_path / 'agents.db'}")
    assert [row["run_count"] for row in store.agent_stats()] == [2]
    store.close()
