"""Send a handful of decorated executions to Jaeger (or any OTLP collector) and print the links.

Start Jaeger first (``docker compose -f examples/jaeger/docker-compose.yml up -d jaeger``), then
``python examples/jaeger/run.py``. Defaults when unset: OTLP over HTTP to
``http://localhost:4318``, metrics off (Jaeger accepts traces only), service ``jaeger-demo``,
records in ``<tmp>/jaeger-demo.db``. Every standard ``OTEL_*`` variable overrides them.

What it runs, one trace each:

- ``invoke_agent Researcher``: a function-calling agent whose two tool calls carry timings, so
  they appear as ``execute_tool`` children at their real times;
- ``invoke_workflow nightly-report``: a workflow-orchestrator result (step counts);
- ``invoke_agent Flaky``: an executor that raises (status ERROR, a
  ``gen_ai.client.operation.exception`` event);
- ``invoke_agent Streamer``: a generator executor, normalized by a small custom adapter.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import instrument
from instrument import ExecutionRecord, ExecutionResult, TokenUsage, logged_execution
from instrument.adapters import StreamedItems, register_adapter

DEFAULTS = {
    "OTEL_SERVICE_NAME": "jaeger-demo",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "INSTRUMENT_DATABASE_URL": f"sqlite:///{Path(tempfile.gettempdir()) / 'jaeger-demo.db'}",
}


# -- executors ---------------------------------------------------------------------------------


def _tool(name: str, seconds: float) -> dict[str, Any]:
    """Run a (simulated) tool and report it the way an executor would: with its timings."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    time.sleep(seconds)
    plugin, _, action = name.partition(".")
    return {"name": name, "plugin": plugin, "action": action,
            "success": True, "started_at": started.isoformat(),
            "duration_ms": (time.perf_counter() - t0) * 1000, "items_returned": 3}


@logged_execution(agent_id="agent_id", agent_name=instrument.literal("Researcher"),
                  user_id="user_id", session_id="session_id")
def research(agent_id: str, user_id: str, session_id: str, question: str) -> dict[str, Any]:
    calls = [_tool("web.search", 0.05), _tool("docs.fetch", 0.03)]
    return {"success": True, "model": "gpt-4o-mini", "provider": "openai", "iterations": 3,
            "tokens": {"input_tokens": 1830, "output_tokens": 214, "cached_input_tokens": 1024},
            "tool_calls": calls, "response": f"Answer to {question!r}"}


@logged_execution(agent_id="agent_id", name="nightly-report", execution_type="scheduled")
def nightly_report(agent_id: str) -> dict[str, Any]:
    # The workflow orchestrator's result shape (WorkflowExecutionResult).
    return {"success": True, "executionId": "wf-run-1", "stepsCompleted": 4, "stepsFailed": 0,
            "stepsSkipped": 1, "totalExecutionTime": 420, "totalTokensUsed": 5120}


@logged_execution(agent_id="agent_id", agent_name=instrument.literal("Flaky"))
def flaky(agent_id: str) -> dict[str, Any]:
    raise TimeoutError("model gateway timed out after 30s")


class TokenStream:
    """A custom adapter: a generator executor yields text pieces, then a usage dict."""

    name = "token_stream"

    def matches(self, result: object) -> bool:
        return isinstance(result, StreamedItems) and any(
            isinstance(i, dict) and "usage" in i for i in result)

    def normalize(self, result: object) -> ExecutionResult:
        assert isinstance(result, StreamedItems)
        usage = next(i["usage"] for i in result if isinstance(i, dict) and "usage" in i)
        return ExecutionResult(success=True, provider="openai", model="gpt-4o-mini",
                               tokens=TokenUsage(**usage),
                               response="".join(i for i in result if isinstance(i, str)))


@logged_execution(agent_id="agent_id", agent_name=instrument.literal("Streamer"))
def stream(agent_id: str) -> Iterator[Any]:
    for piece in ("Streaming ", "into ", "Jaeger."):
        time.sleep(0.01)
        yield piece
    yield {"usage": {"input_tokens": 12, "output_tokens": 3}}


# -- main --------------------------------------------------------------------------------------


class Collect:
    """A custom writer that keeps the records, to print where each one is in Jaeger."""

    name = "collect"

    def __init__(self) -> None:
        self.records: list[ExecutionRecord] = []

    def write(self, records: Sequence[ExecutionRecord]) -> None:
        self.records.extend(records)


def main() -> int:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    register_adapter(TokenStream(), replace=True)
    collect = Collect()
    instrument.configure(writers=["executions", "logs", "stats", "intensity", collect])

    session = f"demo-{random.randrange(10**6):06d}"  # a label to search by, not a secret
    research("agent-research", "user-1", session, "What is OTLP?")
    nightly_report("agent-nightly")
    # The host sees its own exception; the span and the record say "failed".
    with contextlib.suppress(TimeoutError):
        flaky("agent-flaky")
    print("streamed:", "".join(p for p in stream("agent-stream") if isinstance(p, str)))

    instrument.flush(10.0)
    ui = os.environ.get("JAEGER_UI", "http://localhost:16686")
    for r in collect.records:
        print(f"{r.status:9} {r.engine:12} {r.name:15} execution_id={r.execution_id} "
              f"trace: {ui}/trace/{r.trace_id}")
    print(f"search: {ui}/search?service={os.environ['OTEL_SERVICE_NAME']}"
          f"&tags=%7B%22gen_ai.conversation.id%22%3A%22{session}%22%7D")
    ok = instrument.shutdown(10.0)  # flushes the spans to the collector, bounded
    if not ok:
        print("warning: shutdown ran out of time (is the collector reachable?)",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
