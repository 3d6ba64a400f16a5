"""examples/jaeger/run.py, run as a script against the in-suite OTLP receiver (Jaeger's role)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tracing.otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "jaeger" / "run.py"
COMPOSE = ROOT / "examples" / "jaeger" / "docker-compose.yml"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_the_jaeger_demo_exports_its_traces(protocol: str, tmp_path: Path) -> None:
    with OtlpReceiver() as rx:
        env = {
            "PATH": "/usr/bin:/bin",
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_url if protocol != "grpc" else rx.grpc_url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "INSTRUMENT_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
            "INSTRUMENT_SPOOL_DIR": str(tmp_path / "spool"),
            "JAEGER_UI": "http://jaeger.test:16686",
        }
        proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                              env=env, timeout=120, check=False, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        spans = rx.wait_for_spans(6)
    names = {s.name for s in spans}
    assert {"invoke_agent Researcher", "execute_tool web.search", "execute_tool docs.fetch",
            "invoke_workflow nightly-report", "invoke_agent Flaky",
            "invoke_agent Streamer"} <= names
    assert {s.resource["service.name"] for s in spans} == {"jaeger-demo"}
    # every printed trace link points at a trace the collector received
    printed = set(re.findall(r"jaeger\.test:16686/trace/([0-9a-f]{32})", proc.stdout))
    assert len(printed) == 4
    assert printed == {s.span.trace_id.hex() for s in spans}
    flaky = next(s for s in spans if s.name == "invoke_agent Flaky")
    assert flaky.attributes["error.type"] == "TimeoutError"
    assert [e.name for e in flaky.span.events] == ["gen_ai.client.operation.exception"]
    assert "streamed: Streaming into Jaeger." in proc.stdout


def test_the_compose_file_runs_jaeger_v2_with_the_documented_ports() -> None:
    text = COMPOSE.read_text()
    assert "image: jaegertracing/jaeger:2.20.0" in text
    for port in ("16686:16686", "4317:4317", "4318:4318"):
        assert f'"{port}"' in text
    assert "OTEL_METRICS_EXPORTER: none" in text
