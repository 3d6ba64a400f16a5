"""Scaling: cost per record as batch size, number of agents and table size grow (Postgres)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks.common import synthetic_records
from instrument.stores import open_store
from instrument.writers import BUILTIN_WRITERS


def _prefill(url: str, rows: int) -> None:
    """Grow agent_executions (and the ledger, if any) to `rows` with server-side SQL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM agent_executions").fetchone()
        missing = rows - int(have[0] if have else 0)
        if missing <= 0:
            return
        # Grow the executions table and the idempotency ledger (schema v3: one row per
        # execution, every built-in writer's bit set) together, as real traffic does.
        conn.execute(
            "WITH ids AS (SELECT gen_random_uuid() AS id, g FROM generate_series(1, %s) g), "
            "ex AS (INSERT INTO agent_executions (id, agent_id, user_id, execution_type, engine,"
            " status, started_at, completed_at, execution_duration_ms) "
            "SELECT id, 'filler-' || (g %% 100), 'u', 'manual', 'mapping', 'completed', now(),"
            " now(), 1 FROM ids) "
            "INSERT INTO instrument_applied (execution_id, writers) SELECT id, 15 FROM ids",
            (missing,))


def run(pg_url: str, *, sizes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
        batch: int = 500, agents: Sequence[int] = (1, 10, 100), print_table: bool = True
        ) -> dict[str, dict[str, float]]:
    store = open_store(pg_url)
    store.migrate()
    by_size: dict[str, float] = {}
    for size in sizes:
        _prefill(pg_url, size)
        records = synthetic_records(batch * 4, seed=size)
        t0 = time.perf_counter()
        for i in range(0, len(records), batch):
            store.apply(records[i:i + batch], BUILTIN_WRITERS)
        by_size[f"{size:,} rows"] = (time.perf_counter() - t0) / len(records) * 1e6
    by_agents: dict[str, float] = {}
    for n_agents in agents:
        records = synthetic_records(batch * 4, agents=n_agents, seed=1000 + n_agents)
        t0 = time.perf_counter()
        for i in range(0, len(records), batch):
            store.apply(records[i:i + batch], BUILTIN_WRITERS)
        by_agents[f"{n_agents} agents"] = (time.perf_counter() - t0) / len(records) * 1e6
    by_batch: dict[str, float] = {}
    for b in (10, 100, 500, 1000):
        records = synthetic_records(2000, seed=2000 + b)
        t0 = time.perf_counter()
        for i in range(0, len(records), b):
            store.apply(records[i:i + b], BUILTIN_WRITERS)
        by_batch[f"batch {b}"] = (time.perf_counter() - t0) / len(records) * 1e6
    store.close()
    out = {"table size": by_size, "agents per batch": by_agents, "batch size": by_batch}
    if print_table:
        from benchmarks.report import table

        for title, row in out.items():
            table(f"Cost per record (µs) by {title}", [title, "µs/record"],
                  [[k, f"{v:,.1f}"] for k, v in row.items()])
    return out
