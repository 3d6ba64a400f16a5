"""Conformance: everything we emit, over the engine matrix, against the dated registry extract.

The engine matrix is tests/tracing/test_engines.py: every case there (success, failure,
streamed, per engine, through real adapters, the real ``openai`` client against the loopback
stub and the real Agents ``Runner``) is run again here and all of its spans, span events and
metric points are checked by :mod:`tests.tracing.semconv_check`. The checker itself is tested
on telemetry that breaks each rule.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from instrument import logged_execution
from instrument.tracing import semconv as sc
from tests.tracing import test_engines
from tests.tracing.conftest import Otel
from tests.tracing.semconv_check import REGISTRY, SeenMetric, SeenSpan, check, from_sdk
from tests.tracing.test_engines import client, stub  # noqa: F401 (fixtures of the matrix)

ENGINE_CASES: list[Callable[..., Any]] = [
    f for name, f in vars(test_engines).items() if name.startswith("test_") and callable(f)]


def seen(otel: Otel) -> tuple[list[SeenSpan], list[SeenMetric]]:
    return from_sdk(otel.spans(), otel.reader.get_metrics_data())


def test_the_data_file_says_where_and_when_it_was_taken() -> None:
    source = REGISTRY.data["source"]
    assert source["repository"] == "open-telemetry/semantic-conventions-genai"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert "model/gen-ai/registry.yaml" in source["files"]
    assert dt.date.fromisoformat(REGISTRY.data["taken"]) == dt.date(2026, 12, 4)


def test_the_engine_matrix_is_all_there() -> None:
    names = {f.__name__ for f in ENGINE_CASES}
    assert len(names) == 15, sorted(names)  # every case of test_engines.py
    for engine in ("orchestrator", "agentkit", "mapping", "openai_chat", "openai_responses",
                   "openai_agents"):
        assert any(engine in n for n in names), engine


@pytest.mark.parametrize("case", ENGINE_CASES, ids=lambda f: f.__name__)
async def test_every_engine_emits_only_registered_names(
        case: Callable[..., Any], otel: Otel, request: pytest.FixtureRequest) -> None:
    kwargs = {name: otel if name == "otel" else request.getfixturevalue(name)
              for name in inspect.signature(case).parameters}
    outcome = case(**kwargs)
    if inspect.isawaitable(outcome):
        await outcome
    spans, metrics = seen(otel)
    invocations = [s for s in spans if s.attributes.get(sc.OPERATION_NAME) != "execute_tool"]
    assert invocations, "the case emitted no span of ours"
    assert check(spans, metrics) == []
    # one gen_ai.invocation.duration point per invocation, every one marked top-level
    (duration,) = [m for m in metrics if m.name == sc.METRIC_INVOCATION_DURATION]
    assert {p[sc.INVOCATION_IS_NESTED] for p in duration.points} == {False}
    assert not {m.name for m in metrics} & set(REGISTRY.removed)


def test_nested_tools_content_and_errors_conform(otel: Otel) -> None:
    t0 = dt.datetime.now(dt.UTC)

    @logged_execution(agent_name="agent_name", session_id="session_id", agent_id="agent_id")
    def inner(agent_name: str, session_id: str, agent_id: str) -> dict[str, Any]:
        return {"success": True, "model": "gpt-4o-mini", "provider": "openai", "iterations": 2,
                "tokens": {"input_tokens": 10, "output_tokens": 2, "cached_input_tokens": 4,
                           "reasoning_tokens": 1},
                "response": "done",
                "tool_calls": [
                    {"name": "search", "call_id": "c1", "success": True,
                     "started_at": t0.isoformat(), "duration_ms": 12},
                    {"name": "send", "call_id": "c2", "success": False, "error": "denied",
                     "started_at": t0.isoformat(), "duration_ms": 3},
                    {"name": "untimed", "call_id": "c3", "duration_ms": 7}],
                "extras": {"request_model": "gpt-4o-mini",
                           "tool_arguments": [{"q": "x"}, {"to": "y"}, {"z": 1}]}}

    @logged_execution(engine="orchestrator", name="etl")
    def outer() -> dict[str, Any]:
        inner("Researcher", "sess-1", "agent-1")
        raise TimeoutError("step timed out")

    with otel.capture(content=True), pytest.raises(TimeoutError):
        outer()
    spans, metrics = seen(otel)
    assert sorted(s.name for s in spans) == [
        "execute_tool search", "execute_tool send", "invoke_agent Researcher",
        "invoke_workflow etl"]
    assert check(spans, metrics) == []


# -- the checker catches what it must ----------------------------------------------------------


def _invocation(**extra: Any) -> SeenSpan:
    attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "A", **extra}
    return SeenSpan("invoke_agent A", "INTERNAL", False, attrs)


def test_a_conformant_span_passes() -> None:
    assert check([_invocation(**{"gen_ai.usage.input_tokens": 3,
                                 "instrument.anything": "ours"})], []) == []


def test_the_checker_rejects_removed_unknown_and_misplaced_names() -> None:
    span = _invocation(**{
        "gen_ai.usage.cache_creation.input_tokens": 5,  # removed (renamed cache_write)
        "gen_ai.token.type": "input",  # removed
        "gen_ai.made_up": "x",  # not in the registry
        "agent.kind": "x",  # not ours, not in any registry
        "gen_ai.usage.cache_read.input_tokens": 2,  # inference spans only
        "gen_ai.agent.id": "process-local",  # hosted agents only
    })
    assert check([span], []) == [
        "span 'invoke_agent A': gen_ai.usage.cache_creation.input_tokens was removed from the "
        "registry (renamed gen_ai.usage.cache_write.input_tokens (changelog.d/440))",
        "span 'invoke_agent A': gen_ai.token.type was removed from the registry (attribute "
        "removed with gen_ai.client.token.usage (changelog.d/374))",
        "span 'invoke_agent A': gen_ai.made_up is neither in the registry nor under "
        "'instrument.'",
        "span 'invoke_agent A': agent.kind is neither in the registry nor under 'instrument.'",
        "span 'invoke_agent A': gen_ai.usage.cache_read.input_tokens does not belong on a "
        "gen_ai.invocation.internal span",
        "span 'invoke_agent A': gen_ai.agent.id does not belong on a gen_ai.invocation.internal "
        "span",
    ]


def test_the_checker_rejects_wrong_types_kinds_names_and_missing_attributes() -> None:
    spans = [
        SeenSpan("invoke_agent A", "CLIENT", True, {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "A",
            "gen_ai.usage.input_tokens": "12", "gen_ai.invocation.is_nested": 0}),
        SeenSpan("execute_tool", "INTERNAL", False, {"gen_ai.operation.name": "execute_tool"}),
        SeenSpan("chat gpt-4o", "CLIENT", False, {"gen_ai.operation.name": "chat"}),
    ]
    assert check(spans, []) == [
        "span 'invoke_agent A': kind CLIENT, the gen_ai.invocation.internal type is INTERNAL",
        "span 'invoke_agent A': ended in an error without error.type",
        "span 'invoke_agent A': gen_ai.usage.input_tokens='12' is not of type int",
        "span 'invoke_agent A': gen_ai.invocation.is_nested=0 is not of type boolean",
        "span 'execute_tool': the gen_ai.execute_tool.internal naming rule gives "
        "'execute_tool None'",
        "span 'execute_tool': required attribute gen_ai.tool.name is missing",
        "span 'chat gpt-4o': gen_ai.operation.name 'chat' is not an operation of ours",
    ]


def test_the_checker_rejects_the_old_exception_event_and_unlisted_event_attributes() -> None:
    span = _invocation(**{"error.type": "ValueError"})
    bad = SeenSpan(span.name, span.kind, True, span.attributes, [
        ("exception", {"exception.type": "ValueError"}),
        ("gen_ai.client.operation.exception", {"exception.escaped": True}),
    ])
    assert check([bad], []) == [
        "span 'invoke_agent A', event 'exception': not an event of the registry",
        "span 'invoke_agent A', event 'gen_ai.client.operation.exception': attribute "
        "exception.escaped is not one of the event's ['exception.message', "
        "'exception.stacktrace', 'exception.type']",
        "span 'invoke_agent A', event 'gen_ai.client.operation.exception': exception.escaped "
        "is neither in the registry nor under 'instrument.'",
        "span 'invoke_agent A', event 'gen_ai.client.operation.exception': needs "
        "exception.type or exception.message",
    ]


def test_the_checker_rejects_removed_and_malformed_metrics() -> None:
    metrics = [
        SeenMetric("gen_ai.client.token.usage", "{token}", "histogram"),
        SeenMetric("gen_ai.invoke_agent.duration", "s", "histogram"),
        SeenMetric("gen_ai.agent.runs", "1", "counter"),
        SeenMetric("gen_ai.invocation.duration", "ms", "counter",
                   [{"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai"}],
                   [(0.01, 0.02)]),
        SeenMetric("instrument.executions", "{execution}", "counter", [{"any": 1}]),
    ]
    assert check([], metrics) == [
        "metric 'gen_ai.client.token.usage': removed from the registry (metric replaced by "
        "per-direction histograms (changelog.d/374))",
        "metric 'gen_ai.invoke_agent.duration': removed from the registry (replaced by "
        "gen_ai.invocation.duration (changelog.d/571))",
        "metric 'gen_ai.agent.runs': neither in the registry nor under 'instrument.'",
        "metric 'gen_ai.invocation.duration': a counter, the registry says histogram",
        "metric 'gen_ai.invocation.duration': unit 'ms', the registry says 's'",
        "metric 'gen_ai.invocation.duration': required attribute gen_ai.invocation.is_nested "
        "missing on a point",
        "metric 'gen_ai.invocation.duration': attribute gen_ai.provider.name is not one of the "
        "metric's",
        "metric 'gen_ai.invocation.duration': buckets [0.01, 0.02], the conventions give "
        "[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6]",
    ]


def test_the_previous_names_are_exactly_what_the_checker_flags(otel: Otel) -> None:
    """With gen_ai/dup we emit both: the checker finds the previous names, and only those."""

    @logged_execution(agent_name="agent_name", agent_id="agent_id")
    def run(agent_name: str, agent_id: str, fail: bool) -> dict[str, Any]:
        if fail:
            raise ValueError("nope")
        return {"success": True, "tokens": {"input_tokens": 9, "output_tokens": 2,
                                            "cached_input_tokens": 4, "reasoning_tokens": 1}}

    with otel.capture(conventions=sc.DUP):
        run("A", "a-1", False)
        with pytest.raises(ValueError):
            run("B", "b-1", True)
    assert check(*seen(otel)) == [
        "span 'invoke_agent A': gen_ai.agent.id does not belong on a gen_ai.invocation.internal "
        "span",
        "span 'invoke_agent A': gen_ai.usage.cache_read.input_tokens does not belong on a "
        "gen_ai.invocation.internal span",
        "span 'invoke_agent A': gen_ai.usage.reasoning.output_tokens does not belong on a "
        "gen_ai.invocation.internal span",
        "span 'invoke_agent B': gen_ai.agent.id does not belong on a gen_ai.invocation.internal "
        "span",
        "span 'invoke_agent B', event 'exception': not an event of the registry",
        "metric 'gen_ai.client.token.usage': removed from the registry (metric replaced by "
        "per-direction histograms (changelog.d/374))",
    ]
