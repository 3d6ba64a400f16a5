"""Schema v6 on SQLite and PostgreSQL: the record's new columns, paused and refused runs, the
agent's owner in the per-agent tables, and the usage ledger (exactly once: retries, writer
subsets, a crash mid-batch and its replay)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from instrument.stores.reference.executions import execution_row
from instrument.stores.reference.ledger import merge_ledger
from instrument.stores.reference.logs import log_row
from instrument.writers import BUILTIN_WRITERS
from tests.stores.conftest import Store, rows
from tests.stores.ledger_sums import ledger_from_executions, ledger_rows
from tests.stores.records import T0, accounting

ROOT = Path(__file__).resolve().parents[2]


def _by_id(store: Store, table: str, column: str = "id") -> dict[str, dict[str, object]]:
    return {str(r[column]): r for r in rows(store, table)}


def test_the_new_columns_round_trip(store: Store) -> None:
    parent = accounting(1)
    child = accounting(2, status="paused", cost="0.000000075").model_copy(update={
        "parent_execution_id": parent.execution_id, "tags": ("nightly", "eu"),
        "metadata": {"ticket": "T-1", "attempt": 2, "flags": [True, None]},
        "resumes_execution_id": uuid.UUID(int=7),
        "result": accounting(2, status="paused", cost="0.000000075").result.model_copy(
            update={"input": "the prompt", "response": "the answer"})})
    refused = accounting(3, status="refused")
    assert store.apply([parent, child, refused], BUILTIN_WRITERS).applied == 3
    execs = _by_id(store, "agent_executions")
    got = execs[str(child.execution_id)]
    assert (got["status"], got["tenant_id"], got["parent_execution_id"], got["tags"],
            got["metadata"]) == ("paused", "tenant-1", str(parent.execution_id),
                                 ["nightly", "eu"], {"ticket": "T-1", "attempt": 2,
                                                     "flags": [True, None]})
    assert got["cost_usd"] == Decimal("0.000000075")  # exact, not 7.5e-08 give or take
    assert (got["price_source"], got["request_model"], got["service_tier"],
            got["cache_write_input_tokens"]) == ("genai-prices 0.2.5", "gpt-4o-mini",
                                                 "default", 100)
    assert got["input"] is None  # content capture is off for this store: like the response
    assert "response" not in got["logs"]  # type: ignore[operator]
    assert execs[str(refused.execution_id)]["status"] == "refused"
    assert execs[str(refused.execution_id)]["cost_usd"] is None
    logs = _by_id(store, "agent_logs", "execution_id")
    assert {k: (v["status"], v["tenant_id"]) for k, v in logs.items()} == {
        str(parent.execution_id): ("completed", "tenant-1"),
        str(child.execution_id): ("paused", "tenant-1"),
        str(refused.execution_id): ("refused", "tenant-1")}
    # every column equals the reference Python's
    for rec in (parent, child, refused):
        want = execution_row(rec, capture_content=False)
        have = execs[str(rec.execution_id)]
        assert {k: have[k] for k in ("status", "tenant_id", "owner_id", "resumes_execution_id",
                                     "cost_usd", "input")} == {
            k: want[k] for k in ("status", "tenant_id", "owner_id", "resumes_execution_id",
                                 "cost_usd", "input")}
        assert logs[str(rec.execution_id)]["status"] == log_row(rec)["status"]


def test_input_is_stored_only_with_content_capture(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from tests.stores.conftest import make_store

    store = make_store(dialect, request, tmp_path, capture_content=True)
    rec = accounting(1)
    rec = rec.model_copy(update={"result": rec.result.model_copy(update={"input": "hi"})})
    store.apply([rec], ("executions",))
    assert rows(store, "agent_executions")[0]["input"] == "hi"
    store.close()


def test_paused_runs_are_runs_refused_ones_are_not(store: Store) -> None:
    records = [accounting(1), accounting(2, status="failed"), accounting(3, status="paused"),
               accounting(4, status="refused"), accounting(5, status="refused")]
    store.apply(records, BUILTIN_WRITERS)
    (stats,) = rows(store, "agent_stats")
    assert {k: stats[k] for k in ("run_count", "success_count", "failure_count",
                                  "paused_count", "refused_count", "token_run_count")} == {
        "run_count": 3, "success_count": 1, "failure_count": 1, "paused_count": 1,
        "refused_count": 2, "token_run_count": 3}
    assert stats["last_run_status"] == "paused"  # the latest run; refused ones are not runs
    # a later batch of only refused executions leaves last_run_* alone
    store.apply([accounting(9, status="refused")], BUILTIN_WRITERS)
    (again,) = rows(store, "agent_stats")
    assert (again["last_run_status"], again["last_run_at"], again["refused_count"]) == (
        "paused", stats["last_run_at"], 3)
    (intensity,) = rows(store, "agent_intensity_metrics")
    assert intensity["total_executions"] == 3  # AIS scores runs only


def test_an_agent_with_only_refused_executions_has_no_run(store: Store) -> None:
    store.apply([accounting(1, status="refused", agent_id="blocked")], BUILTIN_WRITERS)
    (stats,) = rows(store, "agent_stats")
    assert (stats["run_count"], stats["refused_count"], stats["last_run_at"],
            stats["last_run_status"]) == (0, 1, None, None)
    assert rows(store, "agent_intensity_metrics") == []


def test_the_per_agent_rows_belong_to_the_owner_never_the_caller(store: Store) -> None:
    # B runs A's agent first: the row is A's (the owner named), and counts B's run;
    # B's own consumption is in the ledger, under B.
    store.apply([accounting(1, user_id="user-b", owner_id="user-a")], BUILTIN_WRITERS)
    store.apply([accounting(2, user_id="user-a", owner_id="user-a"),
                 accounting(3, user_id="user-c", owner_id="user-c")],  # a later owner: ignored
                BUILTIN_WRITERS)
    (stats,) = rows(store, "agent_stats")
    (ais_row,) = rows(store, "agent_intensity_metrics")
    assert (stats["user_id"], stats["run_count"]) == ("user-a", 3)
    assert ais_row["user_id"] == "user-a"
    assert {k[1] for k in ledger_rows(store)} == {"user-a", "user-b", "user-c"}
    # no owner named: the row is nobody's (service role only), whoever ran the agent
    store.apply([accounting(4, user_id="user-b", agent_id="shared")], BUILTIN_WRITERS)
    shared = next(r for r in rows(store, "agent_stats") if r["agent_id"] == "shared")
    assert shared["user_id"] is None


def test_the_ledger_equals_the_reference_and_the_executions(store: Store) -> None:
    day2 = T0 + timedelta(days=1)
    records = [
        accounting(1), accounting(2, cost=None), accounting(3, tokens=None),
        accounting(4, status="failed", cost="0.5"), accounting(5, status="paused"),
        accounting(6, status="refused"), accounting(7, tenant_id=None, user_id=None),
        accounting(8, agent_id=None), accounting(9, started=day2),
        accounting(10, user_id="user-b", cost="1E-7"),
        accounting(11, tenant_id="tenant-2", cost="123456789.123456789123"),
    ]
    store.apply(records, BUILTIN_WRITERS)
    got = ledger_rows(store)
    want = {key: {c: getattr(d, c) for c in next(iter(got.values()))}
            for key, d in merge_ledger(records).items()}
    assert got == want
    assert got == ledger_from_executions(store)
    row = got[("tenant-1", "user-a", "agent-acct", T0.date())]
    assert (row["runs"], row["successes"], row["failures"], row["paused"], row["refused"],
            row["unpriced_runs"]) == (5, 3, 1, 1, 1, 1)
    assert row["cost_usd"] == Decimal("0.000123") * 3 + Decimal("0.5")
    no_tokens = ledger_rows(store)[("tenant-1", "user-a", "agent-acct", day2.date())]
    assert no_tokens["runs"] == 1
    only_unmeasured = accounting(12, user_id="user-z", tokens=None, cost=None)
    store.apply([only_unmeasured], BUILTIN_WRITERS)
    z = ledger_rows(store)[("tenant-1", "user-z", "agent-acct", T0.date())]
    assert (z["input_tokens"], z["total_tokens"], z["cost_usd"], z["unpriced_runs"]) == (
        None, None, None, 1)  # unmeasured is not 0


def test_the_ledger_applies_exactly_once_across_retries_and_writer_subsets(
        store: Store) -> None:
    records = [accounting(i, user_id=f"user-{i % 2}") for i in range(20)]
    without = [r.model_copy(update={"writers": ("executions", "stats")}) for r in records]
    store.apply(without, BUILTIN_WRITERS)
    assert ledger_rows(store) == {}
    store.apply(records, BUILTIN_WRITERS)  # the same executions, now with every writer
    once = ledger_rows(store)
    assert once == ledger_from_executions(store)
    assert store.apply(records, BUILTIN_WRITERS).duplicates == 20  # a retried batch
    assert store.apply(records[5:] + records[:5], BUILTIN_WRITERS).applied == 0
    assert ledger_rows(store) == once
    assert {r["writers"] for r in rows(store, "instrument_applied")} == {0b11111}


_CRASHING_WRITER = """
import sys, time
from instrument.writers import BUILTIN_WRITERS
from tests.stores.concurrent_worker import open_store
from tests.stores.records import accounting
store = open_store(sys.argv[1])
records = [accounting(i, user_id=f"user-{i % 3}", status=("completed", "paused", "refused",
           "failed")[i % 4], cost=None if i % 5 == 0 else "0.0001") for i in range(4000)]
