"""One writer process of the concurrency test: 4 threads apply (and re-apply) batches.

Run as ``python -m tests.stores.concurrent_worker <database-url> <process-index>``; prints the
summed ApplyResult as JSON. Records are deterministic, so the parent knows the expected sums.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from instrument.record import ExecutionRecord, ExecutionResult, TokenUsage
from instrument.stores.base import Store

PER_PROCESS = 500
THREADS = 4
BATCH = 25
AGENTS = 3
T0 = datetime(2026, 11, 2, 23, 59, 59, tzinfo=UTC)  # runs cross a UTC midnight
WRITERS = ("executions", "logs", "stats", "intensity", "usage_ledger")


def record(i: int) -> ExecutionRecord:
    """Deterministic: 3 agents, 2 tenants (and none), 3 users; some paused, some refused,
    some unpriced, some without tokens; started over two UTC days."""
    refused = i % 11 == 0
    return ExecutionRecord(
        execution_id=uuid.uuid5(uuid.NAMESPACE_URL, f"concurrency/{i}"),
        agent_id=f"agent-{i % AGENTS}", user_id=f"user-{i % 3}", engine="agentkit",
        name="load", tenant_id=None if i % 4 == 0 else f"tenant-{i % 2}",
        started_at=T0 + timedelta(milliseconds=i),
        completed_at=T0 + timedelta(milliseconds=i, seconds=1),
        duration_ms=float(i % 1000),
        result=ExecutionResult(
            success=i % 5 != 0 and not refused,
            paused=i % 13 == 0 and not refused,
            refused=refused,
            tokens=None if i % 7 == 0 or refused else TokenUsage(
                input_tokens=i, output_tokens=1, total_tokens=i + 1, cached_input_tokens=i % 3),
            iterations=1 + i % 3,
            cost_usd=None if i % 6 == 0 or refused else Decimal(i) / Decimal(10**9),
        ),
    )


def open_store(url: str) -> Store:
    if url.startswith("sqlite"):
        from instrument.stores.sqlite.store import SQLiteStore

        return SQLiteStore(url, auto_migrate=False)
    from instrument.stores.postgres.store import PostgresStore

    return PostgresStore(url, pool_max_size=THREADS)


def main(url: str, proc: int) -> None:
    store = open_store(url)
    mine = [record(i) for i in range(proc * PER_PROCESS, (proc + 1) * PER_PROCESS)]
    shared = [record(i) for i in range(BATCH)]  # owned by process 0, replayed by every process
    totals = {"applied": 0, "duplicates": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            part = mine[t::THREADS]
            batches = [part[k:k + BATCH] for k in range(0, len(part), BATCH)]
            if t == 0:
                batches.insert(len(batches) // 2, shared)
            previous: list[ExecutionRecord] = []
            for batch in batches:
                for b in (batch, previous):  # each batch, then a replay of the one before
                    if b:
                        r = store.apply(b, WRITERS)
                        with lock:
                            totals["applied"] += r.applied
                            totals["duplicates"] += r.duplicates
                previous = batch
        except BaseException as exc:  # reported to the parent below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    if errors:
        raise errors[0]
    sys.stdout.write(json.dumps(totals))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
