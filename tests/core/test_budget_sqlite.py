"""Budgets in one process against a real SQLite store: cached and strict, tokens and USD, the
refused record in every table and on its span, and every kind of executor."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import instrument
from instrument import Budget, BudgetExceeded, execution_context, logged_execution
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.conftest import run_python

TOKENS = {"input_tokens": 60, "output_tokens": 40}  # 100 a run


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "budget.db"
    instrument.configure(database_url=f"sqlite:///{path}", spool_dir=tmp_path / "spool",
                         traces="none")
    return path


def spend_elsewhere(db: Path, user: str, runs: int) -> None:
    """Another process, without any budget, spends `runs` x 100 tokens as `user`."""
    code = textwrap.dedent(f"""
        import instrument
        instrument.configure(database_url="sqlite:///{db}", spool_dir="{db}.other-spool",
                             traces="none")
        @instrument.logged_execution(agent_id=instrument.literal("other"), user_id="user")
        def run(user):
            return {{"success": True, "tokens": {TOKENS!r}}}
        for _ in range({runs}):
            run({user!r})
        assert instrument.flush(10)
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr


def attempt(fn: Any, *args: Any) -> BudgetExceeded | None:
    try:
        fn(*args)
    except BudgetExceeded as exc:
        return exc
    return None


def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("mode", ["cached", "strict"])
def test_runs_stop_at_the_limit_and_the_refusal_is_in_every_table(db: Path, mode: str) -> None:
    ran: list[str] = []

    @logged_execution(agent_id="agent", user_id="user",
                      budget=Budget(limit_tokens=250, mode=mode))  # type: ignore[arg-type]
    def run(agent: str, user: str) -> dict[str, Any]:
        ran.append(user)
        return {"success": True, "tokens": TOKENS}

    outcomes = [attempt(run, "bot", "u-1") for _ in range(5)]
    assert [o is None for o in outcomes] == [True, True, True, False, False]
    assert ran == ["u-1"] * 3  # the executor never ran for a refused call
    err = outcomes[3]
    assert err is not None
    assert (err.limit, err.spent, err.key, err.per, err.window) == (250, 300, "u-1", "user",
                                                                    "day")
    assert instrument.flush(10.0)
    execs = rows(db, "SELECT status, error_type, error_message FROM agent_executions")
    assert sorted(r["status"] for r in execs) == ["completed"] * 3 + ["refused"] * 2
    refused = [r for r in execs if r["status"] == "refused"]
    assert all(r["error_type"] == "BudgetExceeded" for r in refused)
    assert "300 tokens of its 250-token limit" in refused[0]["error_message"]
    logs = rows(db, "SELECT status FROM agent_logs")
    assert sorted(r["status"] for r in logs) == ["completed"] * 3 + ["refused"] * 2
    (ledger,) = rows(db, "SELECT runs, refused, total_tokens FROM usage_ledger")
    assert (ledger["runs"], ledger["refused"], ledger["total_tokens"]) == (3, 2, 300)
    (stats,) = rows(db, "SELECT run_count, refused_count FROM agent_stats")
    assert (stats["run_count"], stats["refused_count"]) == (3, 2)
    assert rows(db, "SELECT * FROM budget_inflight") == []  # every reservation landed


def test_a_cached_budget_sees_another_process_after_a_refresh(db: Path) -> None:
    @logged_execution(user_id="user", budget=Budget(limit_tokens=250, refresh_s=0.2))
    def run(user: str) -> dict[str, Any]:
        return {"success": True, "tokens": TOKENS}

    spend_elsewhere(db, "u-1", 3)
    # The first call of a key starts before its spend was read (no I/O on the call path) ...
    assert attempt(run, "u-1") is None
    # ... and the spend read in the background then refuses the next ones.
    until(lambda: attempt(run, "u-1") is not None)
    err = attempt(run, "u-1")
    assert err is not None
    # 300 from the other process and ours, each counted once (as this process's own run until
    # its batch commits, then in the store's answer): one run of 100, or two when `until`'s
    # first attempt ran before the background read arrived
    assert err.spent in (400, 500)
    assert "u-1" in str(err)
    assert attempt(run, "u-2") is None  # another user's budget is untouched


@pytest.mark.parametrize("window", ["day", "month", timedelta(hours=1)])
def test_a_strict_budget_sees_another_process_before_the_first_run(
        db: Path, window: Any) -> None:
    @logged_execution(user_id="user", budget=Budget(limit_tokens=250, mode="strict",
                                                    window=window))
    def run(user: str) -> dict[str, Any]:
        return {"success": True, "tokens": TOKENS}

    spend_elsewhere(db, "u-1", 3)
    err = attempt(run, "u-1")
    assert err is not None
    assert err.spent == 300
    assert attempt(run, "u-2") is None


