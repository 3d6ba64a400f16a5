"""Every wait on PostgreSQL is bounded: a silent partition, a settings round trip, SET LOCAL.

The partition is a loopback proxy that keeps every connection open and stops forwarding (no
RST, no FIN): the kernel still acknowledges what the client sends, so only the client-side
deadline (statement timeout + network timeout) can notice. Exact counts afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from instrument.config import resolve_settings
from instrument.errors import StoreUnavailable
from instrument.stores import open_store
from instrument.stores.postgres.store import PostgresStore
from tests.stores.netfakes import TcpProxy
from tests.stores.records import ALL_WRITERS, agentkit, orchestrator

STATEMENT_MS = 3000
NETWORK_S = 1.0


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[PostgresStore, TcpProxy]]:
    """A migrated database, and a store that reaches it through a proxy we can partition."""
    PostgresStore(pg_url).migrate()
    port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = TcpProxy(port).start()
    dbname = pg_url.rsplit("/", 1)[1]
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}",
                          connect_timeout_s=2, statement_timeout_ms=STATEMENT_MS,
                          network_timeout_s=NETWORK_S)
    try:
        yield store, proxy
    finally:
        store.close()
        proxy.stop()


def _counts(pg_url: str) -> tuple[int, int, int, int]:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "select (select count(*) from agent_executions), (select count(*) from agent_logs),"
            " (select coalesce(sum(run_count), 0) from agent_stats),"
            " (select coalesce(sum(total_executions), 0) from agent_intensity_metrics)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _wait_for_lock_wait(pg_url: str, timeout_s: float = 10) -> None:
    """Until a logged-execution backend waits for a lock (the batch is on the server)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from pg_stat_activity where application_name = "
                "'logged-execution' and wait_event_type = 'Lock'").fetchone()
            if row is not None and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the batch never reached the server")


def test_a_partition_during_a_batch_is_unavailable_in_time_then_lands_once(
        pg_url: str, proxied: tuple[PostgresStore, TcpProxy]) -> None:
    store, proxy = proxied
    assert store.apply([orchestrator(0)], ALL_WRITERS).applied == 1  # connected, schema checked
    batch = [orchestrator(1), agentkit(1), agentkit(2)]
    outcome: dict[str, Any] = {}

    def run() -> None:
        t0 = time.monotonic()
        try:
            store.apply(batch, ALL_WRITERS)
        except BaseException as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - t0

    with psycopg.connect(pg_url) as blocker:  # the batch waits for this row lock on the server
        blocker.execute("select 1 from agent_stats where agent_id = 'agent-orch' for update")
        worker = threading.Thread(target=run)
        worker.start()
        _wait_for_lock_wait(pg_url)
        proxy.partition()  # silent from now on: the answer will never come back
        blocker.rollback()  # the server commits the batch; its answer is swallowed
    worker.join(30)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), StoreUnavailable), outcome
    assert "did not answer instrument_ingest(batch of 3)" in str(outcome["error"])
    # the deadline is 3 s + 1 s; it fired, and not much later (the wait started before it)
    assert store.deadline_s == 4.0
    assert outcome["elapsed"] < store.deadline_s + 2.0, outcome
    assert _counts(pg_url) == (4, 4, 4, 4)  # committed on the server, unknown to the client

    proxy.heal()
    t0 = time.monotonic()
    while True:  # the pipeline's retry, bounded: on a new connection
        try:
            result = store.apply(batch, ALL_WRITERS)
            break
        except StoreUnavailable:
            assert time.monotonic() - t0 < 20
            time.sleep(0.2)
    assert (result.applied, result.duplicates) == (0, 3)  # landed exactly once
    assert _counts(pg_url) == (4, 4, 4, 4)


def test_a_partition_before_a_batch_is_unavailable_in_time_then_lands(
        pg_url: str, proxied: tuple[PostgresStore, TcpProxy]) -> None:
    """An idle pooled connection that went silent: the bounded liveness check drops it, a new
    connection cannot log in, and the batch waits in the pipeline for the network."""
    store, proxy = proxied
    assert store.apply([orchestrator(0)], ALL_WRITERS).applied == 1
    proxy.partition()
    batch = [orchestrator(1), agentkit(1)]
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.apply(batch, ALL_WRITERS)
    elapsed = time.monotonic() - t0
    # check (1 s) + connect attempts (2 s each, libpq's minimum), far from "forever"
    assert elapsed < 10, elapsed
    assert _counts(pg_url) == (1, 1, 1, 1)
    proxy.heal()
    t0 = time.monotonic()
    while True:
        try:
            result = store.apply(batch, ALL_WRITERS)
            break
        except StoreUnavailable:
            assert time.monotonic() - t0 < 20
            time.sleep(0.2)
    assert (result.applied, result.duplicates) == (2, 0)
    assert _counts(pg_url) == (3, 3, 3, 3)


def test_the_statement_timeout_is_local_to_the_batch(pg_url: str) -> None:
    """SET LOCAL: nothing of the batch's settings outlives its transaction on the connection."""
    store = PostgresStore(pg_url, statement_timeout_ms=1234, network_timeout_s=7)
    store.migrate()
    assert store.apply([orchestrator(1)], ALL_WRITERS).applied == 1
    with store._connection("a test") as conn:
        assert conn.execute("show statement_timeout").fetchone() == ("0",)
        params = conn.info.get_parameters()
        assert params["tcp_user_timeout"] == "7000"
        assert params["keepalives"] == "1"
        assert int(params["keepalives_idle"]) + 3 * int(params["keepalives_interval"]) in (
            range(6, 10))
        assert params["connect_timeout"] == "5"
    store.close()


def test_timeouts_flow_from_the_environment_to_the_store(pg_url: str) -> None:
    settings = resolve_settings(database_url=pg_url, environ={
        "INSTRUMENT_CONNECT_TIMEOUT_MS": "2500", "INSTRUMENT_STATEMENT_TIMEOUT_MS": "1500",
        "INSTRUMENT_NETWORK_TIMEOUT_MS": "4000"})
    assert (settings.connect_timeout_s, settings.statement_timeout_s,
            settings.network_timeout_s) == (2.5, 1.5, 4.0)
    explicit = resolve_settings(database_url=pg_url, statement_timeout_s=0.75, environ={})
    assert (explicit.connect_timeout_s, explicit.statement_timeout_s,
            explicit.network_timeout_s) == (5.0, 0.75, 10.0)
    store = open_store(pg_url, connect_timeout_s=settings.connect_timeout_s,
                       statement_timeout_s=settings.statement_timeout_s,
                       network_timeout_s=settings.network_timeout_s)
    assert isinstance(store, PostgresStore)
    assert (store.connect_timeout_s, store.statement_timeout_ms, store.network_timeout_s,
            store.deadline_s) == (2.5, 1500, 4.0, 5.5)
    store.close()


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_bad_timeout_names_the_variable(value: str) -> None:
    from instrument.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="INSTRUMENT_NETWORK_TIMEOUT_MS"):
        resolve_settings(environ={"INSTRUMENT_NETWORK_TIMEOUT_MS": value})
