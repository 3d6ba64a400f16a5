"""Hypothesis strategies for random execution histories, and tolerant comparisons."""

from __future__ import annotations

import math
import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from instrument import ais
from instrument.record import (
    ExecutionRecord,
    ExecutionResult,
    MemoryUsage,
    TokenUsage,
    ToolCall,
    WorkflowShape,
)

AGENTS = ("agent-a", "agent-b", "agent-c")
PLUGINS = ("gmail", "slack", "notion", "github", "")
MEMORY_TYPES = ("episodic", "semantic", "summary", "fact")
BASE = datetime(2026, 1, 1, tzinfo=UTC)

small = st.integers(min_value=0, max_value=50)
opt_small = st.none() | small
opt_tokens = st.none() | st.integers(min_value=0, max_value=20_000)
durations = st.floats(min_value=0, max_value=120_000, allow_nan=False, allow_infinity=False) | (
    # hostile values both paths must sanitize alike (subnormal, negative, huge, non-finite)
    st.sampled_from([5e-324, 1e-7, -1.0, 1e15, math.inf, -math.inf, math.nan]))


@st.composite
def records(draw: st.DrawFn, agents: tuple[str | None, ...] = (*AGENTS, None)
            ) -> ExecutionRecord:
    """One record; every optional dimension is independently measured or not (None)."""
    # few distinct instants, so ties on completed_at are common (broken by execution_id)
    minute = draw(st.integers(min_value=0, max_value=6))
    offset = draw(st.sampled_from([0, 2, -5, None]))
    completed = BASE + timedelta(minutes=minute)
    # other offsets must order like UTC; a naive datetime means UTC (both paths)
    completed = (completed.replace(tzinfo=None) if offset is None
                 else completed.astimezone(timezone(timedelta(hours=offset))))
    tokens = draw(st.none() | st.builds(TokenUsage, input_tokens=opt_tokens,
                                        output_tokens=opt_tokens, total_tokens=opt_tokens))
    calls = draw(st.none() | st.lists(
        st.builds(ToolCall, name=st.just("tool"), plugin=st.none() | st.sampled_from(PLUGINS)),
        max_size=6))
    workflow = draw(st.none() | st.builds(WorkflowShape, steps=opt_small, branches=opt_small,
                                          loops=opt_small, parallel=opt_small))
    memory = draw(st.none() | st.builds(
        MemoryUsage, tokens=opt_tokens, entry_count=opt_small,
        types=st.none() | st.lists(st.sampled_from(MEMORY_TYPES), max_size=3)))
    result = ExecutionResult(
        success=draw(st.booleans()),
        tokens=tokens,
        iterations=draw(st.none() | st.integers(min_value=0, max_value=15)),
        retries=draw(st.none() | st.integers(min_value=0, max_value=4)),
        tool_calls=calls,
        orchestration_ms=draw(st.none() | durations),
        workflow=workflow,
        memory=memory,
    )
    duration = draw(durations)
    return ExecutionRecord(
        execution_id=uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1))),
        agent_id=draw(st.sampled_from(agents)),
        user_id="user-1",
        engine="test",
        name="run",
        started_at=completed - timedelta(
            milliseconds=min(duration, 1e6) if math.isfinite(duration) else 0),
        completed_at=completed,
        duration_ms=duration,
        result=result,
    )


def unique_by_id(recs: list[ExecutionRecord]) -> list[ExecutionRecord]:
    seen: dict[uuid.UUID, ExecutionRecord] = {}
    for r in recs:
        seen.setdefault(r.execution_id, r)
    return list(seen.values())


histories = st.lists(records(), min_size=0, max_size=40).map(unique_by_id)


def close(a: Any, b: Any, tol: float = 1e-9) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return bool(a == b)


def assert_aggregates_close(a: ais.Aggregates, b: ais.Aggregates) -> None:
    for f in fields(ais.Aggregates):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert close(x, y), f"{f.name}: {x!r} != {y!r}"


def assert_values_close(a: dict[str, Any], b: dict[str, Any], keys: Any = None) -> None:
    for k in keys or a:
        x, y = a[k], b[k]
        if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), f"{k}: {x!r} != {y!r}"
        else:
            assert x == y, f"{k}: {x!r} != {y!r}"


def random_history(n: int, seed: int) -> list[ExecutionRecord]:
    """A deterministic pseudo-random history of `n` records (for the database tests)."""
    import random

    rnd = random.Random(seed)

    def maybe(value: Any, p: float = 0.25) -> Any:
        return None if rnd.random() < p else value

    out = []
    for _ in range(n):
        completed = BASE + timedelta(minutes=rnd.randint(0, 30))
        tok = maybe(TokenUsage(input_tokens=maybe(rnd.randint(0, 5000), 0.1),
                               output_tokens=maybe(rnd.randint(0, 3000), 0.1),
                               total_tokens=maybe(rnd.randint(0, 9000), 0.6)))
        calls = maybe([ToolCall(name="t", plugin=maybe(rnd.choice(PLUGINS)))
                       for _ in range(rnd.randint(0, 5))])
        wf = maybe(WorkflowShape(steps=maybe(rnd.randint(0, 30)), branches=maybe(rnd.randint(0, 9)),
                                 loops=maybe(rnd.randint(0, 60)),
                                 parallel=maybe(rnd.randint(0, 6))))
        mem = maybe(MemoryUsage(tokens=maybe(rnd.randint(0, 4000)),
                                entry_count=maybe(rnd.randint(0, 30)),
                                types=maybe(rnd.sample(MEMORY_TYPES, rnd.randint(0, 3)))))
        duration = rnd.uniform(0, 60_000)
        out.append(ExecutionRecord(
            execution_id=uuid.UUID(int=rnd.getrandbits(128)),
            agent_id=rnd.choice((*AGENTS, None)),
            user_id="user-1", engine="test", name="run",
            started_at=completed - timedelta(milliseconds=duration), completed_at=completed,
            duration_ms=duration,
            result=ExecutionResult(
                success=rnd.random() < 0.8, tokens=tok,
                iterations=maybe(rnd.randint(1, 12)), retries=maybe(rnd.randint(0, 3)),
                tool_calls=calls, orchestration_ms=maybe(rnd.uniform(0, 8000)),
                workflow=wf, memory=mem)))
    return out
