"""Postgres-only SQL surface: increment_agent_stats, row level security, the ingest grant."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from instrument.stores.postgres.store import PostgresStore, ingest_json, ingest_payload
from tests.stores.records import ALL_WRITERS, agentkit, orchestrator


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url)
    store.migrate()
    yield store
    store.close()


def _stats(url: str, agent: str) -> tuple[int, int, int, int, int] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select run_count, success_count, failure_count, total_tokens, total_duration_ms "
            "from agent_stats where agent_id = %s", (agent,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]), int(row[3]),
                                      int(row[4]))


def test_three_argument_increment_agent_stats_still_works(pg: PostgresStore) -> None:
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("select increment_agent_stats('legacy-agent', 'u1', true)")
        conn.execute("select increment_agent_stats('legacy-agent', 'u1', false)")
        conn.execute("select increment_agent_stats(agent_id_input => 'legacy-agent', "
                     "user_id_input => 'u1', success => true)")
    assert _stats(pg.url, "legacy-agent") == (3, 2, 1, 0, 0)


def test_increment_agent_stats_with_an_execution_id_is_idempotent(pg: PostgresStore) -> None:
    rec = orchestrator(1)
    eid = str(rec.execution_id)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        applied = [
            conn.execute("select increment_agent_stats(%s, 'user-1', true, %s, 1200, 2502)",
                         ("agent-orch", eid)).fetchone()
            for _ in range(3)
        ]
    assert [a[0] for a in applied if a] == [True, False, False]
    assert _stats(pg.url, "agent-orch") == (1, 1, 0, 1200, 2502)
    # the SDK's own stats writer shares the ledger: delivering the record adds nothing more
    result = pg.apply([rec], ALL_WRITERS)
    assert result.applied == 1  # its executions/logs/intensity effects were still new
    assert _stats(pg.url, "agent-orch") == (1, 1, 0, 1200, 2502)


def _login(conn: psycopg.Connection[tuple[object, ...]], role: str, sub: str | None) -> None:
    conn.execute(f"set role {role}")
    claims = json.dumps({"sub": sub, "role": role}) if sub else ""
    conn.execute("select set_config('request.jwt.claims', %s, false)", (claims,))


def test_row_level_security_users_read_only_their_rows(pg: PostgresStore) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    # each user runs their own agent: the per-agent rows belong to the owner it names
    pg.apply([orchestrator(1, user_id=alice, agent_id="a-alice"),
              agentkit(1, user_id=bob, agent_id="a-bob"),
              agentkit(2, user_id=bob, agent_id="a-bob")], ALL_WRITERS)
    pg.apply([r.model_copy(update={"owner_id": r.user_id}) for r in (
        orchestrator(3, user_id=alice, agent_id="a-alice"),
        agentkit(3, user_id=bob, agent_id="a-bob"))], ALL_WRITERS)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        _login(conn, "authenticated", alice)
        for table in ("agent_executions", "agent_logs", "agent_stats"):
            users = {r[0] for r in conn.execute(f"select user_id from {table}").fetchall()}
            assert users == {alice}, table
        _login(conn, "authenticated", bob)
        assert conn.execute("select count(*) from agent_executions").fetchone() == (3,)
        _login(conn, "authenticated", None)
        assert conn.execute("select count(*) from agent_logs").fetchone() == (0,)
        _login(conn, "authenticated", bob)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into agent_stats (agent_id, user_id) values ('x', %s)", (bob,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update agent_stats set run_count = 1000")
        for ledger in ("instrument_ledger", "instrument_applied"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select count(*) from {ledger}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select instrument_ingest(%s, %s)",
                         (Jsonb([ingest_payload(agentkit(9), capture_content=False)]),
                          list(ALL_WRITERS)))
        _login(conn, "anon", None)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from agent_executions")
        _login(conn, "service_role", None)
        assert conn.execute("select count(*) from agent_executions").fetchone() == (5,)
        out = conn.execute("select instrument_ingest(%s, %s)",
                           (Jsonb([ingest_payload(agentkit(9), capture_content=False)]),
                            list(ALL_WRITERS))).fetchone()
        assert out is not None
        assert out[0] == {"applied": 1, "duplicates": 0}


def test_ingest_function_is_security_definer_with_fixed_search_path(pg: PostgresStore) -> None:
    with psycopg.connect(pg.url) as conn:
        row = conn.execute(
            "select prosecdef, proconfig from pg_proc "
            "where oid = 'public.instrument_ingest(jsonb, text[])'::regprocedure").fetchone()
    assert row is not None
    assert row[0] is True
    assert any(c.startswith("search_path=") for c in row[1])


def test_ingest_rejects_a_bad_uuid_as_a_record_error(pg: PostgresStore) -> None:
    payload = ingest_payload(orchestrator(1), capture_content=False)
    payload["execution_id"] = "not-a-uuid"
    with psycopg.connect(pg.url) as conn, pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute("select instrument_ingest(%s, %s)", (Jsonb([payload]), ["executions"]))


def test_migrate_replaces_the_origin_three_argument_function(pg_url: str) -> None:
    """Left in place, an origin (uuid, uuid, boolean) overload would make rpc ambiguous."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("create function increment_agent_stats(agent_id_input uuid, "
                     "user_id_input uuid, success boolean) returns void language sql as $$ $$")
    store = PostgresStore(pg_url)
    store.migrate()
    store.close()
    agent = str(uuid.uuid4())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("select increment_agent_stats(agent_id_input => %s, user_id_input => %s, "
                     "success => true)", (agent, str(uuid.uuid4())))
        overloads = conn.execute(
            "select count(*) from pg_proc where proname = 'increment_agent_stats'").fetchone()
    assert overloads == (1,)
    assert _stats(pg_url, agent) == (1, 1, 0, 0, 0)


