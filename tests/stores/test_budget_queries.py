"""BudgetSource on SQLite and PostgreSQL: committed spend, and atomic reservations.

`spend` reads whole UTC days from usage_ledger and a rolling window's first partial day from
agent_executions; `reserve` lets a run start only while the committed spend is below the
limits, registers it in flight until its record lands, and is atomic per key: processes racing
at the limit pass exactly as a serial order of their calls would let them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from instrument.stores.base import BudgetSource, Reservation, Spend
from instrument.writers import BUILTIN_WRITERS
from tests.stores.conftest import Store, execute, rows
from tests.stores.records import T0, accounting

ROOT = Path(__file__).resolve().parents[2]
MIDNIGHT = T0.replace(hour=0)  # records.T0 is 12:00 UTC


def test_every_store_is_a_budget_source(store: Store) -> None:
    assert isinstance(store, BudgetSource)


def test_spend_counts_committed_runs_exactly(store: Store) -> None:
    store.apply([
        accounting(1, cost="0.10"), accounting(2, cost="0.20", status="failed"),
        accounting(3, cost=None),  # unpriced: its tokens count, no USD
        accounting(4, status="refused"),  # not a run, spends nothing
        accounting(5, status="paused", cost="0.000000001"),
        accounting(6, user_id="user-b", cost="5"),  # another user
        accounting(7, started=MIDNIGHT - timedelta(seconds=1), cost="7"),  # the day before
    ], BUILTIN_WRITERS)
    day = store.spend("user", "user-a", MIDNIGHT)
    assert day == Spend(usd=Decimal("0.300000001"), tokens=4 * 1200, runs=4)
    assert store.spend("user", "user-a", MIDNIGHT - timedelta(days=1)) == Spend(
        usd=Decimal("7.300000001"), tokens=5 * 1200, runs=5)
    assert store.spend("tenant", "tenant-1", MIDNIGHT).usd == Decimal("5.300000001")
    assert store.spend("agent", "agent-acct", MIDNIGHT).runs == 5
    assert store.spend("user", "nobody", MIDNIGHT) == Spend(Decimal(0), 0, 0)


def test_a_rolling_window_starts_mid_day(store: Store) -> None:
    """since = 12:00:02: the runs of that day from then on (agent_executions), every later
    day whole (usage_ledger)."""
    store.apply([accounting(i, cost="1") for i in range(5)]  # T0 + 0..4 s
                + [accounting(9, cost="10", started=T0 + timedelta(days=1, hours=-11))],
                BUILTIN_WRITERS)
    since = T0 + timedelta(seconds=2)
    assert store.spend("user", "user-a", since) == Spend(Decimal(13), 4 * 1200, 4)
    naive = since.replace(tzinfo=None)  # naive is UTC
    assert store.spend("user", "user-a", naive) == store.spend("user", "user-a", since)


def test_reserve_allows_below_the_limits_and_registers_the_run(store: Store) -> None:
    store.apply([accounting(1, cost="0.5")], BUILTIN_WRITERS)
    a, b = uuid.uuid4(), uuid.uuid4()
    first = store.reserve("user", "user-a", MIDNIGHT, Decimal("1"), None, a, 60)
    assert first == Reservation(True, Decimal("0.5"), 1200, 0)
    second = store.reserve("user", "user-a", MIDNIGHT, Decimal("1"), 10_000, b, 60)
    assert second == Reservation(True, Decimal("0.5"), 1200, 1)  # a is in flight
    again = store.reserve("user", "user-a", MIDNIGHT, Decimal("1"), None, a, 60)
    assert (again.allowed, again.in_flight) == (True, 1)  # the same run: not counted twice
    assert len(rows(store, "budget_inflight")) == 2
    # at the limit (either one): refused, nothing registered
    store.apply([accounting(2, cost="0.5")], BUILTIN_WRITERS)
    over = store.reserve("user", "user-a", MIDNIGHT, Decimal("1"), None, uuid.uuid4(), 60)
    assert over == Reservation(False, Decimal("1.0"), 2400, 2)
    tokens = store.reserve("user", "user-a", MIDNIGHT, None, 2400, uuid.uuid4(), 60)
    assert not tokens.allowed
    assert store.reserve("user", "user-a", MIDNIGHT, None, None, uuid.uuid4(), 60).allowed
    assert len(rows(store, "budget_inflight")) == 3


def test_expired_reservations_are_ignored_and_cleaned(store: Store) -> None:
    stale = uuid.uuid4()
    store.reserve("tenant", "tenant-1", MIDNIGHT, Decimal("1"), None, stale, 60)
    execute(store, "update budget_inflight set expires_at = '2000-01-01T00:00:00.000000+00:00'")
    fresh = store.reserve("tenant", "tenant-1", MIDNIGHT, Decimal("1"), None, uuid.uuid4(), 60)
    assert fresh.in_flight == 0
    assert stale not in {uuid.UUID(str(r["execution_id"])) for r in rows(store, "budget_inflight")}


def test_bad_arguments_say_what_to_use(store: Store) -> None:
    with pytest.raises(ValueError, match="'user', 'tenant' or 'agent'"):
        store.spend("team", "x", MIDNIGHT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl_s must be positive"):
        store.reserve("user", "x", MIDNIGHT, None, None, uuid.uuid4(), 0)


# --- racing processes ----------------------------------------------------------------------

_RACER = """
import json, sys, uuid
from datetime import datetime
from decimal import Decimal
from instrument.writers import BUILTIN_WRITERS
from tests.stores.concurrent_worker import open_store
from tests.stores.records import accounting
url, proc, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
since = datetime.fromisoformat(sys.argv[4])
store = open_store(url)
out = []
if mode == "once":  # reserve once, then report
    r = store.reserve("user", "user-a", since, Decimal("1"), None, uuid.uuid4(), 60)
    out.append([r.allowed, str(r.spent_usd)])
