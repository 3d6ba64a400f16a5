"""SupabaseStore end to end: the real supabase-py client -> PostgREST-protocol gateway -> Postgres.

The database is prepared like a Supabase project (roles, ``auth.uid()``, default grants) and
then gets the same SQL migration as production, so ``instrument_ingest`` and the row level
security policies under test are the shipped ones.
"""

from __future__ import annotations

import asyncio
import random
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import ClientOptions, acreate_client, create_client

from instrument.config import resolve_settings
from instrument.errors import ConfigurationError, RecordRejected, SchemaMismatch, StoreUnavailable
from instrument.stores import (
    AISConfigSource,
    ExecutionFilter,
    ExecutionQueries,
    SchemaAdmin,
    Store,
    open_store,
)
from instrument.stores.supabase.store import SupabaseStore, project_url
from tests.integration.postgrest_gateway import (
    PostgrestGateway,
    bootstrap_supabase_platform,
    make_jwt,
)
from tests.integration.supabase_support import (
    apply_production_migration,
    count_rows,
    make_record,
    table_snapshot,
)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
USER_A = str(uuid.UUID(int=0xA))
USER_B = str(uuid.UUID(int=0xB))


@pytest.fixture
def platform_db(pg_url: str) -> str:
    """A fresh database prepared like a new Supabase project (roles, auth schema, grants)."""
    bootstrap_supabase_platform(pg_url)
    return pg_url


@pytest.fixture
def supabase_db(platform_db: str) -> str:
    """A Supabase-like database with the logged-execution migration applied."""
    apply_production_migration(platform_db)
    return platform_db


@pytest.fixture
def gateway(supabase_db: str) -> Iterator[PostgrestGateway]:
    with PostgrestGateway(supabase_db) as gw:
        yield gw


@pytest.fixture
def store(gateway: PostgrestGateway) -> Iterator[SupabaseStore]:
    s = SupabaseStore(url=gateway.url, key=gateway.service_role_key)
    try:
        yield s
    finally:
        s.close()


def mixed_batch() -> list:  # type: ignore[type-arg]
    """Both engines, successes and failures, measured and unmeasured tokens, two users."""
    return [
        make_record("agent-1", user_id=USER_A, engine="agentkit", offset_s=0),
        make_record("agent-1", user_id=USER_A, engine="agentkit", success=False, offset_s=1),
        make_record("agent-1", user_id=USER_A, engine="agentkit", tokens=None, offset_s=2),
        make_record("agent-2", user_id=USER_B, engine="orchestrator", tokens=(300, 100),
                    offset_s=3),
        make_record("agent-2", user_id=USER_B, engine="orchestrator", success=False,
                    tokens=(50, 0), offset_s=4),
    ]


# --- writes -------------------------------------------------------------------------------


