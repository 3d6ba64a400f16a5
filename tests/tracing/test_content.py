"""Content capture on spans: off by default, redacted, truncated as valid JSON, per-sink policy."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from instrument import logged_execution
from instrument.config import resolve_settings
from instrument.record import ExecutionResult
from instrument.redact import Redactor
from instrument.tracing.content import TRUNCATED, ContentEncoder
from tests.tracing.conftest import Otel, children_of, tracing_for

SECRET = "sk-proj0123456789abcdefXYZ"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).isoformat()


@logged_execution(agent_name="agent_name")
def answer(agent_name: str, result: dict[str, Any]) -> dict[str, Any]:
    return result


def _messages(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    raw = attrs["gen_ai.output.messages"]
    assert isinstance(raw, str)
    value = json.loads(raw)
    assert isinstance(value, list)
    return value


def test_content_is_off_by_default(otel: Otel) -> None:
    with otel.capture() as cap:
        answer("Quiet", {"success": True, "response": "the secret plan",
                         "tool_calls": [{"name": "t", "call_id": "1", "started_at": T0,
                                         "duration_ms": 1}],
                         "extras": {"tool_arguments": {"1": {"q": "private"}}}})
    spans = otel.spans()
    for span in spans:
        attrs = dict(span.attributes or {})
        assert "gen_ai.output.messages" not in attrs
        assert "gen_ai.tool.call.arguments" not in attrs
        assert "the secret plan" not in json.dumps(attrs)
    # and the decorator dropped the response: no sink wanted it
    assert cap.records[0].result.response is None


def test_response_goes_on_the_span_redacted_as_output_messages(otel: Otel) -> None:
    with otel.capture(content=True):
        answer("Talker", {"success": True, "response": f"use key {SECRET} \"quoted\"\n"})
    attrs = dict(otel.span().attributes or {})
    assert _messages(attrs) == [{"role": "assistant", "parts": [
        {"type": "text", "content": 'use key [REDACTED] "quoted"\n'}]}]


def test_long_response_is_truncated_and_still_json(otel: Otel) -> None:
    text = ('"\\' * 50) + "é" * 5000
    with otel.capture(content=True, limit=300):
        answer("Verbose", {"success": True, "response": text})
    raw = dict(otel.span().attributes or {})["gen_ai.output.messages"]
    assert isinstance(raw, str)
    assert len(raw) <= 300
    content = json.loads(raw)[0]["parts"][0]["content"]
    assert content.endswith(TRUNCATED)
    assert text.startswith(content[: -len(TRUNCATED)])


def test_tool_arguments_go_on_tool_spans_redacted(otel: Otel) -> None:
    calls = [
        {"name": "search", "call_id": "c1", "started_at": T0, "duration_ms": 3},
        {"name": "shell", "call_id": "c2", "started_at": T0, "duration_ms": 3},
        {"name": "raw", "call_id": "c3", "started_at": T0, "duration_ms": 3},
        {"name": "untimed", "call_id": "c4"},
    ]
    args = {"c1": {"query": "weather", "api_key": SECRET},
            "c2": json.dumps({"cmd": "ls", "token": SECRET}),  # OpenAI style: a JSON string
            "c3": "not json at all",
            "c4": {"x": 1}}
    with otel.capture(content=True):
        answer("Tooler", {"success": True, "tool_calls": calls, "extras": {"tool_arguments": args}})
    parent = otel.span()
    tools = {s.name: dict(s.attributes or {}) for s in children_of(otel.spans(), parent)}
    c1 = json.loads(tools["execute_tool search"]["gen_ai.tool.call.arguments"])
    assert c1["query"] == "weather"
    assert SECRET not in json.dumps(c1)
    c2 = json.loads(tools["execute_tool shell"]["gen_ai.tool.call.arguments"])
    assert c2["cmd"] == "ls"
    assert SECRET not in json.dumps(c2)
    assert json.loads(tools["execute_tool raw"]["gen_ai.tool.call.arguments"]) == "not json at all"
    untimed = json.loads(dict(parent.attributes or {})["instrument.tool_calls.arguments"])
    assert untimed == [{"name": "untimed", "call_id": "c4", "arguments": {"x": 1}}]


def test_tool_arguments_aligned_by_position(otel: Otel) -> None:
    calls = [{"name": "a", "started_at": T0, "duration_ms": 1},
             {"name": "b", "started_at": T0, "duration_ms": 1}]
    with otel.capture(content=True):
        answer("Pos", {"success": True, "tool_calls": calls,
                       "extras": {"tool_arguments": [{"n": 1}, {"n": 2}]}})
    tools = {s.name: dict(s.attributes or {}) for s in children_of(otel.spans(), otel.span())}
    assert json.loads(tools["execute_tool b"]["gen_ai.tool.call.arguments"]) == {"n": 2}


def test_policy_db_only_keeps_the_response_off_spans(otel: Otel) -> None:
    # capture_content="db": the database may keep the text, spans must not.
    with otel.capture(content=False, capture_content="db") as cap:
        answer("DbOnly", {"success": True, "response": "for the database"})
    assert "gen_ai.output.messages" not in dict(otel.span().attributes or {})
    assert cap.records[0].result.response == "for the database"


def test_policy_spans_only_reaches_the_span(otel: Otel) -> None:
    with otel.capture(content=True, capture_content="spans") as cap:
        answer("SpanOnly", {"success": True, "response": "for the trace"})
    assert _messages(dict(otel.span().attributes or {}))[0]["parts"][0]["content"] == (
        "for the trace")
    # the record handed to the pipeline (spool, stores, custom writers) does not carry it
    assert cap.records[0].result.response is None


def test_from_settings_follows_the_content_policy() -> None:
    def spans_on(**environ: str) -> bool:
        tracing = tracing_for(resolve_settings(environ=environ))
        assert tracing is not None
        return tracing.content is not None

    assert not spans_on()
    assert spans_on(INSTRUMENT_CAPTURE_CONTENT="true")
    assert spans_on(INSTRUMENT_CAPTURE_CONTENT="spans")
    assert not spans_on(INSTRUMENT_CAPTURE_CONTENT="db")
    assert spans_on(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_ONLY")
    assert not spans_on(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="NO_CONTENT")
    assert not spans_on(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
                        INSTRUMENT_CAPTURE_CONTENT="false")


def test_attribute_value_limit_from_the_environment_bounds_content() -> None:
    tracing = tracing_for(resolve_settings(environ={
        "INSTRUMENT_CAPTURE_CONTENT": "true", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "120"}))
    assert tracing is not None
    assert tracing.content is not None
    assert tracing.content.limit == 120


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=3000), args=json_values, limit=st.integers(min_value=0,
                                                                        max_value=2000))
def test_encoded_content_is_always_valid_json_within_the_limit(text: str, args: object,
                                                               limit: int) -> None:
    enc = ContentEncoder(Redactor(), limit)
    result = ExecutionResult(success=True, response=text, extras={"tool_arguments": [args]},
                             tool_calls=[{"name": "t"}])  # type: ignore[list-item]
    assert result.tool_calls is not None
    for encoded in (enc.output_messages(result), enc.tool_arguments(result,
                                                                      result.tool_calls[0])):
        if encoded is None:
            continue
        assert len(encoded) <= limit
        json.loads(encoded)