else:  # reserve; when allowed, run (commit the record's cost); until refused
    for i in range(1000):
        rec = accounting(100_000 * (proc + 1) + i, cost="0.1")
        r = store.reserve("user", "user-a", since, Decimal("1"), None, rec.execution_id, 60)
        out.append([r.allowed, str(r.spent_usd), r.in_flight])
        if not r.allowed:
            break
        store.apply([rec], BUILTIN_WRITERS)
store.close()
print(json.dumps(out))
"""


def _race(store: Store, processes: int, mode: str) -> list[list[list[object]]]:
    url = store.display_url if store.dialect == "sqlite" else store.url  # type: ignore[union-attr]
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, url, str(p), mode,
                               MIDNIGHT.isoformat()], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for p in range(processes)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout))
    return out


def test_processes_racing_at_the_limit_pass_exactly_as_allowed(store: Store) -> None:
    """Below the limit every racer passes (in-flight runs have no cost yet); at the limit
    none does: the decision reads the committed spend, whoever else is racing."""
    store.apply([accounting(1, cost="0.9")], BUILTIN_WRITERS)
    below = _race(store, 4, "once")
    assert [r[0] for r in below] == [[True, "0.9"]] * 4
    assert len(rows(store, "budget_inflight")) == 4
    store.apply([accounting(2, cost="0.1")], BUILTIN_WRITERS)
    at_limit = _race(store, 4, "once")
    assert [r[0] for r in at_limit] == [[False, "1.0"]] * 4
    assert len(rows(store, "budget_inflight")) == 4


def test_racing_runs_stop_within_the_runs_in_flight(store: Store) -> None:
    """4 processes run against a $1 limit at $0.10 a run: every allowed reservation saw
    committed spend below the limit, every refusal saw it at or over, and the overshoot is
    at most the runs in flight when the limit was reached (one per other process)."""
    results = _race(store, 4, "loop")
    allowed = [a for proc in results for a in proc if a[0]]
    refused = [a for proc in results for a in proc if not a[0]]
    assert len(refused) == 4  # each process stopped, once
    assert all(Decimal(str(a[1])) < 1 for a in allowed)
    assert all(Decimal(str(a[1])) >= 1 for a in refused)
    assert 10 <= len(allowed) <= 10 + 3
    assert all(int(str(a[2])) <= 3 for a in allowed)  # at most the other processes' runs
    spend = store.spend("user", "user-a", MIDNIGHT)
    assert spend == Spend(Decimal("0.1") * len(allowed), 1200 * len(allowed), len(allowed))
    assert rows(store, "budget_inflight") == []  # every run landed: none left in flight