def test_mixed_run_leaves_expected_rows_in_all_four_tables(
    store: SupabaseStore, supabase_db: str
) -> None:
    batch = mixed_batch()
    result = store.apply(batch, ("executions", "logs", "stats", "intensity"))
    assert (result.applied, result.duplicates) == (5, 0)

    assert count_rows(supabase_db, "agent_executions") == 5
    assert count_rows(supabase_db, "agent_logs") == 5
    with psycopg.connect(supabase_db) as conn:
        rows = conn.execute(
            "SELECT id::text, agent_id, user_id, engine, status, total_tokens, error_type, "
            "execution_duration_ms FROM agent_executions").fetchall()
        by_id = {r[0]: r for r in rows}
        for rec in batch:
            row = by_id[str(rec.execution_id)]
            assert row[1:5] == (rec.agent_id, rec.user_id, rec.engine, rec.status)
            tokens = rec.result.tokens.total_tokens if rec.result.tokens else None
            assert row[5] == tokens
            assert row[6] == (None if rec.result.success else "ToolError")
            assert row[7] == 1500
        logs = conn.execute(
            "SELECT execution_id::text, status, run_tokens, user_credits_used FROM agent_logs"
        ).fetchall()
        assert {r[0] for r in logs} == {str(r.execution_id) for r in batch}
        credits = {r[0]: r[3] for r in logs}
        assert credits[str(batch[0].execution_id)] == 1  # ceil(140 / 1000)
        assert credits[str(batch[2].execution_id)] is None  # tokens not measured
        stats = {r[0]: r[1:] for r in conn.execute(
            "SELECT agent_id, run_count, success_count, failure_count, total_tokens, "
            "total_duration_ms, last_run_status FROM agent_stats").fetchall()}
        assert stats == {
            "agent-1": (3, 2, 1, 280, 4500, "completed"),
            "agent-2": (2, 1, 1, 450, 3000, "failed"),
        }
        intensity = {r[0]: r[1:] for r in conn.execute(
            "SELECT agent_id, total_executions, successful_executions, failed_executions "
            "FROM agent_intensity_metrics").fetchall()}
        assert intensity == {"agent-1": (3, 2, 1), "agent-2": (2, 1, 1)}

    # The CLI's reads go through the same client.
    recent = store.recent_executions(limit=10)
    assert [r["id"] for r in recent] == [str(r.execution_id) for r in reversed(batch)]
    only = store.recent_executions(where=ExecutionFilter(agent_id="agent-2", status="failed"))
    assert [r["id"] for r in only] == [str(batch[4].execution_id)]
    assert [s["agent_id"] for s in store.agent_stats()] == ["agent-1", "agent-2"]
    metrics = store.intensity_metrics("agent-1")
    assert len(metrics) == 1
    assert metrics[0]["total_executions"] == 3


def test_writer_subsets_are_respected(store: SupabaseStore, supabase_db: str) -> None:
    only_exec = make_record("agent-9", user_id=USER_A, writers=("executions",))
    default = make_record("agent-9", user_id=USER_A)
    store.apply([only_exec, default], ("executions", "stats"))
    assert count_rows(supabase_db, "agent_executions") == 2
    assert count_rows(supabase_db, "agent_logs") == 0
    with psycopg.connect(supabase_db) as conn:
        row = conn.execute("SELECT run_count FROM agent_stats WHERE agent_id = 'agent-9'"
                           ).fetchone()
    assert row == (1,)


def test_replaying_the_same_batch_three_times_changes_nothing(
    store: SupabaseStore, supabase_db: str
) -> None:
    batch = mixed_batch()
    first = store.apply(batch, ("executions", "logs", "stats", "intensity"))
    assert first.applied == len(batch)
    before = table_snapshot(supabase_db)
    assert all(before[t] for t in before)
    for _ in range(3):
        again = store.apply(batch, ("executions", "logs", "stats", "intensity"))
        assert (again.applied, again.duplicates) == (0, len(batch))
    assert table_snapshot(supabase_db) == before


def test_a_batch_is_one_rpc_request(store: SupabaseStore, gateway: PostgrestGateway) -> None:
    gateway.clear_requests()
    batch = [make_record(f"agent-{i % 3}", user_id=USER_A, offset_s=i) for i in range(60)]
    result = store.apply(batch, ("executions", "logs", "stats", "intensity"))
    assert result.applied == 60
    seen = gateway.requests()
    assert [(r.method, r.path) for r in seen] == [("POST", "/rest/v1/rpc/instrument_ingest")]
    assert seen[0].role == "service_role"
    assert len(seen[0].body["records"]) == 60


def test_response_text_is_stored_only_with_content_capture(
    gateway: PostgrestGateway, supabase_db: str
) -> None:
    secret = "the model's full answer"
    plain = SupabaseStore(url=gateway.url, key=gateway.service_role_key)
    capturing = SupabaseStore(url=gateway.url, key=gateway.service_role_key,
                              capture_content=True)
    try:
        a = make_record("agent-c", response=secret)
        b = make_record("agent-c", response=secret)
        plain.apply([a], ("executions",))
        capturing.apply([b], ("executions",))
    finally:
        plain.close()
        capturing.close()
    with psycopg.connect(supabase_db) as conn:
        logs = dict(conn.execute("SELECT id::text, logs::text FROM agent_executions").fetchall())
    assert secret not in logs[str(a.execution_id)]
    assert secret in logs[str(b.execution_id)]


