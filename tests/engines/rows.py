"""Records through a real SQLite store: the rows the four built-in writers leave for them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instrument.record import ExecutionRecord
from instrument.stores import open_store
from instrument.writers import BUILTIN_WRITERS


@dataclass(frozen=True)
class Rows:
    """One execution's row in each table, and its agent's aggregate rows."""

    execution: dict[str, Any]
    log: dict[str, Any]
    stats: dict[str, Any]
    intensity: dict[str, Any]


def store_rows(records: Sequence[ExecutionRecord], db: Path) -> list[Rows]:
    """Apply `records` (migrating first) and read back, per record, its four rows."""
    store = open_store(f"sqlite:///{db}", keep_content=True)
    try:
        store.migrate()  # type: ignore[attr-defined]
        applied = store.apply(records, BUILTIN_WRITERS)
        assert applied.applied == len(records), applied
    finally:
        store.close()
    out: list[Rows] = []
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        for record in records:
            eid = str(record.execution_id)

            def one(sql: str, *params: object) -> dict[str, Any]:
                found = conn.execute(sql, params).fetchall()
                assert len(found) == 1, (sql, params, [dict(r) for r in found])
                return dict(found[0])

            out.append(Rows(
                execution=one("SELECT * FROM agent_executions WHERE id = ?", eid),
                log=one("SELECT * FROM agent_logs WHERE execution_id = ?", eid),
                stats=one("SELECT * FROM agent_stats WHERE agent_id = ?", record.agent_id),
                intensity=one("SELECT * FROM agent_intensity_metrics WHERE agent_id = ?",
                              record.agent_id),
            ))
    return out