def test_this_process_runs_count_once_after_they_land_in_the_store(db: Path) -> None:
    @logged_execution(user_id="user", budget=Budget(limit_tokens=300, refresh_s=0.1))
    def run(user: str) -> dict[str, Any]:
        return {"success": True, "tokens": TOKENS}

    assert [attempt(run, "u-1") for _ in range(3)] == [None, None, None]
    assert instrument.flush(10.0)
    time.sleep(0.6)  # delivered, read back, and no longer counted as this process's own

    def spent() -> int | Decimal | None:
        err = attempt(run, "u-1")
        assert err is not None
        return err.spent

    until(lambda: spent() == 300)
    for _ in range(5):  # and it stays exact: counted once, neither lost nor twice
        assert spent() == 300
        time.sleep(0.1)


def test_strict_threads_racing_the_limit_overshoot_by_runs_in_flight_at_most(db: Path) -> None:
    limit, threads = 2000, 8

    @logged_execution(user_id="user", budget=Budget(limit_tokens=limit, mode="strict"))
    def run(user: str) -> dict[str, Any]:
        time.sleep(0.005)
        return {"success": True, "tokens": TOKENS}

    refused = threading.Event()

    def worker() -> None:
        while not refused.is_set():
            if attempt(run, "u-1") is not None:
                refused.set()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert instrument.flush(10.0)
    (ledger,) = rows(db, "SELECT total_tokens FROM usage_ledger")
    assert limit <= ledger["total_tokens"] <= limit + threads * 100, ledger


def test_a_usd_budget_counts_this_process_once_its_runs_are_priced(tmp_path: Path) -> None:
    db = tmp_path / "usd.db"
    instrument.configure(database_url=f"sqlite:///{db}", spool_dir=tmp_path / "spool",
                         traces="none",
                         prices={"test-model": {"input_mtok": 1_000_000, "output_mtok": 2e6}})

    @logged_execution(user_id="user", budget=Budget(limit_usd="5", refresh_s=60))
    def run(user: str) -> dict[str, Any]:  # 1 token in, 1 out: $1 + $2
        return {"success": True, "model": "test-model", "provider": "openai",
                "tokens": {"input_tokens": 1, "output_tokens": 1}}

    assert attempt(run, "u-1") is None
    assert instrument.flush(10.0)  # priced by the delivery worker: $3 counted
    assert attempt(run, "u-1") is None
    assert instrument.flush(10.0)
    err = attempt(run, "u-1")  # $6 >= $5 (the store was read once, at the first call)
    assert err is not None
    assert (err.limit, err.spent) == (Decimal("5"), Decimal("6"))
    assert "$6 of its $5 limit" in str(err)


def test_every_kind_of_executor_is_refused_before_it_runs(db: Path) -> None:
    started: list[str] = []
    budget = Budget(limit_tokens=0)  # nothing may be spent: every run is refused

    @logged_execution(user_id="user", budget=budget)
    async def coro(user: str) -> dict[str, Any]:
        started.append("coro")
        return {"success": True}

    @logged_execution(user_id="user", budget=budget)
    def gen(user: str) -> Iterator[str]:
        started.append("gen")
        yield "x"

    @logged_execution(user_id="user", budget=budget)
    async def agen(user: str) -> Any:
        started.append("agen")
        yield "x"

    with pytest.raises(BudgetExceeded):
        asyncio.run(coro("u-1"))
    stream = gen("u-1")  # nothing runs until the first item is asked for
    with pytest.raises(BudgetExceeded):
        next(stream)

    async def consume() -> None:
        async for _ in agen("u-1"):
            pass

    with pytest.raises(BudgetExceeded):
        asyncio.run(consume())
    assert started == []
    assert instrument.flush(10.0)
    statuses = rows(db, "SELECT status FROM agent_executions")
    assert [r["status"] for r in statuses] == ["refused"] * 3


def test_a_call_without_the_identity_is_not_limited_and_that_is_said_once(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    @logged_execution(user_id="user", budget=Budget(limit_tokens=0, per="tenant"))
    def run(user: str) -> str:
        return "ran"

    with caplog.at_level(logging.WARNING):
        assert [run("u-1") for _ in range(3)] == ["ran"] * 3
        with execution_context(tenant_id="acme"), pytest.raises(BudgetExceeded) as info:
            run("u-1")
    assert info.value.key == "acme"
    assert info.value.per == "tenant"
    said = [m for m in caplog.messages if "has no tenant_id" in m]
    assert len(said) == 1
    assert "does not apply" in said[0]
    assert "tenant_id=" in said[0]


def test_budgets_in_capture_count_this_process_and_the_refusal_has_its_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @logged_execution(agent_id="agent", budget=Budget(limit_tokens=150, per="agent"))
    def run(agent: str) -> dict[str, Any]:
        return {"success": True, "tokens": TOKENS}

    with capture(tracing=Tracing(provider)) as cap:
        run("bot")
        run("bot")
        with pytest.raises(BudgetExceeded) as info:
            run("bot")
    assert info.value.spent == 200
    assert [r.status for r in cap.records] == ["completed", "completed", "refused"]
    refused = cap.records[-1]
    assert refused.result.refused
    assert not refused.result.success
    assert refused.result.error is not None
    assert refused.result.error.type == "BudgetExceeded"
    span = exporter.get_finished_spans()[-1]
    assert span.status.status_code is StatusCode.ERROR
    attrs = span.attributes or {}
    assert attrs.get("instrument.status") == "refused"
    assert attrs.get("error.type") == "BudgetExceeded"