# --- row level security, for real ------------------------------------------------------------


def test_authenticated_user_sees_only_own_rows_and_cannot_write(
    store: SupabaseStore, gateway: PostgrestGateway, supabase_db: str
) -> None:
    batch = mixed_batch()
    store.apply(batch, ("executions", "logs", "stats", "intensity"))
    token = gateway.token("authenticated", sub=USER_A)
    user = create_client(gateway.url, gateway.anon_key,
                         ClientOptions(headers={"Authorization": f"Bearer {token}"}))

    mine = user.table("agent_executions").select("id, user_id").execute().data
    assert {r["id"] for r in mine} == {str(r.execution_id) for r in batch if r.user_id == USER_A}
    assert {r["user_id"] for r in mine} == {USER_A}
    assert {r["user_id"] for r in user.table("agent_logs").select("*").execute().data} == {
        USER_A}
    # no record names an owner: the per-agent rows are service_role's only (API.md, "Owner")
    assert user.table("agent_stats").select("*").execute().data == []
    # Filtering for another user's rows returns nothing rather than leaking them.
    other = user.table("agent_executions").select("id").eq("user_id", USER_B).execute().data
    assert other == []
    assert all(r.role == "authenticated" for r in gateway.requests()[-4:])

    before = table_snapshot(supabase_db)
    forged = make_record("agent-1", user_id=USER_A)
    with pytest.raises(APIError) as denied:
        user.table("agent_executions").insert({
            "id": str(forged.execution_id), "agent_id": "agent-1", "user_id": USER_A,
            "engine": "agentkit", "status": "completed",
            "started_at": forged.started_at.isoformat(),
            "completed_at": forged.completed_at.isoformat()}).execute()
    assert denied.value.code == "42501"
    with pytest.raises(APIError) as no_rpc:
        user.rpc("instrument_ingest", {"records": [forged.to_json_dict()],
                                       "default_writers": ["executions"]}).execute()
    assert no_rpc.value.code == "42501"
    # No other write path is open to a signed-in user either.
    for fn, args in (
        ("increment_agent_stats", {"agent_id_input": "agent-1", "user_id_input": USER_A,
                                   "success": True}),
        ("instrument_apply_intensity", {"records": [forged.to_json_dict()]}),
    ):
        with pytest.raises(APIError) as other_rpc:
            user.rpc(fn, args).execute()
        assert other_rpc.value.code == "42501", fn
    for table, row in (("agent_stats", {"agent_id": "agent-x", "user_id": USER_A}),
                       ("instrument_schema_version", {"version": 99, "name": "forged"}),
                       ("instrument_ledger", {"execution_id": str(forged.execution_id),
                                              "writer": "stats"})):
        with pytest.raises(APIError) as other_insert:
            user.table(table).insert(row).execute()
        assert other_insert.value.code == "42501", table
    # Through the SDK, a user token gives a clear "use the service-role key" error.
    user_store = SupabaseStore(client=user)
    with pytest.raises(StoreUnavailable, match="SUPABASE_SERVICE_ROLE_KEY"):
        user_store.apply([forged], ("executions",))
    assert table_snapshot(supabase_db) == before


def test_anon_sees_nothing(store: SupabaseStore, gateway: PostgrestGateway) -> None:
    store.apply(mixed_batch(), ("executions", "logs", "stats", "intensity"))
    anon = create_client(gateway.url, gateway.anon_key)
    for table in ("agent_executions", "agent_logs", "agent_stats", "agent_intensity_metrics"):
        outcome: object
        try:
            outcome = anon.table(table).select("*").execute().data
        except APIError as exc:  # no grant at all is as good as no visible row
            outcome = exc.code
        assert outcome in ([], "42501"), (table, outcome)