def test_ingest_json_drops_response_text_only_without_content_capture() -> None:
    """With and without responses in the batch: the payload is the records minus nulls."""
    quiet = agentkit(3).model_copy(
        update={"result": agentkit(3).result.model_copy(update={"response": None})})
    mixed = [quiet, agentkit(4), orchestrator(5)]

    def expected(capture: bool, records: list[object]) -> list[object]:
        def strip(value: object) -> object:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if v is not None}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value
        return [strip(ingest_payload(r, capture_content=capture))  # type: ignore[arg-type]
                for r in records]

    for capture in (False, True):
        for batch in (mixed, [quiet]):
            sent = json.loads(ingest_json(batch, capture_content=capture))
            assert sent == expected(capture, batch)
            assert all(("response" in r["result"]) == (capture and r["result"] is not None
                                                        and rec.result.response is not None)
                       for r, rec in zip(sent, batch, strict=True))


def test_a_row_another_writer_is_inserting_right_now_is_kept_not_a_rejected_batch(
        pg: PostgresStore) -> None:
    """An agent_executions row with the same id, inserted outside the SDK and committed while
    the batch waits on it, stays as it is; the record's other writers still apply."""
    import threading
    import time

    rec = agentkit(7)
    eid = str(rec.execution_id)
    outside = psycopg.connect(pg.url)
    try:
        outside.execute("insert into agent_executions (id, agent_id, engine, status, "
                        "started_at, completed_at) values (%s, 'written-elsewhere', 'legacy', "
                        "'completed', now(), now())", (eid,))
        done: list[object] = []
        worker = threading.Thread(target=lambda: done.append(pg.apply([rec], ALL_WRITERS)))
        worker.start()
        with psycopg.connect(pg.url, autocommit=True) as watch:  # until ingest waits on us
            for _ in range(500):
                waiting = watch.execute(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                    "and query like %s", ("%instrument_ingest%",)).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.01)
        outside.commit()
    finally:
        outside.close()
    worker.join(30)
    assert len(done) == 1, "the batch was refused"
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("select agent_id from agent_executions where id = %s",
                            (eid,)).fetchone() == ("written-elsewhere",)
        assert conn.execute("select count(*) from agent_logs where execution_id = %s",
                            (eid,)).fetchone() == (1,)
    assert _stats(pg.url, rec.agent_id or "") is not None
