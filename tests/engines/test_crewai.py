"""The ``crewai`` adapter on CrewAI's real result objects.

CrewAI 1.15 cannot share this environment (openai < 3, pydantic < 2.13, mcp < 2; ~1 GB), so its
results were recorded with CrewAI's own types in a side environment by
``tests/engines/recorded/crewai_record.py`` (real crews, an agent and a flow, offline) and are
rebuilt here with the same modules, class names and attribute shapes. The slow test at the end
builds that side environment and runs a real crew under ``@logged_execution`` there, writing to
SQLite, and reads the rows from this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument import logged_execution
from instrument.adapters import StreamedItems, detect_adapter, get_adapter
from instrument.adapters.conformance import Sample, check_adapter
from instrument.adapters.crewai import ADAPTER
from instrument.record import ExecutionRecord, TokenUsage, ToolCall
from instrument.redact import Redactor
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.rows import store_rows

ROOT = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).resolve().parent / "recorded"
RESULTS = json.loads((RECORDED / "crewai_results.json").read_text())
#: The CrewAI release the results were recorded with, and the slow test installs.
CREWAI = RESULTS["crewai_version"]

#: CrewAI's sum over 3 requests of {prompt 100 (40 cached), completion 20}.
CREW_TOKENS = TokenUsage(input_tokens=300, output_tokens=60, total_tokens=360,
                         cached_input_tokens=120, reasoning_tokens=0,
                         cache_write_input_tokens=0)
FAILED_TOOL = ToolCall(name="broken_tool", success=False, error="RuntimeError: backend down")


# -- CrewAI's result types, rebuilt with their modules, names and attribute shapes -------------


class _Fields:
    """Field values in the instance's ``__dict__``, where a pydantic model keeps them."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def _model(module: str, name: str) -> type[_Fields]:
    return type(name, (_Fields,), {"__module__": module})


UsageMetrics = _model("crewai.types.usage_metrics", "UsageMetrics")
ToolFailure = _model("crewai.tools.tool_failure", "ToolFailure")
ToolFailureRecord = _model("crewai.tools.tool_failure", "ToolFailureRecord")
TaskOutput = _model("crewai.tasks.task_output", "TaskOutput")
CLASSES: dict[tuple[str, str], type[_Fields]] = {
    ("crewai.crews.crew_output", "CrewOutput"): _model("crewai.crews.crew_output", "CrewOutput"),
    ("crewai.lite_agent_output", "LiteAgentOutput"): _model("crewai.lite_agent_output",
                                                            "LiteAgentOutput"),
}


def _failures(items: list[dict[str, Any]]) -> list[_Fields]:
    return [ToolFailureRecord(**{**f, "failure": ToolFailure(**f["failure"])}) for f in items]


class PendingFeedbackContext(_Fields):
    """CrewAI's dataclass of that name: plain attributes."""


PendingFeedbackContext.__module__ = "crewai.flow.async_feedback.types"


class HumanFeedbackPending(Exception):
    def __init__(self, context: PendingFeedbackContext, callback_info: dict[str, Any],
                 message: str) -> None:
        self.context = context
        self.callback_info = callback_info
        super().__init__(message)


HumanFeedbackPending.__module__ = "crewai.flow.async_feedback.types"


class ToolExecutionFailedError(Exception):
    def __init__(self, record: _Fields, message: str) -> None:
        self.record = record
        super().__init__(message)


ToolExecutionFailedError.__module__ = "crewai.tools.tool_failure"


def rebuild(name: str) -> Any:
    """A recorded result as an object of its CrewAI class's module, name and shape."""
    entry = RESULTS[name]
    key, data = (entry["module"], entry["class"]), entry["data"]
    if key == ("crewai.flow.async_feedback.types", "HumanFeedbackPending"):
        return HumanFeedbackPending(PendingFeedbackContext(**data["context"]),
                                    data["callback_info"], data["message"])
    if key == ("crewai.tools.tool_failure", "ToolExecutionFailedError"):
        return ToolExecutionFailedError(_failures([data["record"]])[0], data["message"])
    fields = dict(data)
    if "tasks_output" in fields:
        fields["tasks_output"] = [TaskOutput(**{**t, "tool_failures": _failures(
            t["tool_failures"])}) for t in fields["tasks_output"]]
        fields["token_usage"] = UsageMetrics(**fields["token_usage"])
    if "tool_failures" in fields:
        fields["tool_failures"] = _failures(fields["tool_failures"])
    return CLASSES[key](**fields)


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