_WORKER = """
import sys, threading
from instrument.stores.supabase.store import SupabaseStore
from tests.integration.supabase_support import make_record

url, key, proc = sys.argv[1], sys.argv[2], int(sys.argv[3])
WRITERS = ("executions", "logs", "stats", "intensity")
errors = []

def worker(t):
    store = SupabaseStore(url=url, key=key)
    try:
        recs = [make_record(f"agent-{i % 3}", success=i % 5 != 0, offset_s=i)
                for i in range(125)]
        batches = [recs[i:i + 25] for i in range(0, 125, 25)]
        for b in batches:
            store.apply(b, WRITERS)
        store.apply(batches[0], WRITERS)  # a retried batch: must change nothing
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        store.close()

threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
for th in threads: th.start()
for th in threads: th.join()
if errors:
    raise SystemExit("\\n".join(errors))
"""


def test_four_processes_of_four_threads_give_exact_counts(
    gateway: PostgrestGateway, supabase_db: str, tmp_path: Path
) -> None:
    import os

    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), gateway.url,
                               gateway.service_role_key, str(p)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
    # 16 writers x 125 executions; agent-0/1 get 42 per writer, agent-2 41; every 5th fails.
    assert count_rows(supabase_db, "agent_executions") == 2000
    assert count_rows(supabase_db, "agent_logs") == 2000
    with psycopg.connect(supabase_db) as conn:
        stats = dict(conn.execute(
            "SELECT agent_id, (run_count, success_count, failure_count, total_tokens)::text "
            "FROM agent_stats").fetchall())
        intensity = dict(conn.execute(
            "SELECT agent_id, total_executions FROM agent_intensity_metrics").fetchall())
    assert stats == {
        "agent-0": f"(672,{672 - 16 * 9},{16 * 9},{672 * 140})",
        "agent-1": f"(672,{672 - 16 * 8},{16 * 8},{672 * 140})",
        "agent-2": f"(656,{656 - 16 * 8},{16 * 8},{656 * 140})",
    }
    assert intensity == {"agent-0": 672, "agent-1": 672, "agent-2": 656}
    rpcs = gateway.requests(path_prefix="/rest/v1/rpc/")
    assert len(rpcs) == 16 * 6


# --- error mapping --------------------------------------------------------------------------


def test_missing_migration_is_a_schema_mismatch_naming_the_fix(platform_db: str) -> None:
    with PostgrestGateway(platform_db) as gw:
        s = SupabaseStore(url=gw.url, key=gw.service_role_key)
        try:
            with pytest.raises(SchemaMismatch) as exc:
                s.apply([make_record("agent-1")], ("executions",))
            message = str(exc.value)
            assert "instrument schema --dialect postgres" in message
            assert "supabase db push" in message
            assert "PGRST202" in message
            assert s.schema_version() is None
            with pytest.raises(SchemaMismatch, match="supabase db push"):
                s.migrate()
        finally:
            s.close()


def test_schema_version_and_migrate_on_an_applied_schema(store: SupabaseStore) -> None:
    version = store.schema_version()
    assert isinstance(version, int)
    assert version >= 1
    assert store.migrate() == version


@pytest.mark.parametrize("key", ["not-a-key", make_jwt("service_role", secret="x" * 40)])
def test_bad_key_is_store_unavailable_naming_the_variable(
    gateway: PostgrestGateway, supabase_db: str, key: str
) -> None:
    s = SupabaseStore(url=gateway.url, key=key)
    try:
        with pytest.raises(StoreUnavailable, match="SUPABASE_SERVICE_ROLE_KEY"):
            s.apply([make_record("agent-1")], ("executions",))
        with pytest.raises(StoreUnavailable, match="SUPABASE_SERVICE_ROLE_KEY"):
            s.agent_stats()
    finally:
        s.close()
    assert count_rows(supabase_db, "agent_executions") == 0


