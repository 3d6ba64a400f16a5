"""Schema v6 on Supabase, end to end: the real supabase-py client -> the PostgREST test gateway
-> Postgres prepared like a Supabase project, with the shipped migration.

Row level security is exercised with Supabase's own roles and signed JWTs: a user reads their
own usage_ledger rows; a tenant admin (``app_metadata.tenant_role = 'admin'`` and
``app_metadata.tenant_id``) reads the tenant's; the same claims in ``user_metadata`` (which a
user can edit) give nothing; anon reads nothing; nobody but the service writes; and the
per-agent tables no longer show one user's runs to another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from instrument.stores.base import BudgetSource, ExecutionFilter, Spend
from instrument.stores.supabase.store import SupabaseStore
from instrument.writers import BUILTIN_WRITERS
from tests.integration.postgrest_gateway import PostgrestGateway, bootstrap_supabase_platform
from tests.integration.supabase_support import apply_production_migration
from tests.stores.records import T0, accounting

pytestmark = pytest.mark.postgres

USER_A = str(uuid.UUID(int=0xA))
USER_B = str(uuid.UUID(int=0xB))
USER_C = str(uuid.UUID(int=0xC))
MIDNIGHT = T0.replace(hour=0)


@pytest.fixture
def supabase_db(pg_url: str) -> str:
    bootstrap_supabase_platform(pg_url)
    apply_production_migration(pg_url)
    return pg_url


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


def _client(gateway: PostgrestGateway, sub: str | None = None, **claims: Any) -> Client:
    """A client signed in as `sub` (authenticated) with extra JWT claims; anon without."""
    if sub is None:
        return create_client(gateway.url, gateway.anon_key)
    token = gateway.token("authenticated", sub=sub, **claims)
    return create_client(gateway.url, gateway.anon_key,
                         ClientOptions(headers={"Authorization": f"Bearer {token}"}))


def _ledger_keys(client: Client) -> set[tuple[str, str]]:
    data = client.table("usage_ledger").select("tenant_id, user_id").execute().data
    return {(r["tenant_id"], r["user_id"]) for r in data}


def _seed(store: SupabaseStore) -> None:
    """Users A and B in tenant t1, C in t2; B and C run A's agent (owned by A)."""
    store.apply([
        accounting(1, user_id=USER_A, tenant_id="t1", owner_id=USER_A),
        accounting(2, user_id=USER_B, tenant_id="t1", owner_id=USER_A, status="paused"),
        accounting(3, user_id=USER_C, tenant_id="t2", owner_id=USER_A, cost=None),
        accounting(4, user_id=USER_B, tenant_id="t1", agent_id="agent-b", owner_id=USER_B),
        accounting(5, user_id=USER_B, tenant_id="t1", status="refused"),
    ], BUILTIN_WRITERS)


def test_the_new_columns_and_the_ledger_land_through_the_rpc(
        store: SupabaseStore, supabase_db: str) -> None:
    parent = accounting(1, tenant_id="t1")
    child = accounting(2, tenant_id="t1", status="paused", cost="0.000000075").model_copy(
        update={"parent_execution_id": parent.execution_id, "tags": ("eu",),
                "metadata": {"ticket": "T-1"}})
    batch = [parent, child, accounting(3, status="refused")]
    assert store.apply(batch, BUILTIN_WRITERS).applied == 3
    assert store.apply(batch, BUILTIN_WRITERS).duplicates == 3  # a retried batch
    with psycopg.connect(supabase_db) as conn:
        row = conn.execute("select status, parent_execution_id, tags, metadata, cost_usd, "
                           "tenant_id from agent_executions where id = %s",
                           (child.execution_id,)).fetchone()
        ledger = conn.execute("select runs, paused, refused, cost_usd from usage_ledger "
                              "where tenant_id = 't1'").fetchone()
    assert row == ("paused", parent.execution_id, ["eu"], {"ticket": "T-1"},
                   Decimal("0.000000075"), "t1")
    assert ledger == (2, 1, 0, Decimal("0.000123075"))
    # the CLI's filters, through PostgREST
    assert [r["id"] for r in store.recent_executions(where=ExecutionFilter(tag="eu"))] == [
        str(child.execution_id)]
    assert {r["id"] for r in store.recent_executions(where=ExecutionFilter(
        tenant_id="t1", since=T0 + timedelta(seconds=2)))} == {str(child.execution_id)}
    children = store.recent_executions(where=ExecutionFilter(
        parent_execution_id=str(parent.execution_id)))
    assert [r["id"] for r in children] == [str(child.execution_id)]


