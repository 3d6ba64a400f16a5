"""Read back what the real stores hold, to count effects per execution."""

from __future__ import annotations

import sqlite3


def effects(url: str) -> tuple[list[str], int, int]:
    """(agent_executions ids, agent_logs rows, sum of agent_stats.run_count)."""
    if url.startswith("sqlite:///"):
        c = sqlite3.connect(url[len("sqlite:///"):])
        try:
            ids = [str(r[0]) for r in c.execute("SELECT id FROM agent_executions")]
            logs = c.execute("SELECT count(*) FROM agent_logs").fetchone()[0]
            runs = c.execute("SELECT coalesce(sum(run_count), 0) FROM agent_stats").fetchone()[0]
        finally:
            c.close()
        return ids, int(logs), int(runs)
    import psycopg

    with psycopg.connect(url) as conn:
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM agent_executions")]
        row = conn.execute("SELECT count(*) FROM agent_logs").fetchone()
        runs = conn.execute("SELECT coalesce(sum(run_count), 0) FROM agent_stats").fetchone()
    assert row is not None
    assert runs is not None
    return ids, int(row[0]), int(runs[0])