def test_outages_are_store_unavailable_and_the_retry_applies_once(
    store: SupabaseStore, gateway: PostgrestGateway, supabase_db: str
) -> None:
    batch = mixed_batch()
    gateway.fail_next(503)
    with pytest.raises(StoreUnavailable, match="503"):
        store.apply(batch, ("executions", "logs", "stats"))
    gateway.fail_next(502, body="Bad Gateway")
    with pytest.raises(StoreUnavailable):
        store.apply(batch, ("executions", "logs", "stats"))
    assert store.apply(batch, ("executions", "logs", "stats")).applied == len(batch)
    assert count_rows(supabase_db, "agent_executions") == len(batch)


def test_timeout_is_store_unavailable(gateway: PostgrestGateway) -> None:
    s = SupabaseStore(url=gateway.url, key=gateway.service_role_key, timeout_s=0.3)
    try:
        gateway.fail_next(503, delay_s=1.5)
        with pytest.raises(StoreUnavailable,
                           match=r"did not answer instrument_ingest\(batch of 1\) in time"):
            s.apply([make_record("agent-1")], ("executions",))
    finally:
        s.close()


def test_the_configured_timeouts_bound_a_hung_gateway(gateway: PostgrestGateway) -> None:
    """open_store passes the statement + network timeouts on as the HTTP timeout."""
    s = open_store("supabase", supabase_url=gateway.url, supabase_key=gateway.service_role_key,
                   connect_timeout_s=1.0, statement_timeout_s=0.3, network_timeout_s=0.2)
    try:
        gateway.fail_next(503, delay_s=3.0)
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match="in time"):
            s.apply([make_record("agent-1")], ("executions",))
        assert time.monotonic() - t0 < 2.0
    finally:
        s.close()


def _random_text(n: int) -> str:
    rng = random.Random(14)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def test_an_error_raised_for_the_data_is_rejected_whatever_its_class(
    store: SupabaseStore, supabase_db: str
) -> None:
    """54000 (an agent_id too large for its index; PostgREST answers 413) used to be
    "unavailable" and retried forever; P0001 from the application's trigger likewise."""
    good = make_record("agent-1", user_id=USER_A)
    huge = make_record("agent-1", user_id=USER_A).model_copy(
        update={"agent_id": _random_text(10_000)})  # around the record's own cap
    with pytest.raises(RecordRejected, match=r"rejected a record of instrument_ingest\(batch "
                                             r"of 2\) \(54000: index row") as batch_exc:
        store.apply([good, huge], ("executions", "logs", "stats", "intensity"))
    assert batch_exc.value.execution_id is None
    with pytest.raises(RecordRejected) as one_exc:
        store.apply([huge], ("executions",))
    assert one_exc.value.execution_id == str(huge.execution_id)
    assert len(str(one_exc.value)) < 1000  # the statement's name, not its SQL

    with psycopg.connect(supabase_db, autocommit=True) as conn:
        conn.execute("""
            create function public.guard_agents() returns trigger language plpgsql as $$
            begin
                if new.agent_id = 'blocked' then
                    raise exception 'agent % is blocked', new.agent_id;
                end if;
                if new.agent_id = 'standby' then  -- as a read-only standby answers
                    raise exception 'read-only' using errcode = '25006';
                end if;
                return new;
            end $$;
            create trigger guard_agents before insert on public.agent_executions
                for each row execute function public.guard_agents();
        """)
    with pytest.raises(RecordRejected, match="P0001: agent blocked is blocked"):
        store.apply([make_record("blocked")], ("executions",))
    with pytest.raises(StoreUnavailable, match=r"unavailable: .*\(25006: read-only\)"):
        store.apply([make_record("standby")], ("executions",))
    assert store.apply([good], ("executions", "logs", "stats", "intensity")).applied == 1
    assert count_rows(supabase_db, "agent_executions") == 1


