"""Ingest throughput per store: records/s with all four writers, by batch size, vs the naive way.

The naive baseline is what the origin application did: four sequential round trips per record
(insert the execution, insert the log, call the stats RPC, update intensity), each on its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks.common import synthetic_records
from instrument.record import ExecutionRecord
from instrument.stores import open_store
from instrument.stores.base import Store
from instrument.writers import BUILTIN_WRITERS


def throughput(store: Store, records: Sequence[ExecutionRecord], batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        store.apply(records[i:i + batch], BUILTIN_WRITERS)
    return len(records) / (time.perf_counter() - t0)


def naive(store: Store, records: Sequence[ExecutionRecord]) -> float:
    """Four separate store round trips per record, one writer each (the origin's pattern)."""
    t0 = time.perf_counter()
    for record in records:
        for writer in BUILTIN_WRITERS:
            # A per-writer copy with its own id keeps each call a real, separate write.
            store.apply([record.model_copy(update={"writers": (writer,)})], (writer,))
    return len(records) / (time.perf_counter() - t0)


def run(urls: dict[str, str], *, n: int = 5000, batches: Sequence[int] = (1, 10, 100, 500, 1000),
        naive_n: int = 500, print_table: bool = True) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for label, url in urls.items():
        store = open_store(url)
        store.migrate()
        row: dict[str, float] = {}
        for b in batches:
            records = synthetic_records(n if b > 1 else min(n, 1000), seed=b)
            row[f"batch {b}"] = throughput(store, records, b)
        row["naive (4 round trips/record)"] = naive(store, synthetic_records(naive_n, seed=99))
        store.close()
        out[label] = row
    if print_table:
        from benchmarks.report import table

        for label, row in out.items():
            base = row["naive (4 round trips/record)"]
            table(f"Ingest throughput, {label} (records/s, all four writers)",
                  ["mode", "records/s", "× naive"],
                  [[k, f"{v:,.0f}", f"{v / base:.1f}x"] for k, v in row.items()])
    return out
