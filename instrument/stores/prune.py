"""Retention: delete old ``agent_executions`` and ``agent_logs`` rows in bounded batches.

``instrument prune --older-than 30d`` calls :func:`prune`. Only the per-execution rows go:
executions that started before the cutoff together with their ``agent_logs`` row, then any log
row created before it (one whose execution row was never written). The aggregates
(``agent_stats``, ``agent_intensity_metrics``, ``usage_ledger``) and the idempotency ledger
(``instrument_applied``: what makes a late replay of an old spooled record harmless) are never
touched, so totals, scores and bills stay what they were.

Each batch is one short transaction of at most `batch_size` executions (and their log rows),
so writers are never blocked for long and an interrupted prune has deleted whole batches:

- SQLite: ``BEGIN IMMEDIATE`` on a connection of its own (busy timeout 30 s);
- PostgreSQL: one statement per batch (the ids, then both deletes, in CTEs);
- Supabase: the ids of a batch read through the REST API, then the log rows and the
  executions deleted by id (the service role key bypasses row-level security).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from instrument.errors import ConfigurationError
from instrument.stores.base import Store

__all__ = ["PRUNED", "PruneReport", "prune"]

#: the tables prune deletes from, in the report's order
PRUNED = ("agent_executions", "agent_logs")


@dataclass(frozen=True, slots=True)
class PruneReport:
    """Rows deleted (or, in a dry run, that would be) per table, and the batches it took;
    `months_dropped`: the month partitions dropped whole (partitioned Postgres layout)."""

    deleted: dict[str, int]
    batches: int
    dry_run: bool
    months_dropped: tuple[str, ...] = ()


Progress = Callable[[str, int], None]


def prune(store: Store, before: datetime, *, batch_size: int = 5000, dry_run: bool = False,
          progress: Progress | None = None) -> PruneReport:
    """Delete executions older than `before` (aware; naive is UTC) with their log rows, then
    log rows created before it, in batches of `batch_size`. `dry_run` only counts them.
    `progress(table, deleted_so_far)` is called after each batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cutoff = before.astimezone(UTC) if before.tzinfo else before.replace(tzinfo=UTC)
    backends: dict[str, Callable[[Store, datetime], _Backend]] = {
        "sqlite": _SQLite, "postgres": _Postgres, "supabase": _Supabase}
    backend = backends.get(store.dialect)
    if backend is None:
        raise ConfigurationError(
            f"the store for {store.display_url} ({type(store).__name__}) cannot be pruned: "
            "only the built-in SQLite, PostgreSQL and Supabase stores can")
    with backend(store, cutoff) as b:
        if dry_run:
            return PruneReport(b.count(), 0, True)
        totals = dict.fromkeys(PRUNED, 0)
        batches = 0
        months: list[str] = []
        for drop in _whole_months(b, cutoff):  # partitioned Postgres: one statement a month
            totals[drop.table] += drop.rows
            if drop.partition:
                months.append(drop.partition)
        while True:  # executions and their log rows
            executions, logs = b.executions_batch(batch_size)
            if not executions:
                break
            batches += 1
            totals["agent_executions"] += executions
            totals["agent_logs"] += logs
            if progress:
                progress("agent_executions", totals["agent_executions"])
        while n := b.logs_batch(batch_size):  # log rows without an execution row
            batches += 1
            totals["agent_logs"] += n
            if progress:
                progress("agent_logs", totals["agent_logs"])
    return PruneReport(totals, batches, False, tuple(months))


def _whole_months(b: _Backend, cutoff: datetime) -> list[Any]:
    """Month partitions ending by `cutoff`, dropped (instrument.stores.postgres.partitioning)."""
    if not isinstance(b, _Postgres):
        return []
    from instrument.stores.postgres.partitioning import drop_months_before

    return list(drop_months_before(b.conn, cutoff))


class _Backend(Protocol):
    """One dialect's deletes (a context manager holding its connection, if any)."""

    def __enter__(self) -> _Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def count(self) -> dict[str, int]: ...

    def executions_batch(self, size: int) -> tuple[int, int]: ...

    def logs_batch(self, size: int) -> int: ...


