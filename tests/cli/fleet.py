"""A small fleet of executions in a store of each dialect, for the commands that read them
(`show`, `stats --by`, `tail` filters, `prune`)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from instrument.cli import EXIT_OK
from instrument.record import ExecutionRecord
from instrument.stores import Store, open_store
from tests.cli.conftest import Run
from tests.integration.postgrest_gateway import PostgrestGateway, bootstrap_supabase_platform
from tests.integration.supabase_support import apply_production_migration, make_record

__all__ = ["DAY", "TRACE", "WRITERS", "Loaded", "fleet", "loaded", "open_loaded"]

WRITERS = ("executions", "logs", "stats", "intensity", "usage_ledger")
TRACE = "0af7651916cd43dd8448eb211c80319c"
DAY = 86_400


def _priced(record: ExecutionRecord, cost: str | None) -> ExecutionRecord:
    result = record.result.model_copy(update={
        "cost_usd": None if cost is None else Decimal(cost),
        "price_source": None if cost is None else "user"})
    return record.model_copy(update={"result": result})


def fleet() -> dict[str, ExecutionRecord]:
    """An orchestrator run with two children on 2026-01-05 (tenant acme), and a run of another
    tenant two days later; priced, unpriced, tagged and not."""
    parent = _priced(make_record("orchestrator-1", user_id="user-a", engine="orchestrator",
                                 tenant_id="acme", tags=("nightly",), trace_id=TRACE), "0.01")
    pid = parent.execution_id
    return {
        "parent": parent,
        "child1": _priced(make_record("agent-1", user_id="user-a", tenant_id="acme",
                                      parent_execution_id=pid, tags=("nightly", "child"),
                                      trace_id=TRACE, offset_s=1), "0.002"),
        "child2": _priced(make_record("agent-2", user_id="user-b", tenant_id="acme",
                                      parent_execution_id=pid, success=False, trace_id=TRACE,
                                      offset_s=2), None),
        "other": _priced(make_record("agent-1", user_id="user-b", tenant_id="globex",
                                     offset_s=2 * DAY), "0.005"),
    }


Loaded = tuple[str, dict[str, ExecutionRecord]]


def open_loaded(url: str) -> Store:
    """A store for the URL `loaded` gave (Supabase: from the environment it set)."""
    import os

    return open_store(url, keep_content=True, supabase_url=os.environ.get("SUPABASE_URL"),
                      supabase_key=os.environ.get("SUPABASE_SERVICE_ROLE_KEY"))


@pytest.fixture(params=["sqlite", "postgres", "supabase"])
def loaded(request: pytest.FixtureRequest, run: Run, db_url: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, ExecutionRecord]]]:
    """(database URL, records) with the fleet applied through the store of that dialect."""
    records = fleet()
    gateway: PostgrestGateway | None = None
    if request.param == "sqlite":
        url = db_url
        assert run("migrate").code == EXIT_OK
    elif request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        assert run("migrate", "--database-url", url).code == EXIT_OK
    else:
        pg = request.getfixturevalue("pg_url")
        bootstrap_supabase_platform(pg)
        apply_production_migration(pg)
        gateway = PostgrestGateway(pg).__enter__()
        monkeypatch.setenv("SUPABASE_URL", gateway.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", gateway.service_role_key)
        monkeypatch.setenv("INSTRUMENT_SPOOL_DIR", str(tmp_path / "spool"))
        url = "supabase"
    store = open_store(url, keep_content=True, supabase_url=gateway.url if gateway else None,
                       supabase_key=gateway.service_role_key if gateway else None)
    try:
        store.apply(list(records.values()), WRITERS)
    finally:
        store.close()
    try:
        yield url, records
    finally:
        if gateway is not None:
            gateway.__exit__(None, None, None)
