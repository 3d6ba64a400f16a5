"""Errors judged by evidence (issue 14): what the server raised for the batch rejects a record
of it, whatever its SQLSTATE class; only connection-level failures are "unavailable".

Real PostgreSQL and SQLite throughout; poison records are built around the record's own
bounds (``model_copy`` does not validate) to reach the store as an old spool or a third-party
producer could deliver them.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import string
import threading
import time
from pathlib import Path

import psycopg
import pytest

from instrument.errors import RecordRejected, StoreUnavailable
from instrument.pipeline import DeliveryPipeline, quarantined
from instrument.pipeline.retry import Backoff
from instrument.record import ExecutionRecord, TokenUsage
from instrument.stores.postgres.store import PostgresStore
from instrument.stores.sqlite.store import SQLiteStore
from instrument.stores.sqlstate import classify
from tests.stores.conftest import Store, rows
from tests.stores.records import ALL_WRITERS, agentkit, orchestrator


def _poison(i: int, **fields: object) -> ExecutionRecord:
    return orchestrator(i).model_copy(update=fields)


def _long_random_text(n: int = 10_000) -> str:
    rng = random.Random(14)  # incompressible enough that TOAST cannot shrink it under 2.7 kB
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _pipeline(store: Store, spool: Path | None, factory: object) -> DeliveryPipeline:
    return DeliveryPipeline(store, writers=ALL_WRITERS, spool_dir=spool, batch_size=50,
                            flush_interval_s=0.02, backoff=Backoff(base_s=0.02, cap_s=0.2),
                            store_factory=factory)  # type: ignore[arg-type]


def test_an_index_row_too_large_is_quarantined_and_delivery_continues(
        pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """54000 ("index row requires 10016 bytes") used to be "unavailable": retried forever,
    every later record waiting behind it, across restarts."""
    PostgresStore(pg_url).migrate()
    spool = tmp_path / "spool"
    pipeline = _pipeline(PostgresStore(pg_url), spool, lambda: PostgresStore(pg_url))
    good = [orchestrator(i) for i in range(1, 21)]
    bad = _poison(100, agent_id=_long_random_text())
    caplog.set_level(logging.INFO, logger="instrument")
    for r in good[:10]:
        pipeline.submit(r)
    pipeline.submit(bad)
    for r in good[10:]:
        pipeline.submit(r)
    assert pipeline.flush(30)
    later = [agentkit(i) for i in range(1, 6)]  # delivery goes on after the poison record
    for r in later:
        pipeline.submit(r)
    assert pipeline.flush(30)
    stats = pipeline.stats()
    assert pipeline.shutdown(5)
    assert (stats.delivered, stats.quarantined) == (26, 1)

    landed = {r["id"] for r in rows(PostgresStore(pg_url), "agent_executions")}
    assert landed == {str(r.execution_id) for r in good + later}
    with psycopg.connect(pg_url) as conn:
        runs = conn.execute("select sum(run_count) from agent_stats").fetchone()
        logs = conn.execute("select count(*) from agent_logs").fetchone()
    assert runs == (25,)
    assert logs == (25,)

    [item] = quarantined(spool)
    assert item.execution_id == str(bad.execution_id)
    assert item.error_type == "RecordRejected"
    assert "54000" in item.error
    assert "PostgreSQL rejected a record of instrument_ingest(batch of 1)" in item.error
    assert item.record is not None
    assert item.record["agent_id"] == bad.agent_id  # kept whole, to fix and replay
    # log lines name the statement and stay short: never the function's SQL (CONTEXT)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("instrument")]
    assert any("instrument_ingest(batch of" in m for m in messages)
    assert not any("materialized" in m or "jsonb_to_recordset" in m for m in messages)
    assert max(len(m) for m in messages) < 2000
    assert not any("unavailable" in m and "54000" in m for m in messages)


def test_an_exception_raised_for_the_data_rejects_the_record(pg_url: str) -> None:
    """P0001 from the application's own trigger: any class the server raises for the data."""
    store = PostgresStore(pg_url)
    store.migrate()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("""
            create function public.refuse_blocked() returns trigger language plpgsql as $$
            begin
                if new.agent_id = 'blocked' then
                    raise exception 'agent % is blocked', new.agent_id;
                end if;
                return new;
            end $$;
            create trigger refuse_blocked before insert on public.agent_executions
                for each row execute function public.refuse_blocked();
        """)
    bad = orchestrator(2, agent_id="blocked")
    with pytest.raises(RecordRejected, match=r"P0001: agent blocked is blocked") as info:
        store.apply([orchestrator(1), bad], ALL_WRITERS)
    assert info.value.execution_id is None  # a batch: the pipeline bisects it
    with pytest.raises(RecordRejected) as info:
        store.apply([bad], ALL_WRITERS)
    assert info.value.execution_id == str(bad.execution_id)
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    assert [r["id"] for r in rows(store, "agent_executions")] == [str(orchestrator(1).execution_id)]
    store.close()


