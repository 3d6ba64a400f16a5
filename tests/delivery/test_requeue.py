"""Quarantined records are delivered again once their cause is fixed (`instrument replay
--quarantined`), exactly once, on real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

import instrument
from instrument import logged_execution
from instrument.cli import main
from instrument.pipeline import quarantined, requeue_quarantined
from instrument.pipeline.quarantine import QUARANTINE_FILE, quarantine
from instrument.pipeline.spool import Entry
from instrument.stores import open_store
from tests.delivery.effects import effects

BLOCK = """
create function test_block() returns trigger language plpgsql as $$
begin
  if new.agent_id = 'blocked' then
    raise exception 'agent % is blocked by the application', new.agent_id;
  end if;
  return new;
end $$;
create trigger test_block before insert on agent_executions
  for each row execute function test_block();
"""


@logged_execution(engine="mapping", agent_id="agent")
def _run(agent: str) -> dict[str, object]:
    return {"success": True}


def _requeue(url: str, spool: Path) -> tuple[int, int, int, int]:
    store = open_store(url, keep_content=True)
    try:
        r = requeue_quarantined(store, spool_dir=spool,
                                writers=("executions", "logs", "stats", "intensity"))
    finally:
        store.close()
    assert r.error is None
    return r.applied, r.duplicates, r.refused, r.kept


def test_quarantined_records_land_once_after_the_fix(pg_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "spool"
    store = open_store(pg_url)
    store.migrate()  # type: ignore[attr-defined]
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(BLOCK)
    instrument.configure(database_url=pg_url, spool_dir=str(spool), flush_interval_s=0.05)
    for agent in ("ok", "blocked", "ok", "blocked", "ok"):
        _run(agent)
    assert instrument.flush(30)
    instrument.shutdown(10)
    ids, _, runs = effects(pg_url)
    assert (len(ids), runs) == (3, 3)
    assert [q.error_type for q in quarantined(spool)] == ["RecordRejected"] * 2

    # not fixed yet: refused again, and quarantined once each (not twice)
    assert _requeue(pg_url, spool) == (0, 0, 2, 0)
    assert len(quarantined(spool)) == 2
    assert "blocked by the application" in quarantined(spool)[0].error

    # a damaged stretch of a spool segment has no record: it stays as it is
    quarantine(spool, Entry(3, 99, None, "", "unreadable", damaged=b"\0\0\0"),
               "UnreadableSpoolEntry", "unreadable spool entry", "test")
    # a claim left by a requeue that crashed is taken up by the next run
    os.rename(spool / QUARANTINE_FILE, spool / f"{QUARANTINE_FILE}.requeue-1-deadbeef")

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("drop trigger test_block on agent_executions")
    monkeypatch.setenv("INSTRUMENT_SPOOL_DIR", str(spool))
    assert main(["replay", "--quarantined", "--database-url", pg_url]) == 0
    ids, logs, runs = effects(pg_url)
    assert (len(ids), logs, runs) == (5, 5, 5)
    left = quarantined(spool)
    assert [q.damaged for q in left] == [b"\0\0\0"]
    assert not list(spool.glob(f"{QUARANTINE_FILE}.requeue-*"))

    # again: nothing left to deliver, the damaged bytes still kept
    assert _requeue(pg_url, spool) == (0, 0, 0, 1)
    assert effects(pg_url)[2] == 5