def test_users_read_their_own_ledger_rows_and_tenant_admins_the_tenants(
        store: SupabaseStore, gateway: PostgrestGateway) -> None:
    _seed(store)
    assert _ledger_keys(_client(gateway, USER_A)) == {("t1", USER_A)}
    assert _ledger_keys(_client(gateway, USER_B)) == {("t1", USER_B)}
    admin = _client(gateway, USER_A, app_metadata={"tenant_id": "t1", "tenant_role": "admin"})
    assert _ledger_keys(admin) == {("t1", USER_A), ("t1", USER_B)}
    member = _client(gateway, USER_C, app_metadata={"tenant_id": "t2", "tenant_role": "member"})
    assert _ledger_keys(member) == {("t2", USER_C)}
    # user_metadata is the user's to edit: claiming admin there gives nothing extra
    forged = _client(gateway, USER_C, user_metadata={"tenant_id": "t1", "tenant_role": "admin"})
    assert _ledger_keys(forged) == {("t2", USER_C)}
    # an admin of another tenant reads that tenant only
    other = _client(gateway, USER_C, app_metadata={"tenant_id": "t2", "tenant_role": "admin"})
    assert _ledger_keys(other) == {("t2", USER_C)}
    anon = _client(gateway)
    try:
        seen: object = anon.table("usage_ledger").select("*").execute().data
    except APIError as exc:
        seen = exc.code
    assert seen in ([], "42501")


def test_clients_write_nothing_and_cannot_call_the_budget_functions(
        store: SupabaseStore, gateway: PostgrestGateway, supabase_db: str) -> None:
    _seed(store)
    with psycopg.connect(supabase_db) as conn:
        before = conn.execute("select * from usage_ledger order by 1, 2, 3, 4").fetchall()
    admin = _client(gateway, USER_A, app_metadata={"tenant_id": "t1", "tenant_role": "admin"})
    row = {"tenant_id": "t1", "user_id": USER_A, "agent_id": "x", "day": "2026-11-01",
           "runs": 1}
    for client in (admin, _client(gateway)):
        with pytest.raises(APIError) as denied:
            client.table("usage_ledger").insert(row).execute()
        assert denied.value.code == "42501"
        with pytest.raises(APIError) as no_inflight:
            client.table("budget_inflight").select("*").execute()
        assert no_inflight.value.code == "42501"
        for fn, args in (
            ("instrument_budget_spend", {"p_per": "user", "p_key": USER_A,
                                         "p_since": MIDNIGHT.isoformat()}),
            ("instrument_budget_reserve", {
                "p_per": "user", "p_key": USER_A, "p_since": MIDNIGHT.isoformat(),
                "p_limit_usd": "1", "p_limit_tokens": None,
                "p_execution_id": str(uuid.uuid4()), "p_ttl_s": 60}),
        ):
            with pytest.raises(APIError) as no_rpc:
                client.rpc(fn, args).execute()
            assert no_rpc.value.code == "42501", fn
    with psycopg.connect(supabase_db) as conn:
        after = conn.execute("select * from usage_ledger order by 1, 2, 3, 4").fetchall()
    assert after == before


def test_another_users_runs_never_show_in_a_row_they_can_read(
        store: SupabaseStore, gateway: PostgrestGateway) -> None:
    """B and C ran A's agent: the agent's row (all its runs) is A's; B reads only B's own
    agent's row and B's own consumption in the ledger."""
    _seed(store)
    a_stats = _client(gateway, USER_A).table("agent_stats").select("*").execute().data
    assert [(r["agent_id"], r["run_count"], r["paused_count"]) for r in a_stats] == [
        ("agent-acct", 3, 1)]
    b = _client(gateway, USER_B)
    assert [r["agent_id"] for r in b.table("agent_stats").select("*").execute().data] == [
        "agent-b"]
    assert [r["agent_id"] for r in
            b.table("agent_intensity_metrics").select("agent_id").execute().data] == ["agent-b"]
    assert _client(gateway, USER_C).table("agent_stats").select("*").execute().data == []
    # the refused execution (not a run, no owner named) is nobody's row
    b_ledger = b.table("usage_ledger").select("agent_id, runs, refused").execute().data
    assert sorted((r["agent_id"], r["runs"], r["refused"]) for r in b_ledger) == [
        ("agent-acct", 1, 1), ("agent-b", 1, 0)]


def test_budgets_through_the_supabase_store(store: SupabaseStore) -> None:
    assert isinstance(store, BudgetSource)
    store.apply([accounting(1, cost="0.6"), accounting(2, cost="0.3", status="refused")],
                BUILTIN_WRITERS)
    assert store.spend("user", "user-a", MIDNIGHT) == Spend(Decimal("0.6"), 1200, 1)
    # the run started at 12:00:01 UTC; a naive since is UTC
    rolling = store.spend("user", "user-a", datetime.fromisoformat("2026-11-01T12:00:01.5"))
    assert rolling == Spend(Decimal(0), 0, 0)
    assert store.spend("user", "user-a", datetime.fromisoformat("2026-11-01T12:00:00.5")) == (
        Spend(Decimal("0.6"), 1200, 1))
    first = store.reserve("user", "user-a", MIDNIGHT, Decimal("1"), None, uuid.uuid4(), 60)
    assert (first.allowed, first.spent_usd, first.in_flight) == (True, Decimal("0.6"), 0)
    run = accounting(3, cost="0.4")
    second = store.reserve("user", "user-a", MIDNIGHT, Decimal("1"), None, run.execution_id, 60)
    assert (second.allowed, second.in_flight) == (True, 1)
    store.apply([run], BUILTIN_WRITERS)  # lands: its reservation ends, its spend counts
    third = store.reserve("user", "user-a", MIDNIGHT, Decimal("1"), None, uuid.uuid4(), 60)
    assert (third.allowed, third.spent_usd, third.in_flight) == (False, Decimal("1.0"), 1)