def test_unreachable_project_is_store_unavailable() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = SupabaseStore(url=f"http://127.0.0.1:{port}", key=make_jwt("service_role"))
    try:
        with pytest.raises(StoreUnavailable, match="SUPABASE_URL"):
            s.apply([make_record("agent-1")], ("executions",))
    finally:
        s.close()


def test_bad_data_is_record_rejected_and_the_batch_is_atomic(
    store: SupabaseStore, supabase_db: str
) -> None:
    good = make_record("agent-1", user_id=USER_A)
    bad = make_record("agent-1", user_id=USER_A, duration_ms=1e13)  # overflows integer ms
    with pytest.raises(RecordRejected) as batch_exc:
        store.apply([good, bad], ("executions", "logs", "stats", "intensity"))
    assert "22003" in str(batch_exc.value)
    assert table_snapshot(supabase_db) == {t: [] for t in table_snapshot(supabase_db)}
    with pytest.raises(RecordRejected) as one_exc:
        store.apply([bad], ("executions",))
    assert one_exc.value.execution_id == str(bad.execution_id)
    assert store.apply([good], ("executions", "logs", "stats", "intensity")).applied == 1


# --- construction --------------------------------------------------------------------------


def test_open_store_names_the_missing_supabase_values() -> None:
    with pytest.raises(ConfigurationError) as exc:
        open_store("supabase")
    assert "SUPABASE_URL" in str(exc.value)
    assert "SUPABASE_SERVICE_ROLE_KEY" in str(exc.value)
    with pytest.raises(ConfigurationError, match="SUPABASE_SERVICE_ROLE_KEY"):
        open_store("supabase", supabase_url="https://x.supabase.co")
    settings = resolve_settings(database_url="supabase", environ={})
    with pytest.raises(ConfigurationError, match="SUPABASE_URL"):
        open_store(settings.database_url, supabase_url=settings.supabase_url,
                   supabase_key=settings.supabase_key)


def test_open_store_with_the_settings_values(gateway: PostgrestGateway) -> None:
    """What the runtime and the CLI do: the values come from Settings (SUPABASE_KEY works)."""
    settings = resolve_settings(database_url="supabase", environ={
        "SUPABASE_URL": gateway.url, "SUPABASE_KEY": gateway.service_role_key})
    s = open_store(settings.database_url, supabase_url=settings.supabase_url,
                   supabase_key=settings.supabase_key)
    try:
        assert isinstance(s, Store)
        assert all(isinstance(s, p) for p in (SchemaAdmin, ExecutionQueries, AISConfigSource))
        assert s.dialect == "supabase"
        assert gateway.url in s.display_url
        assert gateway.service_role_key not in s.display_url
        assert s.apply([make_record("agent-1")], ("executions",)).applied == 1
    finally:
        s.close()


@pytest.mark.parametrize("keep_content", [False, True])
def test_open_store_keeps_response_text_only_with_keep_content(
    gateway: PostgrestGateway, supabase_db: str, keep_content: bool
) -> None:
    """As on SQLite and Postgres (tests/stores/test_apply.py): ``open_store(url)`` drops the
    response text, ``keep_content=True`` stores it."""
    secret = "the model's full answer"
    values = {"supabase_url": gateway.url, "supabase_key": gateway.service_role_key}
    s = (open_store("supabase", keep_content=True, **values) if keep_content
         else open_store("supabase", **values))
    rec = make_record("agent-c", response=secret)
    try:
        assert s.apply([rec], ("executions", "logs")).applied == 1
    finally:
        s.close()
    with psycopg.connect(supabase_db) as conn:
        logs = conn.execute("SELECT logs::text FROM agent_executions WHERE id = %s",
                            (rec.execution_id,)).fetchone()
        full = conn.execute("SELECT full_output::text FROM agent_logs WHERE execution_id = %s",
                            (rec.execution_id,)).fetchone()
    assert logs is not None
    assert full is not None
    assert (secret in logs[0]) is keep_content
    assert (secret in full[0]) is keep_content


