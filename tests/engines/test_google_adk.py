"""Google ADK runs through the ``google_adk`` adapter.

google-adk 2.13 caps OpenTelemetry at 1.44 and google-genai below 3, so it cannot live in the
main test environment (OpenTelemetry 1.45, google-genai 3.6). Two kinds of test:

- events recorded from real ADK runs (tests/engines/recorded/, made by
  tests/engines/adk_driver.py with ADK's own types), rebuilt as attribute objects and yielded
  by a decorated executor here: the record, the four tables and the span;
- one ``slow`` test that builds (once, cached under the temp dir by the requirements) a side
  virtual environment with google-adk and this package's core dependencies, runs real ADK
  agents there (a custom ``BaseLlm`` with canned responses) under ``@logged_execution``
  writing to SQLite, and checks the rows from here. Measured: the side environment installs
  in about 18 s (137 MB) from a cold pip cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument import logged_execution
from instrument.adapters import get_adapter
from instrument.adapters.protocol import StreamedItems
from instrument.adapters.registry import detect_adapter
from instrument.record import ExecutionRecord, TokenUsage, ToolCall
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.adk_recorded import load_events, recorded_versions
from tests.engines.rows import store_rows

MODEL_VERSION = "gemini-3.8-flash-001"
#: The two model responses of a tool run: a call (40 prompt, 8 answer, 3 thought tokens) and
#: the answer (60 prompt of which 20 cached, 5 answer tokens).
TWO_TURNS = TokenUsage(input_tokens=100, output_tokens=16, total_tokens=116,
                       cached_input_tokens=20, reasoning_tokens=3)
ROOT = Path(__file__).resolve().parents[2]


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


@logged_execution(agent_id="agent_id", user_id="user_id")
async def run_agent(agent_id: str, user_id: str, scenario: str) -> AsyncIterator[Any]:
    """Stands for ``async for event in runner.run_async(...): yield event``."""
    for event in load_events(scenario):
        yield event


def execution_span(spans: Any) -> Any:
    """The execution's span (``invoke_agent`` or ``handle_conversation_turn``, as the
    conventions name a framework run), not its ``execute_tool`` children."""
    found = [s for s in spans if "instrument.execution_id" in (s.attributes or {})
             and not s.name.startswith("execute_tool")]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def replay(scenario: str, **kw: Any) -> ExecutionRecord:
    import asyncio

    async def drain() -> None:
        async for _ in run_agent(f"adk-{scenario}", "u-1", scenario):
            pass

    with capture(**kw) as cap:
        asyncio.run(drain())
    return only(cap)


def test_recorded_with_the_real_framework() -> None:
    for scenario in ("tool", "blocked", "paused", "confirm", "unknown_tool", "stream"):
        assert recorded_versions(scenario)["google-adk"].startswith("2."), scenario


def test_tool_run_in_the_record_the_four_tables_and_the_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, MeterProvider(metric_readers=[InMemoryMetricReader()],
                                              shutdown_on_exit=False))
    r = replay("tool", tracing=tracing, capture_content=True)
    res = r.result
    assert (r.engine, r.status, r.agent_id, r.user_id) == ("google_adk", "completed",
                                                           "adk-tool", "u-1")
    assert res.tokens == TWO_TURNS
    assert (res.model, res.request_model, res.provider) == (MODEL_VERSION, None, "gcp.gen_ai")
    assert (res.iterations, res.response) == (2, "It is sunny in Paris.")
    [call] = res.tool_calls or []
    assert (call.name, call.call_id, call.success, call.error) == ("get_weather", "fc-1",
                                                                  True, None)
    events = load_events("tool")
    started = events[0].timestamp
    assert call.started_at is not None
    assert call.started_at.timestamp() == pytest.approx(started)
    assert call.duration_ms == pytest.approx((events[1].timestamp - started) * 1000, abs=0.01)
    assert res.extras["agents"] == ["weather_agent"]
    assert res.extras["events"] == 3

    rows = store_rows([r], tmp_path / "adk.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["input_tokens"], ex["output_tokens"],
            ex["total_tokens"], ex["model"], ex["provider"]) == (
        "google_adk", "completed", 100, 16, 116, MODEL_VERSION, "gcp.gen_ai")
    assert json.loads(ex["logs"])["response"] == "It is sunny in Paris."
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 116)
    assert (rows.stats["run_count"], rows.stats["success_count"]) == (1, 1)
    assert (rows.intensity["total_iterations"], rows.intensity["total_tool_calls"]) == (2, 1)

    spans = exporter.get_finished_spans()
    ours = execution_span(spans)
    attrs = dict(ours.attributes or {})
    assert attrs["instrument.status"] == "completed"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (100, 16)
    assert attrs["gen_ai.response.model"] == MODEL_VERSION
    tools = [s for s in spans if s.name == "execute_tool get_weather"]
    assert len(tools) == 1  # the call's timing became a child span
    assert tools[0].parent is not None
    assert tools[0].parent.span_id == ours.context.span_id
    provider.shutdown()


def test_a_blocked_answer_is_an_error_event_not_an_exception(tmp_path: Path) -> None:
    r = replay("blocked")
    assert (r.status, r.result.success) == ("failed", False)
    assert r.result.error is not None
    assert (r.result.error.type, r.result.error.message) == ("SAFETY",
                                                             "The answer was blocked.")
    assert r.result.tokens == TokenUsage(input_tokens=10, output_tokens=0, total_tokens=10)
    assert r.result.extras["error_events"] == 1
    rows = store_rows([r], tmp_path / "blocked.db")[0]
    assert (rows.execution["status"], rows.execution["error_type"]) == ("failed", "SAFETY")
    assert (rows.stats["failure_count"], rows.intensity["failed_executions"]) == (1, 1)


def test_a_long_running_tool_pauses_the_run(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, MeterProvider(metric_readers=[InMemoryMetricReader()],
                                              shutdown_on_exit=False))
    r = replay("paused", tracing=tracing)
    res = r.result
    assert (r.status, res.success, res.paused) == ("paused", True, True)
    assert res.error is None
    assert res.extras["pending"] == ["ask_manager"]
    [call] = res.tool_calls or []
    assert (call.name, call.call_id, call.success) == ("ask_manager", "fc-2", None)
    assert res.tokens == TWO_TURNS
    rows = store_rows([r], tmp_path / "paused.db")[0]
    assert rows.execution["status"] == "paused"
    assert (rows.execution["input_tokens"], rows.execution["output_tokens"]) == (100, 16)
    ours = execution_span(exporter.get_finished_spans())
    assert dict(ours.attributes or {})["instrument.status"] == "paused"
    provider.shutdown()


def test_a_tool_waiting_for_confirmation_pauses_the_run() -> None:
    res = replay("confirm").result
    assert (res.success, res.paused, res.status) == (True, True, "paused")
    assert res.extras["pending"] == ["adk_request_confirmation", "get_weather"]
    # not run yet: neither succeeded nor failed, and no timing
    assert res.tool_calls == [ToolCall(name="get_weather", call_id="fc-3")]
    assert res.iterations == 1


def test_an_unknown_tool_is_a_failed_call_in_a_completed_run() -> None:
    res = replay("unknown_tool").result
    assert (res.status, res.tokens) == ("completed", TWO_TURNS)
    [call] = res.tool_calls or []
    assert (call.name, call.success) == ("lookup_order", False)
    assert call.error is not None
    assert call.error.startswith("Invoking `lookup_order()` failed")


def test_partial_streaming_events_are_not_counted() -> None:
    events = load_events("stream")
    assert sum(1 for e in events if e.partial) == 5  # each with its own growing usage
    res = replay("stream", capture_content=True).result
    assert res.tokens == TokenUsage(input_tokens=60, output_tokens=5, total_tokens=65,
                                    cached_input_tokens=20)
    assert (res.iterations, res.response) == (1, "Sunny and mild in Paris today.")
    assert res.extras["partial_events"] == 5


def test_a_collected_list_of_events_is_recognized() -> None:
    @logged_execution
    def collected() -> list[Any]:
        return load_events("tool")

    with capture() as cap:
        collected()
    r = only(cap)
    assert (r.engine, r.result.tokens, r.result.iterations) == ("google_adk", TWO_TURNS, 2)
    assert "streamed" not in r.result.extras


def test_matches_is_specific() -> None:
    adapter = get_adapter("google_adk")
    events = load_events("tool")
    assert detect_adapter(StreamedItems(events)).name == "google_adk"
    for foreign in ({"success": True}, StreamedItems(["text"]), [], [1, 2], (events[0].content,),
                    events[0], "adk", None):
        assert not adapter.matches(foreign), foreign


# -- the real framework, in a side environment --------------------------------------------------

#: What the side environment gets: ADK at the version the recordings were made with, and this
#: package's core dependencies (the package itself comes from the tree, on PYTHONPATH).
SIDE_REQUIREMENTS = (
    "google-adk==2.13.0", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
    "wrapt>=1.16", "pydantic>=2.10,<3", "orjson>=3.9", "genai-prices>=0.2.3",
)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def side_venv() -> Path:
    """The side environment's python, built once per requirements and interpreter."""
    key = hashlib.sha256(
        "\n".join((sys.version, *SIDE_REQUIREMENTS)).encode()).hexdigest()[:16]
    home = Path(tempfile.gettempdir()) / f"instrument-adk-venv-{key}"
    python = home / "bin" / "python"
    with _locked(Path(tempfile.gettempdir()) / f"instrument-adk-venv-{key}.lock"):
        if (home / ".ready").exists():
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True,
                       timeout=120)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", *SIDE_REQUIREMENTS],
                              capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, f"pip install failed:\n{done.stderr[-4000:]}"
        (home / ".ready").write_text("\n".join(SIDE_REQUIREMENTS) + "\n", encoding="utf-8")
    return python