print("ready", flush=True)
for k in range(0, len(records), 40):
    store.apply(records[k:k + 40], BUILTIN_WRITERS)
print("done", flush=True)
time.sleep(60)
"""


def test_a_crash_mid_batch_and_its_replay_leave_the_ledger_exact(store: Store) -> None:
    """A writer process is killed (SIGKILL) while it applies batches; the replay of every
    batch then applies only what did not land."""
    url = store.display_url if store.dialect == "sqlite" else store.url  # type: ignore[union-attr]
    proc = subprocess.Popen([sys.executable, "-c", _CRASHING_WRITER, url], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(rows(store, "instrument_applied")) < 400:
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    landed = len(rows(store, "instrument_applied"))
    assert 0 < landed < 4000, landed  # killed part of the way through
    assert landed % 40 == 0  # whole batches or nothing: the killed one rolled back
    records = [accounting(i, user_id=f"user-{i % 3}", status=("completed", "paused",
               "refused", "failed")[i % 4], cost=None if i % 5 == 0 else "0.0001")
               for i in range(4000)]
    replayed = [store.apply(records[k:k + 200], BUILTIN_WRITERS) for k in range(0, 4000, 200)]
    assert sum(r.applied for r in replayed) == 4000 - landed
    got = ledger_rows(store)
    assert got == ledger_from_executions(store)
    assert got == {key: {c: getattr(d, c) for c in next(iter(got.values()))}
                   for key, d in merge_ledger(records).items()}


def test_an_ingested_record_ends_its_budget_reservation(store: Store) -> None:
    rec = accounting(1)
    other = uuid.uuid4()
    for eid in (rec.execution_id, other):
        assert store.reserve("user", "user-a", T0, Decimal("10"), None, eid, 60).allowed
    assert len(rows(store, "budget_inflight")) == 2
    store.apply([rec], ("executions",))  # any writer: the record landed
    assert [r["execution_id"] for r in rows(store, "budget_inflight")] == [str(other)]


def test_clients_cannot_touch_the_ledger_or_the_reservations(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Row level security on plain SQL (Supabase's roles, as `instrument migrate` creates
    them here): authenticated reads its own ledger rows and writes nothing; the budget
    functions and budget_inflight are service_role's only."""
    if dialect != "postgres":
        pytest.skip("row level security is PostgreSQL's")
    import json

    import psycopg

    from tests.stores.conftest import make_store

    store = make_store(dialect, request, tmp_path)
    me = str(uuid.uuid4())
    store.apply([accounting(1, user_id=me), accounting(2, user_id="someone-else")],
                BUILTIN_WRITERS)
    with psycopg.connect(store.url, autocommit=True) as conn:  # type: ignore[union-attr]
        conn.execute("set role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, false)",
                     (json.dumps({"sub": me, "role": "authenticated"}),))
        assert [r[0] for r in conn.execute("select user_id from usage_ledger")] == [me]
        for statement in ("update usage_ledger set runs = 0",
                          "delete from usage_ledger",
                          "select count(*) from budget_inflight",
                          "select instrument_budget_spend('user', 'x', now())",
                          "select instrument_budget_reserve('user', 'x', now(), 1, null, "
                          "gen_random_uuid(), 60)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    store.close()