def test_a_supabase_url_with_a_host_names_the_project() -> None:
    s = open_store("supabase://abcd.supabase.co", supabase_url="https://other.supabase.co",
                   supabase_key="k")
    assert s.display_url == "supabase (https://abcd.supabase.co)"
    s.close()
    assert project_url("supabase://http://localhost:54321/", None) == "http://localhost:54321"
    assert project_url("supabase", "https://x.supabase.co") == "https://x.supabase.co"
    assert project_url("supabase://", None) is None
    rest = SupabaseStore(url="https://abcd.supabase.co/rest/v1/", key="k")
    assert rest.display_url == "supabase (https://abcd.supabase.co)"
    with pytest.raises(ConfigurationError, match="SUPABASE_URL"):
        SupabaseStore(url="abcd.supabase.co", key="k")


def test_an_existing_sync_client_is_used(gateway: PostgrestGateway, supabase_db: str) -> None:
    client = create_client(gateway.url, gateway.service_role_key)
    s = SupabaseStore(client=client)
    s.apply([make_record("agent-1")], ("executions", "stats"))
    s.close()  # not ours: stays usable
    assert client.table("agent_stats").select("run_count").execute().data == [{"run_count": 1}]


def test_an_existing_async_client_works(gateway: PostgrestGateway, supabase_db: str) -> None:
    async def make() -> object:
        return await acreate_client(gateway.url, gateway.service_role_key)

    aclient = asyncio.run(make())
    s = SupabaseStore(client=aclient)
    try:
        batch = mixed_batch()
        gateway.clear_requests()
        assert s.apply(batch, ("executions", "logs", "stats", "intensity")).applied == 5
        assert len(gateway.requests()) == 1
        assert s.apply(batch, ("executions", "logs", "stats", "intensity")).duplicates == 5
        assert {r["agent_id"] for r in s.agent_stats()} == {"agent-1", "agent-2"}
        assert len(s.recent_executions(limit=3)) == 3
        assert isinstance(s.schema_version(), int)
    finally:
        s.close()
    assert count_rows(supabase_db, "agent_logs") == 5


def test_a_client_of_another_kind_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="create_client"):
        SupabaseStore(client=object())


# --- the example ---------------------------------------------------------------------------


def test_example_app_runs_against_the_gateway(
    gateway: PostgrestGateway, supabase_db: str, tmp_path: Path
) -> None:
    env = {
        "SUPABASE_URL": gateway.url,
        "SUPABASE_SERVICE_ROLE_KEY": gateway.service_role_key,
        "INSTRUMENT_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": str(ROOT),
    }
    import os

    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "supabase" / "app.py")],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert count_rows(supabase_db, "agent_executions") == 3
    assert count_rows(supabase_db, "agent_logs") == 3
    with psycopg.connect(supabase_db) as conn:
        stats = conn.execute("SELECT run_count, success_count, failure_count FROM agent_stats "
                             "WHERE agent_id = 'support-bot'").fetchone()
    assert stats == (3, 2, 1)
    assert "support-bot" in proc.stdout


# --- the command line against Supabase -------------------------------------------------------