def test_a_read_only_server_is_unavailable_not_a_bad_record(pg_url: str,
                                                            pg_admin_url: str) -> None:
    """25006 (a standby, or a database set read-only): the data is fine, retry later."""
    store = PostgresStore(pg_url)
    store.migrate()
    store.close()
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'alter database "{dbname}" set default_transaction_read_only = on')
    store = PostgresStore(pg_url)
    with pytest.raises(StoreUnavailable, match=r"unavailable: instrument_ingest\(batch of 1\) "
                                               r"failed \(25006"):
        store.apply([orchestrator(1)], ALL_WRITERS)
    store.close()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:  # from another database
        conn.execute(f'alter database "{dbname}" reset default_transaction_read_only')
    store = PostgresStore(pg_url)
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    store.close()


def test_a_terminated_connection_is_unavailable(pg_url: str) -> None:
    """57P01 (the server shutting the backend down mid-batch): retried, not quarantined."""
    store = PostgresStore(pg_url)
    store.migrate()
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    errors: list[BaseException] = []

    def run() -> None:
        try:
            store.apply([orchestrator(2), agentkit(2)], ALL_WRITERS)
        except BaseException as exc:
            errors.append(exc)

    with psycopg.connect(pg_url) as blocker:
        blocker.execute("select 1 from agent_stats where agent_id = 'agent-orch' for update")
        worker = threading.Thread(target=run)
        worker.start()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            deadline = time.monotonic() + 10
            killed = 0
            while not killed and time.monotonic() < deadline:
                row = admin.execute(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity where "
                    "application_name = 'logged-execution' and wait_event_type = 'Lock'"
                ).fetchone()
                killed = int(row[0]) if row else 0
                time.sleep(0.05)
        assert killed == 1
        worker.join(10)
        blocker.rollback()
    assert len(errors) == 1
    assert isinstance(errors[0], StoreUnavailable), errors
    assert store.apply([orchestrator(2), agentkit(2)], ALL_WRITERS).applied == 2
    store.close()


@pytest.mark.parametrize(("sqlstate", "verdict"), [
    (None, "unavailable"), ("08006", "unavailable"), ("57P01", "unavailable"),
    ("57P02", "unavailable"), ("57P03", "unavailable"), ("57014", "unavailable"),
    ("53300", "unavailable"), ("53100", "unavailable"), ("25006", "unavailable"),
    ("55P03", "unavailable"), ("XX000", "unavailable"), ("40001", "retry"), ("40P01", "retry"),
    ("54000", "rejected"), ("22003", "rejected"), ("22P05", "rejected"), ("23505", "rejected"),
    ("42804", "rejected"), ("P0001", "rejected"), ("2201B", "rejected"),
    ("42P01", "schema"), ("42883", "schema"), ("42703", "schema"),
    ("28P01", "credentials"), ("3D000", "no_database"), ("42501", "privilege"),
])
def test_the_verdict_of_each_sqlstate(sqlstate: str | None, verdict: str) -> None:
    assert classify(sqlstate) == verdict


# -- SQLite -----------------------------------------------------------------------------------


def test_sqlite_rejects_a_record_it_cannot_encode_and_delivers_the_rest(tmp_path: Path) -> None:
    """A lone surrogate (UnicodeEncodeError at binding) used to be "unavailable" and, with the
    spool off, lost the batch; a count SQLite cannot hold is the same kind of evidence. The
    record is rejected and quarantined (logged, the spool being off), the rest delivered."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    store = SQLiteStore(url)
    unencodable = _poison(7, agent_id="agent-\udc80")
    with pytest.raises(RecordRejected, match=r"SQLite rejected a record of ingest\(batch of 1\) "
                                             r"\(UnicodeEncodeError") as info:
        store.apply([unencodable], ALL_WRITERS)
    assert info.value.execution_id == str(unencodable.execution_id)
    assert rows(store, "agent_executions") == []
    bad = _poison(8, result=orchestrator(8).result.model_copy(
        update={"tokens": TokenUsage.model_construct(total_tokens=10**20)}))
    pipeline = _pipeline(store, None, lambda: SQLiteStore(url))
    good = [orchestrator(i) for i in range(1, 6)]
    for r in [*good[:2], bad, *good[2:]]:
        pipeline.submit(r)
    assert pipeline.flush(20)
    stats = pipeline.stats()
    assert pipeline.shutdown(5)
    assert (stats.delivered, stats.quarantined, stats.dropped) == (6, 1, 0)
    assert sorted(r["id"] for r in rows(store, "agent_executions")) == sorted(
        str(r.execution_id) for r in good)


def test_sqlite_locked_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout_s=0.2)
    store.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="locked by another writer"):
            store.apply([orchestrator(1)], ALL_WRITERS)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    store.close()


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    """0600 like the spool holding the same records; -wal and -shm follow the database."""
    path = tmp_path / "app.db"
    store = SQLiteStore(f"sqlite:///{path}")
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    files = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert files == {"app.db": 0o600, "app.db-wal": 0o600, "app.db-shm": 0o600}
    store.close()


def test_sqlite_keeps_the_mode_of_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    store = SQLiteStore(f"sqlite:///{path}")
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    assert path.stat().st_mode & 0o777 == 0o640
    store.close()
