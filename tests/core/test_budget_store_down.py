"""A dead or hung store never blocks a budgeted run by surprise: ``on_store_down`` decides,
within a bounded time (``timeout_s`` for strict budgets; no wait at all for cached ones)."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import instrument
from instrument import Budget, BudgetExceeded, logged_execution

TOKENS = {"input_tokens": 1, "output_tokens": 1}


def attempt(fn: Any, *args: Any) -> tuple[BudgetExceeded | None, float]:
    t0 = time.monotonic()
    try:
        fn(*args)
    except BudgetExceeded as exc:
        return exc, time.monotonic() - t0
    return None, time.monotonic() - t0


def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def budgeted(budget: Budget) -> Any:
    @logged_execution(user_id="user", budget=budget)
    def run(user: str) -> dict[str, Any]:
        return {"success": True, "tokens": TOKENS}

    return run


@pytest.fixture
def dead_sqlite(tmp_path: Path) -> None:
    """A store whose file cannot be opened (its directory does not exist)."""
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}",
                         spool_dir=tmp_path / "spool", traces="none")


def test_cached_deny_refuses_once_the_store_cannot_be_read(dead_sqlite: None) -> None:
    run = budgeted(Budget(limit_tokens=10**6, on_store_down="deny", refresh_s=0.1))
    first, _ = attempt(run, "u-1")
    assert first is None  # nothing known yet: a cached check never waits for the store
    until(lambda: attempt(run, "u-1")[0] is not None)
    err, took = attempt(run, "u-1")
    assert err is not None
    assert err.store_down
    assert took < 0.05
    assert "budget check unavailable" in str(err)
    assert "on_store_down='allow'" in str(err)
    assert "reading spend from the store failed" in str(err)


def test_cached_allow_keeps_running_and_says_so_once(
        dead_sqlite: None, caplog: pytest.LogCaptureFixture) -> None:
    run = budgeted(Budget(limit_tokens=10**6, refresh_s=0.1))
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            err, took = attempt(run, "u-1")
            assert err is None
            assert took < 0.05
            time.sleep(0.02)
    said = [m for m in caplog.messages if "on_store_down='allow' lets runs start" in m]
    assert len(said) == 1


def test_cached_allow_still_counts_this_process_while_the_store_is_down(
        dead_sqlite: None) -> None:
    run = budgeted(Budget(limit_tokens=5, refresh_s=0.1))
    results = [attempt(run, "u-1")[0] for _ in range(4)]
    assert [r is None for r in results] == [True, True, True, False]  # 2 tokens a run


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[threading.Event]:
    """A migrated SQLite store whose write lock another connection holds until released."""
    db = tmp_path / "locked.db"
    instrument.configure(database_url=f"sqlite:///{db}", spool_dir=tmp_path / "spool",
                         traces="none")
    logged_execution(lambda: None)()
    assert instrument.flush(10.0)  # migrated
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(60)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    yield release
    release.set()
    holder.join(10)


def test_strict_deny_refuses_within_its_timeout_when_the_store_hangs(
        locked_sqlite: threading.Event) -> None:
    run = budgeted(Budget(limit_tokens=10**6, mode="strict", on_store_down="deny",
                          timeout_s=0.3))
    err, took = attempt(run, "u-1")
    assert err is not None
    assert err.store_down
    assert 0.3 <= took < 1.5, took
    assert "did not answer the budget check within 0.3 s" in str(err)
    err, took = attempt(run, "u-2")  # the first check is still stuck: no second wait
    assert err is not None
    assert took < 0.1, took
    assert "has not answered a budget check" in str(err)
    locked_sqlite.set()
    until(lambda: attempt(run, "u-3")[0] is None)  # back as soon as the store answers


def test_strict_allow_runs_within_its_timeout_when_the_store_hangs(
        locked_sqlite: threading.Event) -> None:
    ran: list[str] = []

    @logged_execution(user_id="user", budget=Budget(limit_tokens=10**6, mode="strict",
                                                    timeout_s=0.3))
    def run(user: str) -> str:
        ran.append(user)
        return "ok"

    err, took = attempt(run, "u-1")
    assert err is None
    assert 0.3 <= took < 1.5
    assert ran == ["u-1"]
    locked_sqlite.set()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join(5)
    for c in accepted:
        c.close()
    server.close()


def test_strict_budgets_on_a_hung_or_dead_postgres(black_hole: int, tmp_path: Path) -> None:
    instrument.configure(database_url=f"postgresql://postgres@127.0.0.1:{black_hole}/x",
                         spool_dir=tmp_path / "spool", traces="none", connect_timeout_s=5)
    deny = budgeted(Budget(limit_tokens=10, mode="strict", on_store_down="deny",
                           timeout_s=0.5))
    err, took = attempt(deny, "u-1")
    assert err is not None
    assert err.store_down
    assert 0.5 <= took < 2.0, took
    allow = budgeted(Budget(limit_tokens=10, mode="strict", timeout_s=0.5))
    err, took = attempt(allow, "u-1")
    assert err is None
    assert took < 2.0


def test_strict_deny_on_a_refused_connection(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instrument.configure(database_url=f"postgresql://postgres@127.0.0.1:{port}/x",
                         spool_dir=tmp_path / "spool", traces="none", connect_timeout_s=1)
    run = budgeted(Budget(limit_tokens=10, mode="strict", on_store_down="deny", timeout_s=3))
    err, took = attempt(run, "u-1")
    assert err is not None
    assert err.store_down
    assert took < 3.5
    assert "budget check failed" in str(err) or "did not answer" in str(err)
