"""Bad input and outages: each gives one clear error naming the fix, never a driver error."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from instrument.errors import ConfigurationError, RecordRejected, SchemaMismatch, StoreUnavailable
from instrument.record import TokenUsage
from instrument.stores import open_store
from instrument.stores.postgres.store import PostgresStore
from instrument.stores.sqlite.store import SQLiteStore
from tests.stores.conftest import Store, execute, make_store, rows
from tests.stores.netfakes import RefusingPostgres, TcpProxy
from tests.stores.records import ALL_WRITERS, agentkit, mixed_run, orchestrator


@pytest.mark.parametrize("url", [
    "postgresq://postgres@127.0.0.1:5432/test",
    "postgres+psycopg://postgres@127.0.0.1/test",
    "sqlite://instrument.db",
    "sqlit:///instrument.db",
])
def test_url_typo_names_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="INSTRUMENT_DATABASE_URL"):
        open_store(url)


def test_malformed_postgres_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"port.*INSTRUMENT_DATABASE_URL"):
        PostgresStore("postgresql://postgres@127.0.0.1:54x2/test")
    with pytest.raises(ConfigurationError, match="INSTRUMENT_DATABASE_URL"):
        PostgresStore("postgresql://postgres@[::1/test")


def test_missing_schema_says_run_migrate(dialect: str, request: pytest.FixtureRequest,
                                         tmp_path: Path) -> None:
    store = make_store(dialect, request, tmp_path, migrate=False)
    with pytest.raises(SchemaMismatch, match=r"no logged-execution schema.*`instrument migrate"):
        store.apply(mixed_run(), ALL_WRITERS)
    with pytest.raises(SchemaMismatch, match="instrument migrate"):
        store.agent_stats()
    assert store.schema_version() is None
    assert store.migrate() == store.schema_version()
    assert (store.schema_version() or 0) >= 1
    assert store.apply(mixed_run(), ALL_WRITERS).applied == len(mixed_run())
    store.close()


def test_embedded_default_creates_its_schema_on_first_use(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    store.close()


def test_missing_column_names_it_and_migrate_repairs_it(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = make_store(dialect, request, tmp_path)
    store.apply([orchestrator(1)], ALL_WRITERS)
    execute(store, "ALTER TABLE agent_logs DROP COLUMN run_tokens")
    # the open store (schema already checked) fails on the statement itself
    with pytest.raises(SchemaMismatch, match=r"run_tokens.*instrument migrate"):
        store.apply([orchestrator(2)], ALL_WRITERS)
    store.close()
    fresh: Store = (SQLiteStore(store.display_url, auto_migrate=False)
                    if isinstance(store, SQLiteStore) else PostgresStore(store.url))
    with pytest.raises(SchemaMismatch, match=r"column agent_logs\.run_tokens.*instrument migrate"):
        fresh.apply([orchestrator(2)], ALL_WRITERS)
    fresh.migrate()
    assert fresh.apply([orchestrator(2), orchestrator(1)], ALL_WRITERS).applied == 1
    assert [r["run_tokens"] for r in rows(fresh, "agent_logs", "run_time")] == [None, 1200]
    fresh.close()


def test_missing_table_is_recreated_by_migrate(store: Store) -> None:
    execute(store, "DROP TABLE agent_stats")
    with pytest.raises(SchemaMismatch, match=r"agent_stats.*instrument migrate"):
        store.apply([orchestrator(1)], ALL_WRITERS)
    store.migrate()
    store.apply([orchestrator(1)], ALL_WRITERS)
    assert [r["run_count"] for r in rows(store, "agent_stats")] == [1]


def test_a_refused_record_rejects_the_batch_atomically(store: Store) -> None:
    # past bigint and SQLite's INTEGER; built around the record's own range check
    bad = agentkit(1).model_copy(update={"result": agentkit(1).result.model_copy(
        update={"tokens": TokenUsage.model_construct(total_tokens=10**20)})})
    with pytest.raises(RecordRejected) as info:
        store.apply([orchestrator(1), bad], ALL_WRITERS)
    assert info.value.execution_id is None
    with pytest.raises(RecordRejected) as info:
        store.apply([bad], ALL_WRITERS)
    assert info.value.execution_id == str(bad.execution_id)
    for table in ("agent_executions", "agent_logs", "agent_stats", "instrument_applied"):
        assert rows(store, table) == [], table
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1


def test_unknown_database_names_the_fix(pg_admin_url: str) -> None:
    url = pg_admin_url.rsplit("/", 1)[0] + "/no_such_db_for_instrument"
    store = PostgresStore(url)
    with pytest.raises(StoreUnavailable,
                       match=r"does not exist.*createdb.*INSTRUMENT_DATABASE_URL"):
        store.apply([orchestrator(1)], ALL_WRITERS)


def test_unknown_user_names_the_fix(pg_admin_url: str) -> None:
    host = pg_admin_url.split("@", 1)[1]
    store = PostgresStore(f"postgresql://no_such_role_xyz:pw@{host}")
    with pytest.raises(StoreUnavailable, match=r"credentials.*INSTRUMENT_DATABASE_URL") as info:
        store.migrate()
    assert "pw" not in str(info.value).replace("password", "")


def test_wrong_password_names_the_fix() -> None:
    server = RefusingPostgres()
    try:
        store = PostgresStore(f"postgresql://app:secret@127.0.0.1:{server.port}/db",
                              connect_timeout_s=3)
        with pytest.raises(StoreUnavailable) as info:
            store.apply([orchestrator(1)], ALL_WRITERS)
    finally:
        server.close()
    message = str(info.value)
    assert "password authentication failed" in message
    assert "INSTRUMENT_DATABASE_URL" in message
    assert "secret" not in message
    assert not isinstance(info.value.__cause__, StoreUnavailable)


def test_nothing_listening_is_store_unavailable() -> None:
    with socketless_port() as port:
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout_s=2)
        with pytest.raises(StoreUnavailable, match=r"running.*INSTRUMENT_DATABASE_URL"):
            store.apply([orchestrator(1)], ALL_WRITERS)


def test_sqlite_file_in_a_missing_directory(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    with pytest.raises(StoreUnavailable, match=r"directory exists.*INSTRUMENT_DATABASE_URL"):
        store.apply([orchestrator(1)], ALL_WRITERS)


def test_outage_then_recovery_applies_the_batch_exactly_once(pg_url: str) -> None:
    PostgresStore(pg_url).migrate()
    pg_port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = TcpProxy(pg_port).start()
    dbname = pg_url.rsplit("/", 1)[1]
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}",
                          connect_timeout_s=2)
    try:
        assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
        proxy.stop()
        batch = [orchestrator(2), agentkit(2)]
        with pytest.raises(StoreUnavailable):
            store.apply(batch, ALL_WRITERS)
        proxy = TcpProxy(pg_port, port=proxy.port).start()
        deadline = time.monotonic() + 20
        while True:  # the pipeline's retry, bounded
            try:
                assert store.apply(batch, ALL_WRITERS).applied == 2
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert store.apply(batch, ALL_WRITERS).duplicates == 2
    finally:
        store.close()
        proxy.stop()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("select sum(run_count) from agent_stats").fetchone()
        assert row is not None
        assert row[0] == 3


class socketless_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = int(s.getsockname()[1])
        s.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        return None


def test_missing_function_names_it_and_migrate_recreates_it(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.migrate()
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("drop function instrument_apply_intensity(jsonb)")
    fresh = PostgresStore(pg_url)
    with pytest.raises(SchemaMismatch, match=r"instrument_apply_intensity.*instrument migrate"):
        fresh.apply([orchestrator(1)], ALL_WRITERS)
    fresh.migrate()
    assert fresh.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    assert [m["total_executions"] for m in fresh.intensity_metrics()] == [1]
    fresh.close()


def test_a_statement_timeout_bounds_a_blocked_batch(pg_url: str) -> None:
    store = PostgresStore(pg_url, statement_timeout_ms=500)
    store.migrate()
    rec = orchestrator(1)
    with psycopg.connect(pg_url) as blocker:  # holds the agent_stats row lock
        blocker.execute("insert into agent_stats (agent_id) values ('agent-orch')")
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.apply([rec], ALL_WRITERS)
        assert time.monotonic() - t0 < 5
        blocker.rollback()
    assert store.apply([rec], ALL_WRITERS).applied == 1  # nothing of the timed-out batch stuck
    store.close()


def test_a_postgres_batch_costs_the_same_round_trips_whatever_its_size(pg_url: str) -> None:
    """O(1) round trips per batch: count the protocol messages the store sends."""
    PostgresStore(pg_url).migrate()
    pg_port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = TcpProxy(pg_port).start()
    dbname = pg_url.rsplit("/", 1)[1]
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}?sslmode=disable&gssencmode=disable")
    try:
        store.apply([orchestrator(0)], ALL_WRITERS)  # connect and check the schema once
        trips = []
        for size in (1, 10, 500):
            time.sleep(0.2)
            before = proxy.messages["Q"] + proxy.messages["S"]
            batch = [agentkit(1000 * size + i) for i in range(size)]
            assert store.apply(batch, ALL_WRITERS).applied == size
            time.sleep(0.2)
            trips.append(proxy.messages["Q"] + proxy.messages["S"] - before)
    finally:
        store.close()
        proxy.stop()
    assert trips[0] == trips[1] == trips[2] <= 2, trips  # the pool's liveness check + ingest
