"""End to end over real OTLP (gRPC and HTTP/protobuf), and bounded shutdown when it is dead."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import instrument
from instrument import logged_execution, runtime
from instrument.record import ExecutionRecord
from instrument.tracing.semconv import INVOCATION_DURATION_BUCKETS, TOKEN_USAGE_BUCKETS
from tests.conftest import run_python
from tests.tracing.otlp_receiver import OtlpReceiver, attributes
from tests.tracing.semconv_check import check, from_otlp


class _Keep:
    """A custom writer: the records as the database receives them."""

    name = "keep"

    def __init__(self) -> None:
        self.records: list[ExecutionRecord] = []

    def write(self, records: Sequence[ExecutionRecord]) -> None:
        self.records.extend(records)


@logged_execution(agent_id="agent_id", agent_name="agent_name", user_id="user_id")
def tool_agent(agent_id: str, agent_name: str, user_id: str) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    return {
        "success": True, "model": "gpt-4o-mini", "provider": "openai",
        "tokens": {"input_tokens": 300, "output_tokens": 40},
        "iterations": 2,
        "tool_calls": [{"name": "lookup", "call_id": "call-1", "success": True,
                        "started_at": started.isoformat(), "duration_ms": 5}],
    }


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # The suite defaults both exporters to none; these tests opt back in.
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "e2e-agents")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES",
                       "deployment.environment=test,service.name=overridden")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme%20corp")
    return monkeypatch


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_and_metrics_arrive_over_otlp(protocol: str, otel_env: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    with OtlpReceiver() as rx:
        otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT",
                        rx.grpc_url if protocol == "grpc" else rx.http_url)
        keep = _Keep()
        instrument.configure(database_url=f"sqlite:///{tmp_path / 'e2e.db'}",
                             writers=["executions", keep])
        tool_agent("agent-42", "Researcher", "user-7")
        assert instrument.flush(10.0)
        # A metric collection while the runtime is live also observes the pipeline's health.
        live = runtime.peek()
        assert live is not None
        assert live.tracing is not None
        assert live.tracing.force_flush(10.0)
        assert instrument.shutdown(10.0)

        spans = rx.wait_for_spans(2)
        transport = "grpc" if protocol == "grpc" else "http"
        assert {s.transport for s in spans} == {transport}
        by_name = {s.name: s for s in spans}
        agent = by_name["invoke_agent Researcher"]
        tool = by_name["execute_tool lookup"]
        (record,) = keep.records

        assert agent.resource["service.name"] == "e2e-agents"
        assert agent.resource["deployment.environment"] == "test"
        assert agent.scope == "logged-execution"
        assert agent.span.kind == agent.span.SPAN_KIND_INTERNAL
        attrs = agent.attributes
        assert attrs["gen_ai.operation.name"] == "invoke_agent"
        assert attrs["instrument.agent_id"] == "agent-42"
        assert attrs["gen_ai.invocation.is_nested"] is False
        assert attrs["gen_ai.agent.name"] == "Researcher"
        assert attrs["user.id"] == "user-7"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["gen_ai.response.model"] == "gpt-4o-mini"
        assert attrs["gen_ai.usage.input_tokens"] == 300
        assert attrs["gen_ai.usage.output_tokens"] == 40
        assert attrs["instrument.iterations"] == 2
        assert attrs["instrument.execution_id"] == str(record.execution_id)
        # the row -> trace jump: same ids in the record (the agent_executions row) and OTLP
        assert agent.span.trace_id.hex() == record.trace_id
        assert agent.span.span_id.hex() == record.span_id
        assert tool.span.parent_span_id == agent.span.span_id
        assert tool.attributes["gen_ai.tool.call.id"] == "call-1"
        assert all(h.get("x-tenant") == "acme corp" for h in rx.headers)

        duration = rx.metric("gen_ai.invocation.duration")
        assert duration.unit == "s"
        (point,) = duration.histogram.data_points
        assert attributes(point.attributes) == {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.invocation.is_nested": False,
            "gen_ai.agent.name": "Researcher"}
        assert list(point.explicit_bounds) == list(INVOCATION_DURATION_BUCKETS)
        (inference,) = rx.metric("gen_ai.invoke_agent.inference_calls").histogram.data_points
        assert (inference.count, inference.sum) == (1, 2)
        (tool_calls,) = rx.metric("gen_ai.invoke_agent.tool_calls").histogram.data_points
        assert (tool_calls.count, tool_calls.sum) == (1, 1)
        tool_duration = rx.metric("gen_ai.execute_tool.duration")
        assert tool_duration.unit == "s"
        assert attributes(tool_duration.histogram.data_points[0].attributes)[
            "gen_ai.tool.name"] == "lookup"
        assert not rx.metric_names() & {"gen_ai.client.token.usage",
                                        "gen_ai.client.operation.duration"}
        # and everything that crossed the wire conforms to the registry extract
        assert check(*from_otlp(spans, [r for _, r in rx.metric_requests])) == []
        executions = rx.metric("instrument.executions")
        assert executions.sum.data_points[0].as_int == 1
        depth = rx.metric("instrument.pipeline.queue.depth")
        assert depth.gauge.data_points[0].as_int == 0  # flushed: nothing waiting
        assert "instrument.pipeline.dropped" in rx.metric_names()


@pytest.mark.parametrize("opt_in", ["gen_ai/previous", "http,gen_ai/dup"])
def test_the_previous_names_arrive_with_the_compatibility_setting(
        opt_in: str, otel_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with OtlpReceiver() as rx:
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.http_url)
        otel_env.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
        instrument.configure(database_url=f"sqlite:///{tmp_path / 'compat.db'}")
        tool_agent("agent-42", "Researcher", "user-7")
        assert instrument.shutdown(10.0)
        spans = rx.wait_for_spans(2)
        agent = next(s for s in spans if s.name == "invoke_agent Researcher")
        assert agent.attributes["gen_ai.agent.id"] == "agent-42"
        tokens = rx.metric("gen_ai.client.token.usage")
        by_type = {attributes(p.attributes)["gen_ai.token.type"]: p
                   for p in tokens.histogram.data_points}
        assert (by_type["input"].sum, by_type["output"].sum) == (300, 40)
        assert list(by_type["input"].explicit_bounds) == list(TOKEN_USAGE_BUCKETS)
        assert rx.metric("gen_ai.client.operation.duration").unit == "s"
        both = opt_in.endswith("dup")
        assert ("instrument.agent_id" in agent.attributes) is both
        assert ("gen_ai.invocation.duration" in rx.metric_names()) is both


# -- a collector that never answers ------------------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word (worse than refusing)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    srv.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_shutdown_is_bounded_and_calls_never_wait_with_a_dead_collector(
        protocol: str, otel_env: pytest.MonkeyPatch, blackhole: str, tmp_path: Path) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", blackhole)
    otel_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")  # the SDK's worker starts exporting at once
    # Longer than the shutdown bound, short enough that the abandoned export ends soon after.
    otel_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "4000")
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'dead.db'}")
    tool_agent("a", "Warmup", "u")
    time.sleep(0.3)  # the span processor is now stuck in an export against the dead endpoint
    took: list[float] = []
    for _ in range(50):
        t0 = time.perf_counter()
        tool_agent("a", "Busy", "u")
        took.append(time.perf_counter() - t0)
    took.sort()
    # The exporter is blocked for its 4 s timeout; a call that waited on it would show that.
    assert took[-1] < 1.0, f"a decorated call waited {took[-1]:.3f}s on the exporter"
    assert took[len(took) // 2] < 0.05, f"median call {took[len(took) // 2]:.3f}s"

    t0 = time.monotonic()
    ok = instrument.shutdown(timeout_s=2)
    elapsed = time.monotonic() - t0
    assert elapsed < 4.0, f"shutdown(timeout_s=2) took {elapsed:.2f}s"
    assert ok is False  # it could not deliver, and says so


def test_a_process_exits_promptly_with_a_dead_collector(blackhole: str, tmp_path: Path) -> None:
    code = f"""
import time
import instrument
from instrument import logged_execution, runtime
instrument.configure(database_url="sqlite:///{tmp_path / 'exit.db'}")

@logged_execution
def run():
    return {{"success": True}}

for _ in range(20):
    run()
print("done", flush=True)
"""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": blackhole, "OTEL_TRACES_EXPORTER": "otlp",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_METRICS_EXPORTER": "otlp"}
    t0 = time.monotonic()
    proc = run_python(code, env=env, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "done" in proc.stdout
    # atexit: shutdown(5.0) at most, plus interpreter start-up and teardown
    assert elapsed < 12.0, f"exit took {elapsed:.1f}s"
