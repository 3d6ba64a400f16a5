"""Global provider policy. Each case runs in a fresh interpreter: the OTel globals are set-once."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.conftest import run_python

PRELUDE = """
import instrument
from instrument import logged_execution, runtime
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

@logged_execution(agent_name="agent_name")
def run(agent_name):
    with trace.get_tracer("app").start_as_current_span("inner"):
        pass
    return {"success": True, "tokens": {"input_tokens": 5, "output_tokens": 1}}
"""


def _run(body: str, tmp_path: Path, **env: str) -> str:
    code = PRELUDE + f"\nDB = 'sqlite:///{tmp_path / 'p.db'}'\n" + textwrap.dedent(body)
    proc = run_python(code, env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                                 **env}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_applications_global_providers_are_used_and_left_running(tmp_path: Path) -> None:
    out = _run("""
        app_spans = InMemorySpanExporter()
        app_tp = TracerProvider()
        app_tp.add_span_processor(SimpleSpanProcessor(app_spans))
        trace.set_tracer_provider(app_tp)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        instrument.configure(database_url=DB, traces="console")
        tel = runtime.peek().tracing.telemetry
        assert tel.tracer_provider is app_tp and tel.owned_tracer_provider is None
        assert tel.owned_meter_provider is None
        run("AppAgent")
        names = {s.name: s for s in app_spans.get_finished_spans()}
        assert set(names) == {"invoke_agent AppAgent", "inner"}, names
        assert names["inner"].parent.span_id == names["invoke_agent AppAgent"].context.span_id
        # ... but not its meter provider: our metrics go there only when the app opts in
        data = reader.get_metrics_data()
        ours = {m.name for rm in (data.resource_metrics if data else ())
                for sm in rm.scope_metrics if sm.scope.name == "logged-execution"
                for m in sm.metrics}
        assert ours == set(), ours

        assert instrument.shutdown(5)
        # we did not shut the application's provider down: it still exports
        with trace.get_tracer("app").start_as_current_span("after"):
            pass
        assert "after" in {s.name for s in app_spans.get_finished_spans()}
        assert trace.get_tracer_provider() is app_tp
        print("OK")
    """, tmp_path)
    assert "OK" in out
    assert "invoke_agent" not in out.replace("OK", "")  # traces="console" was not applied


def test_our_provider_stays_private_and_the_app_can_still_set_its_own(tmp_path: Path) -> None:
    out = _run("""
        import io, logging
        log = io.StringIO()
        logging.getLogger("opentelemetry").addHandler(logging.StreamHandler(log))

        instrument.configure(database_url=DB)
        tel = runtime.peek().tracing.telemetry
        assert tel.owned_tracer_provider is not None
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        run("Early")   # our own (private) provider, console exporter

        # The application configures OpenTelemetry after us: that must still work.
        app_spans = InMemorySpanExporter()
        app_tp = TracerProvider()
        app_tp.add_span_processor(SimpleSpanProcessor(app_spans))
        trace.set_tracer_provider(app_tp)
        assert trace.get_tracer_provider() is app_tp
        assert "Overriding" not in log.getvalue()

        # Its spans inside our executors are children of ours (context, not provider).
        run("Later")
        (inner,) = [s for s in app_spans.get_finished_spans() if s.name == "inner"]
        assert inner.parent is not None
        assert instrument.shutdown(5)
        print("OK")
    """, tmp_path, OTEL_TRACES_EXPORTER="console")
    assert "OK" in out
    assert '"name": "invoke_agent Early"' in out  # the console exporter wrote our spans


def test_otel_sdk_disabled_keeps_records_but_makes_no_spans(tmp_path: Path) -> None:
    out = _run("""
        from instrument.testing import capture
        instrument.configure(database_url=DB)
        assert runtime.peek().tracing is None
        @logged_execution
        def plain():
            from instrument import current_execution
            ctx = current_execution()
            assert ctx is not None and ctx.trace_id is None
            return {"success": True}
        plain()
        assert instrument.shutdown(5)
        print("OK")
    """, tmp_path, OTEL_SDK_DISABLED="true", OTEL_TRACES_EXPORTER="console")
    assert out.strip() == "OK"


def test_our_metrics_reach_the_applications_meter_provider_only_when_it_opts_in(
        tmp_path: Path) -> None:
    out = _run("""
        from instrument.tracing import use_app_meter_provider
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        def ours():
            data = reader.get_metrics_data()
            return {m.name for rm in (data.resource_metrics if data else ())
                    for sm in rm.scope_metrics if sm.scope.name == "logged-execution"
                    for m in sm.metrics}

        instrument.configure(database_url=DB)
        assert runtime.peek().tracing.metrics.enabled is False  # nothing recorded, no cost
        run("NotAsked")
        assert ours() == set()

        use_app_meter_provider()
        instrument.configure(database_url=DB)
        run("Asked")
        assert "gen_ai.invocation.duration" in ours(), ours()
        tel = runtime.peek().tracing.telemetry
        assert tel.meter_provider is metrics.get_meter_provider()
        assert tel.owned_meter_provider is None  # the application's, left running
        assert instrument.shutdown(5)
        print("OK")
    """, tmp_path)
    assert "OK" in out


def test_with_an_app_meter_provider_our_own_exporter_still_gets_our_metrics(
        tmp_path: Path) -> None:
    """The application has a global MeterProvider (Logfire's, say) and OTEL_METRICS_EXPORTER
    asks for ours: we build our own, private one; the application's sees nothing of ours."""
    out = _run("""
        reader = InMemoryMetricReader()
        app_mp = MeterProvider(metric_readers=[reader])
        metrics.set_meter_provider(app_mp)
        instrument.configure(database_url=DB)
        tel = runtime.peek().tracing.telemetry
        assert tel.owned_meter_provider is not None
        assert tel.meter_provider is tel.owned_meter_provider
        run("Own")
        data = reader.get_metrics_data()
        assert not [sm for rm in (data.resource_metrics if data else ())
                    for sm in rm.scope_metrics if sm.scope.name == "logged-execution"]
        assert instrument.shutdown(5)
        print("OK")
    """, tmp_path, OTEL_METRICS_EXPORTER="console")
    assert "OK" in out
    assert "gen_ai.invocation.duration" in out  # the console exporter of our own provider
