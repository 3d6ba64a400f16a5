"""A small real store for delivery tests: a SQLite file with real faults.

It implements the Store protocol the way the production stores must (one transaction per batch,
idempotent by execution_id, counters only bumped when the row is new), and fails for real:

- another connection holding ``BEGIN EXCLUSIVE`` makes it raise StoreUnavailable (locked);
- a missing ``schema_version`` table makes it raise SchemaMismatch;
- an ``agent_id`` starting with ``poison`` violates a CHECK constraint -> RecordRejected.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from instrument.ais import AISConfig
from instrument.errors import RecordRejected, SchemaMismatch, StoreUnavailable
from instrument.record import ExecutionRecord
from instrument.stores.base import ApplyResult, ExecutionFilter

DDL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    agent_id TEXT CHECK (agent_id IS NULL OR agent_id NOT LIKE 'poison%'),
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (agent_id TEXT PRIMARY KEY, runs INTEGER NOT NULL);
"""


class FileStore:
    dialect = "sqlite"

    def __init__(self, path: str, timeout_s: float = 0.05) -> None:
        self.path = path
        self.display_url = f"faultstore:///{path}"
        self.timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=self.timeout_s,
                                         isolation_level=None, check_same_thread=False)
        return self._conn

    def migrate(self) -> int:
        c = sqlite3.connect(self.path)
        c.executescript(DDL)
        if c.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
            c.execute("INSERT INTO schema_version VALUES (1)")
        c.commit()
        c.close()
        return 1

    def schema_version(self) -> int | None:
        try:
            row = self._c().execute("SELECT max(version) FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            return None
        return int(row[0]) if row and row[0] is not None else None

    def apply(self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
              ) -> ApplyResult:
        c = self._c()
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"database is locked: {exc}") from exc
        applied = dup = 0
        try:
            try:
                c.execute("SELECT version FROM schema_version").fetchone()
            except sqlite3.OperationalError as exc:
                raise SchemaMismatch(f"schema missing ({exc}); run `instrument migrate`") from exc
            for r in records:
                try:
                    cur = c.execute(
                        "INSERT INTO executions (id, agent_id, body) VALUES (?, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING",
                        (str(r.execution_id), r.agent_id, r.model_dump_json()))
                except sqlite3.IntegrityError as exc:
                    raise RecordRejected(str(exc), execution_id=str(r.execution_id)) from exc
                if cur.rowcount == 1:
                    applied += 1
                    c.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT (agent_id) "
                              "DO UPDATE SET runs = runs + 1", (r.agent_id or "",))
                else:
                    dup += 1
            c.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            c.execute("ROLLBACK")
            raise StoreUnavailable(str(exc)) from exc
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return ApplyResult(applied, dup)

    def recent_executions(self, limit: int = 20, where: ExecutionFilter | None = None
                          ) -> list[dict[str, Any]]:
        return []

    def agent_stats(self) -> list[dict[str, Any]]:
        return []

    def intensity_metrics(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        return []

    def ais_config(self) -> AISConfig:
        return AISConfig()  # this store keeps no AIS data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def rows(path: str) -> tuple[list[str], dict[str, int]]:
    c = sqlite3.connect(path)
    ids = [r[0] for r in c.execute("SELECT id FROM executions")]
    counters = dict(c.execute("SELECT agent_id, runs FROM counters").fetchall())
    c.close()
    return ids, counters