@pytest.mark.slow
def test_real_adk_agents_under_the_decorator_write_the_rows(tmp_path: Path) -> None:
    python = side_venv()
    db = tmp_path / "adk-real.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(python), str(ROOT / "tests" / "engines" / "adk_driver.py"),
                           "run", str(db)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    ids: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row

        def row(scenario: str) -> dict[str, Any]:
            found = conn.execute("SELECT * FROM agent_executions WHERE id = ?",
                                 (ids[scenario],)).fetchall()
            assert len(found) == 1, scenario
            return dict(found[0])

        tool = row("tool")
        assert (tool["engine"], tool["status"], tool["agent_id"], tool["user_id"]) == (
            "google_adk", "completed", "adk-tool", "u-1")
        assert (tool["input_tokens"], tool["output_tokens"], tool["total_tokens"],
                tool["model"], tool["provider"]) == (100, 16, 116, MODEL_VERSION, "gcp.gen_ai")
        logs = json.loads(tool["logs"])
        assert logs["response"] == "It is sunny in Paris."
        blocked = row("blocked")
        assert (blocked["status"], blocked["error_type"], blocked["error_message"]) == (
            "failed", "SAFETY", "The answer was blocked.")
        assert row("paused")["status"] == "paused"
        assert row("confirm")["status"] == "paused"
        assert row("unknown_tool")["status"] == "completed"
        stream = row("stream")
        assert (stream["input_tokens"], stream["output_tokens"]) == (60, 5)
        collected = row("tool:list")
        assert (collected["engine"], collected["total_tokens"]) == ("google_adk", 116)
        stats = dict(conn.execute("SELECT * FROM agent_stats WHERE agent_id = 'adk-tool'")
                     .fetchone())
        assert (stats["run_count"], stats["success_count"], stats["total_tokens"]) == (1, 1, 116)
        intensity = dict(conn.execute(
            "SELECT * FROM agent_intensity_metrics WHERE agent_id = 'adk-tool'").fetchone())
        assert (intensity["total_iterations"], intensity["total_tool_calls"]) == (2, 1)
        log = dict(conn.execute("SELECT * FROM agent_logs WHERE execution_id = ?",
                                (ids["tool"],)).fetchone())
        assert (log["status"], log["run_tokens"]) == ("completed", 116)
