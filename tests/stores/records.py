"""Records of every built-in engine shape, built directly with the models (no decorator)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from instrument.record import (
    ErrorInfo,
    ExecutionRecord,
    ExecutionResult,
    MemoryUsage,
    StepCounts,
    TokenUsage,
    ToolCall,
    WorkflowShape,
)

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
ALL_WRITERS = ("executions", "logs", "stats", "intensity")


def orchestrator(i: int, *, agent_id: str = "agent-orch", user_id: str | None = "user-1",
                 ok: bool = True, tokens: int | None = 1200, rng: random.Random | None = None,
                 writers: tuple[str, ...] | None = None) -> ExecutionRecord:
    eid = uuid.UUID(int=(rng or random.Random(i)).getrandbits(128), version=4)
    return ExecutionRecord(
        execution_id=eid, agent_id=agent_id, user_id=user_id, agent_name="Inbox triage",
        session_id=f"s-{i}", execution_type="scheduled", engine="orchestrator",
        name="Inbox triage", started_at=T0 + timedelta(seconds=i),
        completed_at=T0 + timedelta(seconds=i, milliseconds=2500), duration_ms=2500.5 + i,
        trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331",
        writers=writers,
        result=ExecutionResult(
            success=ok,
            error=None if ok else ErrorInfo(type="StepFailed", message=f"step {i} failed"),
            tokens=TokenUsage(total_tokens=tokens) if tokens is not None else None,
            steps=StepCounts(completed=3, failed=0 if ok else 1, skipped=1),
            workflow=WorkflowShape(steps=5, branches=1, loops=0, parallel=2),
            model="workflow_orchestrator", provider="neuronforge",
            response="Workflow completed with secret text",
        ),
    )


def agentkit(i: int, *, agent_id: str = "agent-kit", user_id: str | None = "user-2",
             ok: bool = True, tokens: tuple[int, int] | None = (900, 2300),
             rng: random.Random | None = None,
             writers: tuple[str, ...] | None = None) -> ExecutionRecord:
    eid = uuid.UUID(int=(rng or random.Random(10_000 + i)).getrandbits(128), version=4)
    return ExecutionRecord(
        execution_id=eid, agent_id=agent_id, user_id=user_id, agent_name="Sales assistant",
        session_id=f"k-{i}", execution_type="api", engine="agentkit", name="run_agentkit",
        started_at=T0 + timedelta(seconds=i), completed_at=T0 + timedelta(seconds=i + 4),
        duration_ms=4000.0 + i, writers=writers,
        result=ExecutionResult(
            success=ok,
            error=None if ok else ErrorInfo(type="TimeoutError", message="LLM timed out"),
            tokens=TokenUsage(input_tokens=tokens[0], output_tokens=tokens[1],
                              total_tokens=tokens[0] + tokens[1], cached_input_tokens=100)
            if tokens is not None else None,
            iterations=3, retries=1 if not ok else 0,
            tool_calls=[
                ToolCall(name="gmail.list", plugin="gmail", action="list", call_id="c1",
                         success=True, duration_ms=120.25, items_returned=7),
                ToolCall(name="crm.update", plugin="crm", action="update", call_id="c2",
                         success=ok, duration_ms=80.0, error=None if ok else "HTTP 500"),
            ],
            model="gpt-4o", provider="openai", response="Dear customer, ...",
            memory=MemoryUsage(tokens=300, entry_count=4, types=["summary", "fact"]),
            extras={"finish_reason": "stop"},
        ),
    )


def mapping(i: int, *, agent_id: str | None = "agent-map", user_id: str | None = None,
            ok: bool = True, writers: tuple[str, ...] | None = None) -> ExecutionRecord:
    """A plain-dict result: nothing measured but success."""
    return ExecutionRecord(
        execution_id=uuid.UUID(int=random.Random(20_000 + i).getrandbits(128), version=4),
        agent_id=agent_id, user_id=user_id, engine="mapping", name="custom_loop",
        started_at=T0 + timedelta(seconds=i),
        completed_at=T0 + timedelta(seconds=i, microseconds=500),
        duration_ms=0.5, writers=writers,
        result=ExecutionResult(
            success=ok, error=None if ok else ErrorInfo(type="KeyError", message="'x'"),
        ),
    )


def mixed_run() -> list[ExecutionRecord]:
    """Orchestrator, agentkit and mapping records; some failed; some with tokens unknown."""
    return [
        orchestrator(1), orchestrator(2, ok=False), orchestrator(3, tokens=None),
        agentkit(1), agentkit(2, ok=False, tokens=None), agentkit(3, tokens=(1, 1000)),
        agentkit(4, agent_id="agent-orch"),
        mapping(1), mapping(2, ok=False), mapping(3, agent_id=None),
    ]


def total(record: ExecutionRecord) -> int | None:
    tok = record.result.tokens
    return None if tok is None else tok.total_tokens


@dataclass
class Expected:
    run_count: int = 0
    success_count: int = 0
    failure_count: int = 0
    total_tokens: int = 0
    token_run_count: int = 0
    total_duration_ms: int = 0


def expected_stats(records: list[ExecutionRecord]) -> dict[str, Expected]:
    """Per-agent sums computed independently of the writers under test."""
    out: dict[str, Expected] = {}
    for r in records:
        if r.agent_id is None:
            continue
        e = out.setdefault(r.agent_id, Expected())
        e.run_count += 1
        e.success_count += r.result.success
        e.failure_count += not r.result.success
        t = total(r)
        e.total_tokens += t or 0
        e.token_run_count += t is not None
        e.total_duration_ms += int(r.duration_ms + 0.5)
    return out


def accounting(i: int, *, user_id: str | None = "user-a", tenant_id: str | None = "tenant-1",
               agent_id: str | None = "agent-acct", owner_id: str | None = None,
               status: str = "completed", cost: str | None = "0.000123",
               tokens: tuple[int, int] | None = (1000, 200), started: datetime | None = None,
               writers: tuple[str, ...] | None = None) -> ExecutionRecord:
    """A record with the December 2026 fields: tenant, owner, exact cost, a status of
    completed | failed | paused | refused (a refused one measured nothing, as the SDK
    records it)."""
    refused = status == "refused"
    started = started or T0 + timedelta(seconds=i)
    return ExecutionRecord(
        execution_id=uuid.UUID(int=random.Random(30_000 + i).getrandbits(128), version=4),
        agent_id=agent_id, user_id=user_id, tenant_id=tenant_id, owner_id=owner_id,
        engine="mapping", name="priced", started_at=started,
        completed_at=started + timedelta(milliseconds=800), duration_ms=0.0 if refused else 800.0,
        writers=writers,
        result=ExecutionResult(
            success=status in ("completed", "paused"), paused=status == "paused",
            refused=refused,
            error=ErrorInfo(type="BudgetExceeded", message="over the limit") if refused
            else ErrorInfo(type="ToolError", message="failed") if status == "failed" else None,
            tokens=None if tokens is None or refused else TokenUsage(
                input_tokens=tokens[0], output_tokens=tokens[1],
                total_tokens=tokens[0] + tokens[1], cached_input_tokens=tokens[0] // 4,
                reasoning_tokens=tokens[1] // 2, cache_write_input_tokens=tokens[0] // 10),
            model="gpt-4o-mini", request_model="gpt-4o-mini", service_tier="default",
            provider="openai",
            cost_usd=None if cost is None or refused else Decimal(cost),
            price_source=None if cost is None or refused else "genai-prices 0.2.5",
        ),
    )
