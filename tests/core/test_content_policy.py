"""Content capture: the configured per-sink policy, and the decorator's per-executor override.

The span and the database get separate views of one call: the span shows the response only
when spans may, and the record handed to the pipeline (spool, stores, custom writers) carries it
only when the database may.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument import logged_execution
from instrument.testing import capture
from instrument.tracing.spans import Tracing

ANSWER = {"success": True, "response": "the quarterly plan"}


def _run(policy: str, override: bool | None) -> tuple[str | None, bool]:
    """(response the database side received, whether the span carried the text)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, content_to_spans=policy in ("spans", "all"))

    @logged_execution(capture_content=override)
    def run() -> dict[str, Any]:
        return ANSWER

    with capture(capture_content=policy, tracing=tracing) as cap:
        assert run() is ANSWER
    (span,) = exporter.get_finished_spans()
    on_span = "the quarterly plan" in str(dict(span.attributes or {}))
    return cap.records[0].result.response, on_span


@pytest.mark.parametrize(
    ("policy", "override", "db_text", "span_text"),
    [
        ("none", None, None, False),
        ("spans", None, None, True),
        ("db", None, "the quarterly plan", False),
        ("all", None, "the quarterly plan", True),
        ("none", True, "the quarterly plan", True),   # this executor opts in everywhere
        ("all", False, None, False),                  # this executor opts out everywhere
    ],
)
def test_each_sink_gets_only_what_its_policy_allows(
    policy: str, override: bool | None, db_text: str | None, span_text: bool
) -> None:
    assert _run(policy, override) == (db_text, span_text)