@pytest.fixture
def spans() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, content_to_spans=False, redactor=Redactor()), exporter
    provider.shutdown()


def our_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_")]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


# -----------------------------------------------------------------------------------------------


def test_the_recorded_classes_are_the_ones_the_adapter_recognizes() -> None:
    """Re-recording with a CrewAI that moved a class fails here, not silently in production."""
    seen = {(e["module"], e["class"]) for k, e in RESULTS.items() if k != "crewai_version"}
    assert seen == {("crewai.crews.crew_output", "CrewOutput"),
                    ("crewai.lite_agent_output", "LiteAgentOutput"),
                    ("crewai.flow.async_feedback.types", "HumanFeedbackPending"),
                    ("crewai.tools.tool_failure", "ToolExecutionFailedError")}


def test_a_crew_that_succeeds_with_a_failed_tool(
        spans: tuple[Tracing, InMemorySpanExporter], tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id", user_id="user_id")
    def execute(agent_id: str, user_id: str) -> Any:
        return rebuild("crew_with_a_failed_tool")

    tracing, exporter = spans
    with capture(tracing=tracing, capture_content=True) as cap:
        execute("forecaster", "u-1")
    r = only(cap)
    assert (r.engine, r.status, r.agent_id) == ("crewai", "completed", "forecaster")
    res = r.result
    assert (res.success, res.error, res.paused) == (True, None, False)
    assert res.response == "Sunny in Paris; Oslo unknown."
    assert (res.tokens, res.iterations) == (CREW_TOKENS, 3)
    assert (res.model, res.request_model, res.provider) == (None, None, None)
    assert res.tool_calls == [ToolCall(name="get_weather", success=True), FAILED_TOOL]
    assert res.extras == {"tasks": 1, "agents": ["Forecaster"], "tool_failures": ["exception"],
                          "successful_requests": 3}

    attrs = dict(our_span(exporter).attributes or {})
    assert attrs["instrument.status"] == "completed"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (300, 60)

    rows = store_rows(cap.records, tmp_path / "crew.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["user_id"]) == ("crewai", "completed", "u-1")
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (300, 60, 360)
    calls = json.loads(ex["logs"])["tool_calls"]
    assert [(c["name"], c["success"]) for c in calls] == [("get_weather", True),
                                                         ("broken_tool", False)]
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 360)
    assert (rows.stats["run_count"], rows.stats["success_count"]) == (1, 1)
    assert (rows.intensity["total_tool_calls"], rows.intensity["total_input_tokens"]) == (2, 300)


def test_an_agent_kickoff() -> None:
    @logged_execution
    def execute() -> Any:
        return rebuild("agent_kickoff")

    with capture(capture_content=True) as cap:
        execute()
    res = only(cap).result
    assert res.response == "Hello!"
    assert res.tokens == TokenUsage(input_tokens=100, output_tokens=20, total_tokens=120,
                                    cached_input_tokens=40, reasoning_tokens=0,
                                    cache_write_input_tokens=0)
    assert (res.iterations, res.tool_calls) == (1, [])
    assert res.extras == {"agents": ["Greeter"], "successful_requests": 1}


def test_a_flow_waiting_for_human_feedback_is_paused(tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id")
    def execute(agent_id: str) -> Any:
        return rebuild("paused_flow")  # CrewAI returns it from flow.kickoff(), not raises it

    with capture() as cap:
        execute("reviewer")
    r = only(cap)
    assert (r.status, r.result.success, r.result.paused, r.result.error) == (
        "paused", True, True, None)
    context = RESULTS["paused_flow"]["data"]["context"]
    assert r.result.extras == {
        "waiting_for": "human_feedback", "flow_id": context["flow_id"],
        "flow_class": "__main__.ReviewFlow", "method_name": "draft",
        "outcomes": ["approved", "rejected"], "callback_keys": ["ticket"]}
    rows = store_rows(cap.records, tmp_path / "paused.db")[0]
    assert (rows.execution["status"], rows.log["status"]) == ("paused", "paused")


def test_a_tool_failure_under_the_raise_policy_keeps_the_tool_call() -> None:
    @logged_execution
    def execute() -> Any:
        raise rebuild("tool_failure_raised")

    with capture() as cap, pytest.raises(ToolExecutionFailedError):
        execute()
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == "ToolExecutionFailedError"
    assert r.result.tool_calls == [FAILED_TOOL]


class CrewStreamingOutput:
    """CrewAI's streaming output, rebuilt: iteration goes through its own ``_sync_iterator``,
    whose end sets ``_result`` (CrewAI's ``_finalize_streaming``); the real one is driven by
    the slow test below."""

    def __init__(self, chunks: list[Any], fail: BaseException | None = None) -> None:
        self._result: Any = None
        self._completed = False
        self._sync_iterator: Any = self._run(chunks, fail)
        self._async_iterator = None

    def _run(self, chunks: list[Any], fail: BaseException | None) -> Iterator[Any]:
        try:
            yield from chunks
            if fail is not None:
                raise fail
        finally:
            self._result = rebuild("crew_with_a_failed_tool")

    @property
    def is_completed(self) -> bool:
        return self._completed

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._sync_iterator
        finally:
            self._completed = True


CrewStreamingOutput.__module__ = "crewai.types.streaming"
StreamChunk = _model("crewai.types.streaming", "StreamChunk")
ToolCallChunk = _model("crewai.types.streaming", "ToolCallChunk")
CHUNKS = [StreamChunk(content="Sunny ", chunk_type="text", task_id="t1", tool_call=None),
          StreamChunk(content="", chunk_type="tool_call", task_id="t1", tool_call=ToolCallChunk(
              tool_id="call_1", tool_name="get_weather", arguments='{"city": "Paris"}',
              index=0)),
          StreamChunk(content="in Paris.", chunk_type="text", task_id="t1", tool_call=None)]


def test_a_returned_stream_is_recorded_when_read_to_its_end() -> None:
    @logged_execution
    def execute() -> Any:
        return CrewStreamingOutput(CHUNKS)

    with capture() as cap:
        stream = execute()
        assert not cap.records  # nothing read yet: nothing to record
        assert len(list(stream)) == 3
    r = only(cap)
    assert (r.status, r.result.tokens) == ("completed", CREW_TOKENS)
    assert r.result.extras["streamed"] is True
    assert r.result.extras["stream_chunks"] == 3


def test_a_returned_stream_closed_early_or_failing() -> None:
    @logged_execution
    def execute(fail: BaseException | None = None) -> Any:
        return CrewStreamingOutput(CHUNKS, fail)

    with capture(capture_content=True) as cap:
        stream = iter(execute())
        next(stream)
        stream.close()  # type: ignore[attr-defined]
        with pytest.raises(TimeoutError):
            list(execute(TimeoutError("model timed out")))
    closed, failed = cap.records
    assert (closed.status, closed.result.extras["stream_closed_early"]) == ("completed", True)
    assert closed.result.response == "Sunny "
    assert (failed.status, failed.result.error.type if failed.result.error else None) == (
        "failed", "TimeoutError")


def test_yielded_chunks_give_the_text_and_the_tool_calls() -> None:
    @logged_execution
    def execute() -> Iterator[Any]:
        yield from CHUNKS

    with capture(capture_content=True) as cap:
        list(execute())
    res = only(cap).result
    assert (res.response, res.tokens) == ("Sunny in Paris.", None)
    assert res.tool_calls == [ToolCall(name="get_weather", call_id="call_1")]
    assert res.extras == {"stream_chunks": 3}


def test_detection_and_conformance() -> None:
    crew = rebuild("crew_with_a_failed_tool")
    assert detect_adapter(crew).name == "crewai"
    assert detect_adapter(rebuild("paused_flow")).name == "crewai"
    assert detect_adapter({"raw": "x", "tasks_output": []}).name != "crewai"
    assert ADAPTER.normalize_error(RuntimeError("not ours")) is None
    not_measured = {"model", "provider", "retries", "steps", "memory"}
    check_adapter(get_adapter("crewai"), [
        Sample(crew, unmeasured=not_measured, label="crew, failed tool"),
        Sample(rebuild("agent_kickoff"), unmeasured=not_measured, label="agent kickoff"),
        Sample(rebuild("paused_flow"), unmeasured=not_measured | {"tokens", "tool_calls"},
               label="paused flow"),
        Sample(StreamedItems(CHUNKS), unmeasured=not_measured | {"tokens", "iterations"},
               label="yielded chunks"),
    ])


def test_foreign_results_do_not_import_crewai() -> None:
    from tests.conftest import run_python

    done = run_python(
        "import sys\n"
        "import instrument\n"
        "from instrument.adapters import get_adapter\n"
        "from instrument.adapters.registry import detect_adapter\n"
        "a = get_adapter('crewai')\n"
        "for r in ({'raw': 'x'}, 'text', 3, ValueError('x')):\n"
        "    a.matches(r); detect_adapter(r)\n"
        "a.normalize_error(ValueError('x'))\n"
        "print('crewai' in sys.modules)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


# -- the real thing, in its own environment ------------------------------------------------------


def _side_env() -> Path:
    """A venv with CrewAI and this package's dependencies (reused while it is complete)."""
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = [f"crewai=={CREWAI}", *ours]
    key = hashlib.sha256(repr((wanted, sys.version_info[:2])).encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"instrument-crewai-{key}"
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    marker.write_text("ok\n")
    return python


@pytest.mark.slow
def test_a_real_crew_in_its_own_environment_writes_the_rows(tmp_path: Path) -> None:
    python = _side_env()
    db = tmp_path / "crew.db"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INSTRUMENT_", "PYTEST", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(ROOT), HOME=str(home), CREWAI_DISABLE_TELEMETRY="true",
               CREWAI_TRACING_ENABLED="false", OTEL_SDK_DISABLED="true")
    done = subprocess.run([str(python), str(RECORDED / "crewai_record.py"), "--execute",
                           str(db)], capture_output=True, text=True, timeout=600, env=env,
                          check=False)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    answer = "Sunny in Paris; Oslo unknown."
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "raw": answer, "paused": "HumanFeedbackPending",
        "streamed": ["CrewStreamingOutput", 0, answer]}  # a canned LLM streams no chunks
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        rows = {r["agent_id"]: dict(r) for r in conn.execute("SELECT * FROM agent_executions")}
        logs = {r["agent_id"]: dict(r) for r in conn.execute("SELECT * FROM agent_logs")}
    crew, flow, streamed = rows["forecaster"], rows["reviewer"], rows["streamer"]
    assert (crew["engine"], crew["status"], crew["user_id"]) == ("crewai", "completed", "u-1")
    assert (crew["input_tokens"], crew["output_tokens"], crew["total_tokens"]) == (300, 60, 360)
    details = json.loads(crew["logs"])
    assert details["response"] == "Sunny in Paris; Oslo unknown."
    assert [(c["name"], c["success"]) for c in details["tool_calls"]] == [
        ("get_weather", True), ("broken_tool", False)]
    assert (flow["engine"], flow["status"]) == ("crewai", "paused")
    assert (streamed["engine"], streamed["status"], streamed["total_tokens"]) == (
        "crewai", "completed", 360)
    assert json.loads(streamed["logs"])["extras"]["streamed"] is True
    assert (logs["forecaster"]["status"], logs["reviewer"]["status"]) == ("completed", "paused")
