"""The record fields fixed in December 2026 on the span: names, bounds, statuses, content.

Driven through the real :class:`~instrument.tracing.spans.Tracing` (start, then finish with a
record, as the decorator does) and through the decorator where the result alone carries the
field; every span is also checked against the registry extract.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.trace import StatusCode

from instrument import logged_execution
from instrument.context import ExecutionContext
from instrument.record import ErrorInfo, ExecutionRecord, ExecutionResult, TokenUsage
from instrument.tracing import fields
from instrument.tracing import semconv as sc
from tests.tracing.conftest import Otel
from tests.tracing.semconv_check import check, from_sdk

PARENT = uuid.UUID("00000000-0000-4000-8000-000000000001")
PAUSED_RUN = uuid.UUID("00000000-0000-4000-8000-000000000002")


def _record(ctx: ExecutionContext, result: ExecutionResult, **fields_: Any) -> ExecutionRecord:
    now = dt.datetime.now(dt.UTC)
    return ExecutionRecord(
        execution_id=ctx.execution_id, agent_id=ctx.agent_id, user_id=ctx.user_id,
        agent_name=ctx.agent_name, session_id=ctx.session_id, engine="mapping", name=ctx.name,
        started_at=now, completed_at=now, duration_ms=3.0, result=result, **fields_)


def _finish(otel: Otel, result: ExecutionResult, *, content: bool = False,
            conventions: sc.Conventions = sc.CURRENT, exc: BaseException | None = None,
            ctx: Any = None, **record_fields: Any) -> dict[str, Any]:
    tracing = otel.tracing(content=content, conventions=conventions)
    ctx = ctx or ExecutionContext(uuid.uuid4(), "Support", None, "agent-1", "user-1",
                                  "Support")
    span = tracing.start(ctx)
    tracing.finish(span, _record(ctx, result, **record_fields), exc)
    return dict(otel.span().attributes or {})


def _conformant(otel: Otel) -> None:
    assert check(*from_sdk(otel.spans(), otel.reader.get_metrics_data())) == []


def test_identity_nesting_tags_metadata_and_tier_go_under_our_namespace(otel: Otel) -> None:
    attrs = _finish(
        otel, ExecutionResult(success=True, service_tier="flex", cost_usd=Decimal("0.0123"),
                              price_source="genai-prices 0.2.5"),
        tenant_id="org-9", owner_id="user-owner", parent_execution_id=PARENT,
        resumes_execution_id=PAUSED_RUN, tags=("prod", "eu"),
        metadata={"plan": "pro", "seats": 12, "beta": True, "ratio": 0.5,
                  "regions": ["eu", "us"], "limits": {"rpm": 60}, "none": None})
    assert attrs[sc.TENANT_ID] == "org-9"
    assert attrs[sc.OWNER_ID] == "user-owner"
    assert attrs[sc.PARENT_EXECUTION_ID] == str(PARENT)
    assert attrs[sc.RESUMES_EXECUTION_ID] == str(PAUSED_RUN)
    assert attrs[sc.TAGS] == ("prod", "eu")
    assert attrs[sc.SERVICE_TIER] == "flex"
    meta = {k.removeprefix(sc.METADATA_PREFIX): v for k, v in attrs.items()
            if k.startswith(sc.METADATA_PREFIX)}
    assert meta == {"plan": "pro", "seats": 12, "beta": True, "ratio": 0.5,
                    "regions": ("eu", "us"), "limits": '{"rpm":60}'}  # null: no attribute
    # priced in the background after the span ended: never on it
    assert not [k for k in attrs if "cost" in k or "price" in k]
    _conformant(otel)


def test_absent_fields_stay_absent(otel: Otel) -> None:
    attrs = _finish(otel, ExecutionResult(success=True))
    assert not [k for k in attrs if k.startswith((sc.METADATA_PREFIX, "instrument.tenant",
                                                  "instrument.owner", "instrument.parent",
                                                  "instrument.resumes", "instrument.tags",
                                                  "instrument.service_tier"))]
    assert sc.CONVERSATION_ID not in attrs  # no session: no conversation id, never made up


def test_metadata_and_tags_are_bounded(otel: Otel) -> None:
    big = {f"k{i:03d}": "v" * 5000 for i in range(fields.MAX_METADATA_KEYS + 8)}
    big["k000"] = {"deep": ["x" * 4000]}
    attrs = _finish(otel, ExecutionResult(success=True), metadata=big,
                    tags=tuple(f"t{i}" for i in range(64)))
    meta = [k for k in attrs if k.startswith(sc.METADATA_PREFIX)]
    assert len(meta) == fields.MAX_METADATA_KEYS
    assert attrs[fields.METADATA_KEYS_DROPPED] == 8
    limit = fields.MAX_METADATA_VALUE_CHARS + len("\u2026[truncated]")
    assert all(len(str(attrs[k])) <= limit for k in meta)
    assert str(attrs[sc.METADATA_PREFIX + "k001"]).endswith("\u2026[truncated]")
    assert len(attrs[sc.TAGS]) == 64
    # values OTLP cannot carry as ints travel as text
    otel.exporter.clear()
    attrs = _finish(otel, ExecutionResult(success=True), metadata={"huge": 2**70,
                                                                    "ints": [1, 2**70]})
    assert attrs[sc.METADATA_PREFIX + "huge"] == str(2**70)
    assert attrs[sc.METADATA_PREFIX + "ints"] == json.dumps([1, 2**70], separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class _ContextWithIdentity:
    """An execution context that also carries tenant, owner and parent (the decorator's
    context gains them in the same change)."""

    execution_id: uuid.UUID
    name: str = "Support"
    engine: str | None = None
    agent_id: str | None = None
    user_id: str | None = None
    agent_name: str | None = "Support"
    session_id: str | None = None
    execution_type: str = "manual"
    tenant_id: str | None = "org-1"
    owner_id: str | None = "owner-1"
    parent_execution_id: uuid.UUID | None = PARENT


def test_identity_known_at_start_is_there_for_samplers(otel: Otel) -> None:
    seen: dict[str, Any] = {}

    class AtStart(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            seen.update(span.attributes or {})

    otel.tracer_provider.add_span_processor(AtStart())
    ctx = _ContextWithIdentity(uuid.uuid4())
    attrs = _finish(otel, ExecutionResult(success=True), ctx=ctx, tenant_id="org-1",
                    owner_id="owner-1", parent_execution_id=PARENT)
    assert (seen[sc.TENANT_ID], seen[sc.OWNER_ID], seen[sc.PARENT_EXECUTION_ID]) == (
        "org-1", "owner-1", str(PARENT))
    assert attrs[sc.TENANT_ID] == "org-1"


def test_paused_is_not_an_error(otel: Otel) -> None:
    @logged_execution(agent_name="agent_name")
    def wait_for_approval(agent_name: str) -> ExecutionResult:
        return ExecutionResult(success=True, paused=True, iterations=1)

    with otel.capture() as cap:
        wait_for_approval("Approver")
    assert cap.records[0].status == "paused"
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET
    assert attrs[sc.STATUS] == "paused"
    assert sc.ERROR_TYPE not in attrs
    (point,) = otel.metric_points(sc.METRIC_EXECUTIONS)
    assert point.attributes[sc.STATUS] == "paused"
    (duration,) = otel.histogram(sc.METRIC_INVOCATION_DURATION)
    assert sc.ERROR_TYPE not in duration.attributes
    _conformant(otel)


class BudgetExceeded(Exception):
    """Stands in for instrument.BudgetExceeded: error.type is the class name."""


@pytest.mark.parametrize("raised", [False, True], ids=["record-only", "with-exception"])
def test_refused_is_an_error_of_type_budget_exceeded(otel: Otel, raised: bool) -> None:
    message = "daily limit of $5.00 for user u1 reached ($5.02 spent)"
    result = ExecutionResult(success=False, refused=True,
                             error=ErrorInfo(type="BudgetExceeded", message=message))
    attrs = _finish(otel, result, exc=BudgetExceeded(message) if raised else None)
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"BudgetExceeded: {message}"
    assert attrs[sc.ERROR_TYPE] == "BudgetExceeded"
    assert attrs[sc.STATUS] == "refused"
    assert [e.name for e in span.events] == (
        ["gen_ai.client.operation.exception"] if raised else [])
    (duration,) = otel.histogram(sc.METRIC_INVOCATION_DURATION)
    assert duration.attributes[sc.ERROR_TYPE] == "BudgetExceeded"
    _conformant(otel)


def test_a_refusal_without_an_error_still_says_budget_exceeded(otel: Otel) -> None:
    attrs = _finish(otel, ExecutionResult(success=False, refused=True))
    assert attrs[sc.ERROR_TYPE] == "BudgetExceeded"


@pytest.mark.parametrize("content", [True, False])
def test_input_follows_the_content_policy_like_the_response(otel: Otel, content: bool) -> None:
    result = ExecutionResult(success=True, input="What is the weather in Oslo?",
                             response="Sunny.")
    attrs = _finish(otel, result, content=content)
    if not content:
        assert sc.INPUT_MESSAGES not in attrs
        assert sc.OUTPUT_MESSAGES not in attrs
        return
    assert json.loads(attrs[sc.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is the weather in Oslo?"}]}]
    assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}]}]
    _conformant(otel)


def test_a_long_input_is_cut_and_stays_json(otel: Otel) -> None:
    attrs = _finish(otel, ExecutionResult(success=True, input="x" * 50_000), content=True)
    value = attrs[sc.INPUT_MESSAGES]
    assert len(value) <= 8192
    assert json.loads(value)[0]["parts"][0]["content"].endswith("\u2026[truncated]")


def test_cache_writes_go_where_the_token_breakdown_goes(otel: Otel) -> None:
    tokens = TokenUsage(input_tokens=1200, output_tokens=80, cached_input_tokens=600,
                        cache_write_input_tokens=500, reasoning_tokens=20)
    attrs = _finish(otel, ExecutionResult(success=True, tokens=tokens))
    assert attrs[sc.USAGE_CACHE_WRITE_INPUT_TOKENS] == 500
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 600
    # the conventions keep the breakdown on inference spans, not on invocations
    assert "gen_ai.usage.cache_write.input_tokens" not in attrs
    _conformant(otel)
    otel.exporter.clear()
    attrs = _finish(otel, ExecutionResult(success=True, tokens=tokens),
                    conventions=sc.PREVIOUS)
    assert attrs[sc.PREV_USAGE_CACHE_CREATION_INPUT_TOKENS] == 500  # the v1.41 name
    assert sc.USAGE_CACHE_WRITE_INPUT_TOKENS not in attrs


def test_through_the_decorator_an_agent_inside_a_workflow_names_its_parent(otel: Otel) -> None:
    at_start: dict[str, dict[str, Any]] = {}

    class AtStart(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            at_start[span.name] = dict(span.attributes or {})

    otel.tracer_provider.add_span_processor(AtStart())

    @logged_execution(agent_name="agent_name", tenant_id="tenant", owner_id="owner",
                      tags=["nightly"], metadata={"plan": "pro"})
    def writer(agent_name: str, tenant: str, owner: str) -> dict[str, Any]:
        return {"success": True}

    @logged_execution(engine="orchestrator", name="report")
    def report() -> dict[str, Any]:
        writer("Writer", "org-1", "owner-1")
        return {"success": True}

    with otel.capture() as cap:
        report()
    outer = next(r for r in cap.records if r.name == "report")
    attrs = dict(otel.span("invoke_agent").attributes or {})
    assert attrs[sc.PARENT_EXECUTION_ID] == str(outer.execution_id)
    assert (attrs[sc.TENANT_ID], attrs[sc.OWNER_ID]) == ("org-1", "owner-1")
    assert attrs[sc.TAGS] == ("nightly",)
    assert attrs[sc.METADATA_PREFIX + "plan"] == "pro"
    # tenant, owner and parent are known before the executor runs: samplers see them
    started = at_start["invoke_agent Writer"]
    assert (started[sc.TENANT_ID], started[sc.PARENT_EXECUTION_ID]) == (
        "org-1", str(outer.execution_id))
    _conformant(otel)