def test_cli_migrate_stats_and_tail_against_supabase(
    platform_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from instrument.cli import main

    with PostgrestGateway(platform_db) as gw:
        monkeypatch.setenv("SUPABASE_URL", gw.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", gw.service_role_key)
        monkeypatch.setenv("INSTRUMENT_SPOOL_DIR", str(tmp_path / "spool"))
        monkeypatch.setenv("COLUMNS", "200")

        assert main(["migrate", "--database-url", "supabase"]) != 0
        assert "supabase db push" in capsys.readouterr().err

        apply_production_migration(platform_db)
        s = SupabaseStore(url=gw.url, key=gw.service_role_key)
        try:
            s.apply(mixed_batch(), ("executions", "logs", "stats", "intensity"))
        finally:
            s.close()
        assert main(["migrate", "--database-url", "supabase"]) == 0
        assert main(["stats", "--database-url", "supabase"]) == 0
        assert main(["tail", "--database-url", "supabase"]) == 0
        out = capsys.readouterr().out
        assert "agent-1" in out
        assert "agent-2" in out


def test_records_wait_through_an_outage_and_land_once(
    gateway: PostgrestGateway, supabase_db: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import instrument
    from instrument import logged_execution

    monkeypatch.setenv("SUPABASE_URL", gateway.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", gateway.service_role_key)
    instrument.configure(database_url="supabase", spool_dir=tmp_path / "spool")

    @logged_execution(agent_id="agent_id", user_id=instrument.literal(USER_A))
    def run(agent_id: str) -> dict[str, object]:
        return {"success": True, "tokens": {"input_tokens": 5, "output_tokens": 5}}

    gateway.fail_next(503, count=2)
    for _ in range(3):
        run("agent-outage")
    assert instrument.flush(timeout_s=30)
    assert count_rows(supabase_db, "agent_executions") == 3
    with psycopg.connect(supabase_db) as conn:
        row = conn.execute("SELECT run_count, total_tokens FROM agent_stats").fetchone()
    assert row == (3, 30)
    statuses = [r.status for r in gateway.requests(path_prefix="/rest/v1/rpc/")]
    assert statuses[:2] == [503, 503]
    assert statuses[-1] == 200


def test_the_printed_schema_applies_like_supabase_db_push(
    platform_db: str, pg_admin_url: str
) -> None:
    """`instrument schema --dialect postgres` as one migration file, run by a non-superuser
    owner (Supabase's `postgres` role is not a superuser), then used through the API."""
    from psycopg.conninfo import make_conninfo

    from instrument.stores.migrations import ddl, expected_version

    owner = f"instr_owner_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{owner}\" LOGIN NOSUPERUSER PASSWORD '{password}'")
    try:
        with psycopg.connect(platform_db, autocommit=True) as conn:
            conn.execute(f'ALTER SCHEMA public OWNER TO "{owner}"')
            conn.execute(f'GRANT anon, authenticated, service_role TO "{owner}"')
        user_url = make_conninfo(platform_db, user=owner, password=password)
        with psycopg.connect(user_url) as conn:  # one transaction, like `supabase db push`
            conn.execute(ddl("postgres").encode())
        with PostgrestGateway(platform_db) as gw:
            s = SupabaseStore(url=gw.url, key=gw.service_role_key)
            try:
                assert s.migrate() == expected_version("postgres")
                assert s.apply(mixed_batch(), ("executions", "logs", "stats", "intensity")
                               ).applied == 5
                assert len(s.intensity_metrics()) == 2
            finally:
                s.close()
    finally:
        with psycopg.connect(platform_db, autocommit=True) as conn:
            conn.execute(f'REASSIGN OWNED BY "{owner}" TO postgres')
            conn.execute(f'DROP OWNED BY "{owner}"')
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def test_the_compose_example_runs_the_app_against_supabase_with_jaeger() -> None:
    """No Docker engine here: check the compose file's wiring against the example's files."""
    folder = ROOT / "examples" / "supabase"
    text = (folder / "docker-compose.yml").read_text()
    assert "image: jaegertracing/jaeger:2.20.0" in text
    assert "env_file: .env" in text
    assert "python /src/examples/supabase/app.py" in text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT: http://jaeger:4318" in text
    assert "OTEL_METRICS_EXPORTER: none" in text
    # the variables the compose file promises come from .env are the ones the example documents
    documented = (folder / ".env.example").read_text()
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "INSTRUMENT_DATABASE_URL"):
        assert name in text
        assert f"{name}=" in documented


def test_the_projects_ais_config_reads_back(store: SupabaseStore, supabase_db: str) -> None:
    from instrument.ais import AISConfig

    assert store.ais_config() == AISConfig()
    with psycopg.connect(supabase_db) as conn:
        conn.execute("update ais_config set value = '0.5'::jsonb "
                     "where key = 'dynamic.percentile'")
    assert store.ais_config().dynamic_percentile == 0.5
