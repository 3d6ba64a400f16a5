"""Property: for any record, instrument_ingest (SQL) writes exactly the Python writers' rows.

Records carry every field of schema v6 too (tenant, owner, nesting, tags, metadata, exact cost,
input text, paused and refused statuses), so the new columns are held to the reference as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

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
from instrument.stores.postgres.store import PostgresStore
from instrument.stores.reference.executions import execution_row
from instrument.stores.reference.logs import log_row
from instrument.stores.sqlite.store import SQLiteStore
from tests.stores.conftest import Store, rows

# Postgres text cannot hold NUL; that case has its own test.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)
INT = st.integers(0, 2**31 - 1)
SMALL = st.none() | st.integers(0, 1000)
# NaN and infinities reach stores as null (records encode them so); both paths must agree.
ODD = st.sampled_from([float("nan"), float("inf"), float("-inf")])
FLOAT = st.floats(0, 1e9, allow_nan=False, allow_infinity=False) | ODD
JSON_SCALAR = st.none() | st.booleans() | st.integers(-1000, 1000) | TEXT | FLOAT
#: Costs as genai-prices gives them: many decimal places, any scale (exact in both stores).
COST = st.decimals(min_value=0, max_value=10_000, places=12, allow_nan=False,
                   allow_infinity=False) | st.sampled_from([Decimal("1E-7"), Decimal("0.10")])


@st.composite
def records(draw: st.DrawFn) -> ExecutionRecord:
    ok = draw(st.booleans())
    tokens = draw(st.none() | st.builds(
        TokenUsage, input_tokens=st.none() | INT.map(lambda v: v // 4),
        output_tokens=st.none() | INT.map(lambda v: v // 4),
        total_tokens=st.none() | INT.map(lambda v: v // 2), cached_input_tokens=SMALL,
        reasoning_tokens=SMALL, cache_write_input_tokens=SMALL))
    calls = draw(st.none() | st.lists(st.builds(
        ToolCall, name=TEXT, plugin=st.none() | TEXT, action=st.none() | TEXT,
        call_id=st.none() | TEXT, success=st.none() | st.booleans(),
        duration_ms=st.none() | FLOAT, error=st.none() | TEXT, items_returned=SMALL),
        max_size=3))
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=draw(st.integers(0, 10**12)))
    result = ExecutionResult(
        success=ok,
        error=draw(st.none() | st.builds(ErrorInfo, type=TEXT, message=TEXT)),
        tokens=tokens, iterations=draw(SMALL), retries=draw(SMALL), tool_calls=calls,
        model=draw(st.none() | TEXT), provider=draw(st.none() | TEXT),
        response=draw(st.none() | TEXT),
        memory=draw(st.none() | st.builds(MemoryUsage, tokens=SMALL, entry_count=SMALL,
                                           types=st.none() | st.lists(TEXT, max_size=2))),
        steps=draw(st.none() | st.builds(StepCounts, completed=SMALL, failed=SMALL,
                                          skipped=SMALL)),
        workflow=draw(st.none() | st.builds(WorkflowShape, steps=SMALL, branches=SMALL,
                                             loops=SMALL, parallel=SMALL)),
        orchestration_ms=draw(st.none() | FLOAT),
        extras=draw(st.dictionaries(TEXT, JSON_SCALAR | st.lists(JSON_SCALAR, max_size=2),
                                    max_size=3)),
        request_model=draw(st.none() | TEXT), service_tier=draw(st.none() | TEXT),
        input=draw(st.none() | TEXT), paused=draw(st.booleans()), refused=draw(st.booleans()),
        cost_usd=draw(st.none() | COST), price_source=draw(st.none() | TEXT),
    )
    return ExecutionRecord(
        execution_id=uuid.uuid4(), agent_id=draw(st.none() | TEXT),
        user_id=draw(st.none() | TEXT), agent_name=draw(st.none() | TEXT),
        session_id=draw(st.none() | TEXT), execution_type=draw(TEXT),
        engine=draw(st.sampled_from(["agentkit", "orchestrator", "mapping", "x-ünï"])),
        name=draw(TEXT), started_at=start,
        completed_at=start + timedelta(milliseconds=draw(st.integers(0, 10**6))),
        duration_ms=draw(st.floats(0, 1e8, allow_nan=False) | ODD),
        trace_id=draw(st.none() | TEXT), span_id=draw(st.none() | TEXT), result=result,
        tenant_id=draw(st.none() | TEXT), owner_id=draw(st.none() | TEXT),
        parent_execution_id=draw(st.none() | st.uuids()),
        resumes_execution_id=draw(st.none() | st.uuids()),
        tags=draw(st.none() | st.lists(TEXT, max_size=3).map(tuple)),
        metadata=draw(st.none() | st.dictionaries(
            TEXT, JSON_SCALAR | st.lists(JSON_SCALAR, max_size=2), max_size=3)))


@pytest.fixture(scope="module")
def pg_store(pg_admin_url: str) -> Iterator[PostgresStore]:
    import psycopg

    name = f"instr_parity_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    store = PostgresStore(pg_admin_url.rsplit("/", 1)[0] + "/" + name, capture_content=True)
    store.migrate()
    yield store
    store.close()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def _norm(row: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, raw in row.items():
        v = raw
        if k.endswith("_at") and isinstance(raw, str):  # SQLite keeps ISO 8601 text
            v = datetime.fromisoformat(raw)
        out[k] = v.astimezone(UTC) if isinstance(v, datetime) else v
    return out


def _check(store: Store, rec: ExecutionRecord) -> None:
    assert store.apply([rec], ("executions", "logs")).applied == 1
    eid = str(rec.execution_id)
    got = next(r for r in rows(store, "agent_executions", "created_at desc") if r["id"] == eid)
    want = execution_row(rec, capture_content=True)
    assert _norm({k: got[k] for k in want}) == _norm(want)
    got_log = next(r for r in rows(store, "agent_logs", "created_at desc")
                   if r["execution_id"] == eid)
    want_log = log_row(rec, capture_content=True)
    assert {k: got_log[k] for k in want_log} == want_log


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=records())
def test_postgres_sql_writes_the_python_rows(pg_store: PostgresStore,
                                             rec: ExecutionRecord) -> None:
    _check(pg_store, rec)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rec=records())
def test_sqlite_writes_the_python_rows(tmp_path_factory: pytest.TempPathFactory,
                                       rec: ExecutionRecord) -> None:
    path = tmp_path_factory.mktemp("parity") / "p.db"
    store = SQLiteStore(f"sqlite:///{path}", capture_content=True)
    try:
        _check(store, rec)
    finally:
        store.close()
