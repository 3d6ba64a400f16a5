"""4 processes x 4 threads writing 2,000 executions for 3 agents at once: exact counts.

Every batch is also re-applied once (a retry), and a batch of process 0 is replayed by every
process (a spool replayed by two processes): the per-agent counters and the usage ledger equal
the sums computed from the rows of agent_executions, exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.stores import concurrent_worker as w
from tests.stores.conftest import Store, rows
from tests.stores.ledger_sums import ledger_from_executions, ledger_rows

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4


def test_concurrent_processes_and_threads_give_exact_counts(store: Store) -> None:
    url = store.display_url if store.dialect == "sqlite" else store.url  # type: ignore[union-attr]
    started = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.stores.concurrent_worker", url, str(p)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in range(PROCESSES)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out))
    elapsed = time.monotonic() - started

    total = PROCESSES * w.PER_PROCESS
    assert sum(r["applied"] for r in results) == total
    assert len(rows(store, "agent_executions")) == total
    assert len(rows(store, "agent_logs")) == total
    ledger = rows(store, "instrument_applied")  # one row per execution, every writer's bit
    assert len(ledger) == total
    assert {r["writers"] for r in ledger} == {0b11111}

    expect: dict[str, dict[str, int]] = {}
    for i in range(total):
        rec = w.record(i)
        e = expect.setdefault(rec.agent_id or "", dict.fromkeys(
            ("run_count", "success_count", "failure_count", "total_tokens", "token_run_count",
             "total_duration_ms", "paused_count", "refused_count"), 0))
        if rec.status == "refused":  # not a run: counted apart
            e["refused_count"] += 1
            continue
        e["run_count"] += 1
        e[{"completed": "success_count", "failed": "failure_count",
           "paused": "paused_count"}[rec.status]] += 1
        if rec.result.tokens is not None:
            e["total_tokens"] += rec.result.tokens.total_tokens or 0
            e["token_run_count"] += 1
        e["total_duration_ms"] += int(rec.duration_ms)
    got = {r["agent_id"]: {k: r[k] for k in expect["agent-0"]} for r in rows(store, "agent_stats")}
    assert got == expect
    intensity = {r["agent_id"]: r["total_executions"] for r in store.intensity_metrics()}
    assert intensity == {a: e["run_count"] for a, e in expect.items()}
    # the usage ledger: exactly the sums of the executions' rows, per (tenant, user, agent, day)
    assert ledger_rows(store) == ledger_from_executions(store)
    assert sum(r["runs"] + r["refused"] for r in ledger_rows(store).values()) == total
    assert elapsed < 90, f"took {elapsed:.1f}s"


_FRESH_FILE_WRITER = """
import sys
from instrument.stores import open_store
from tests.stores.concurrent_worker import WRITERS, record
store = open_store(sys.argv[1])  # the embedded default: creates its schema on first use
p = int(sys.argv[2])
for k in range(5):
    store.apply([record(p * 50 + k * 10 + i) for i in range(10)], WRITERS)
store.close()
"""


def test_processes_racing_to_create_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", _FRESH_FILE_WRITER, url, str(p)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in range(PROCESSES)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    from instrument.stores.sqlite.store import SQLiteStore

    store = SQLiteStore(url, auto_migrate=False)
    assert sum(s["run_count"] + s["refused_count"] for s in store.agent_stats()) == (
        PROCESSES * 50)
    assert len(store.recent_executions(1000)) == PROCESSES * 50
    assert store.schema_version() is not None
    store.close()