class _SQLite:
    def __init__(self, store: Store, cutoff: datetime) -> None:
        # rows hold ISO text in UTC ("...+00:00" or "...Z"): the first 19 characters compare
        self.bound = cutoff.strftime("%Y-%m-%dT%H:%M:%S")
        self.path = str(getattr(store, "path"))  # noqa: B009 - SQLiteStore.path, not imported
        self.conn: sqlite3.Connection | None = None

    def __enter__(self) -> _SQLite:
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def _tx(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self.conn is not None
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            out = work(self.conn)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return out

    def count(self) -> dict[str, int]:
        def work(c: sqlite3.Connection) -> dict[str, int]:
            old = "SELECT id FROM agent_executions WHERE started_at < :b"
            e = c.execute(f"SELECT count(*) FROM ({old})", {"b": self.bound}).fetchone()[0]
            n = c.execute(f"SELECT count(*) FROM agent_logs WHERE created_at < :b OR "
                          f"execution_id IN ({old})", {"b": self.bound}).fetchone()[0]
            return {"agent_executions": int(e), "agent_logs": int(n)}

        return dict(self._tx(work))

    def executions_batch(self, size: int) -> tuple[int, int]:
        def work(c: sqlite3.Connection) -> tuple[int, int]:
            ids = [r[0] for r in c.execute("SELECT id FROM agent_executions WHERE started_at < "
                                           "? LIMIT ?", (self.bound, size)).fetchall()]
            if not ids:
                return 0, 0
            batch = json.dumps(ids)
            logs = c.execute("DELETE FROM agent_logs WHERE execution_id IN (SELECT value FROM "
                             "json_each(?))", (batch,)).rowcount
            done = c.execute("DELETE FROM agent_executions WHERE id IN (SELECT value FROM "
                             "json_each(?))", (batch,)).rowcount
            return done, logs

        result: tuple[int, int] = self._tx(work)
        return result

    def logs_batch(self, size: int) -> int:
        return int(self._tx(lambda c: c.execute(
            "DELETE FROM agent_logs WHERE rowid IN (SELECT rowid FROM agent_logs WHERE "
            "created_at < ? LIMIT ?)", (self.bound, size)).rowcount))


class _Postgres:
    def __init__(self, store: Store, cutoff: datetime) -> None:
        self.cutoff = cutoff
        self.url = str(getattr(store, "url"))  # noqa: B009 - PostgresStore.url, not imported
        self.conn: Any = None

    def __enter__(self) -> _Postgres:
        import psycopg  # late: the optional `postgres` extra, present for this store

        self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def count(self) -> dict[str, int]:
        old = "select id from public.agent_executions where started_at < %(b)s"
        row = self.conn.execute(
            f"select (select count(*) from ({old}) o), (select count(*) from public.agent_logs "
            f"where created_at < %(b)s or execution_id in ({old}))", {"b": self.cutoff}
        ).fetchone()
        return {"agent_executions": int(row[0]), "agent_logs": int(row[1])}

    def executions_batch(self, size: int) -> tuple[int, int]:
        row = self.conn.execute(
            "with ids as (select id from public.agent_executions where started_at < %s "
            "limit %s), l as (delete from public.agent_logs where execution_id in (select id "
            "from ids) returning 1), e as (delete from public.agent_executions where id in "
            "(select id from ids) returning 1) select (select count(*) from e), (select "
            "count(*) from l)", (self.cutoff, size)).fetchone()
        return int(row[0]), int(row[1])

    def logs_batch(self, size: int) -> int:
        return int(self.conn.execute(
            "delete from public.agent_logs where id in (select id from public.agent_logs "
            "where created_at < %s limit %s)", (self.cutoff, size)).rowcount)


class _Supabase:
    def __init__(self, store: Store, cutoff: datetime) -> None:
        self.bound = cutoff.isoformat()
        self.execute: Callable[[Callable[[Any], Any]], Any] = getattr(store, "_execute")  # noqa: B009

    def __enter__(self) -> _Supabase:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _ids(self, table: str, column: str, size: int, offset: int = 0) -> list[str]:
        rows = self.execute(lambda c: c.table(table).select("id").lt(column, self.bound)
                            .order("id").range(offset, offset + size - 1)).data or []
        return [str(r["id"]) for r in rows]

    def _delete(self, table: str, column: str, values: list[str]) -> None:
        self.execute(lambda c: c.table(table).delete(returning="minimal").in_(column, values))

    def _count(self, table: str, build: Callable[[Any], Any]) -> int:
        return int(self.execute(lambda c: build(c.table(table).select("id", count="exact"))
                                .limit(1)).count or 0)

    def count(self) -> dict[str, int]:
        executions = self._count("agent_executions", lambda q: q.lt("started_at", self.bound))
        logs = self._count("agent_logs", lambda q: q.lt("created_at", self.bound))
        offset = 0
        while ids := self._ids("agent_executions", "started_at", 500, offset):
            offset += len(ids)  # their log rows that are newer than the cutoff

            def newer(q: Any, ids: list[str] = ids) -> Any:
                return q.in_("execution_id", ids).gte("created_at", self.bound)

            logs += self._count("agent_logs", newer)
        return {"agent_executions": executions, "agent_logs": logs}

    def executions_batch(self, size: int) -> tuple[int, int]:
        ids = self._ids("agent_executions", "started_at", size)
        if not ids:
            return 0, 0
        logs = self._count("agent_logs", lambda q: q.in_("execution_id", ids))
        self._delete("agent_logs", "execution_id", ids)
        self._delete("agent_executions", "id", ids)
        return len(ids), logs

    def logs_batch(self, size: int) -> int:
        ids = self._ids("agent_logs", "created_at", size)
        if ids:
            self._delete("agent_logs", "id", ids)
        return len(ids)
