"""Isolation: decorated-call latency with a healthy, a slow (200 ms/write) and a dead store."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import instrument
from benchmarks.common import percentile
from instrument import runtime
from instrument.record import ExecutionRecord
from instrument.stores import open_store
from instrument.stores.base import ApplyResult, Store


class SlowStore:
    """Delegates to a real store after sleeping `delay_s` per batch (a slow database)."""

    def __init__(self, inner: Store, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.dialect = inner.dialect
        self.display_url = inner.display_url

    def apply(self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
              ) -> ApplyResult:
        time.sleep(self.delay_s)
        return self.inner.apply(records, default_writers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _latencies(calls: int) -> list[float]:
    @instrument.logged_execution(agent_id="agent_id")
    def executor(agent_id: str) -> dict[str, Any]:
        return {"success": True, "iterations": 1}

    out = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        executor(f"agent-{i % 3}")
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def run(*, calls: int = 20000, pg_url: str | None = None, print_table: bool = True
        ) -> dict[str, tuple[float, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="instrument-iso-"))
    results: dict[str, tuple[float, float]] = {}
    healthy_url = pg_url or f"sqlite:///{tmp / 'healthy.db'}"
    dead_url = (f"postgresql://postgres@127.0.0.1:{_closed_port()}/none?connect_timeout=1")
    scenarios = [("healthy store", healthy_url, None), ("store slowed to 200 ms/write",
                 f"sqlite:///{tmp / 'slow.db'}", 0.2), ("dead store", dead_url, None)]
    for label, url, delay in scenarios:
        instrument.configure(database_url=url, traces="none", strict=False,
                             spool_dir=str(tmp / f"spool-{len(results)}"))
        rt = runtime.current()
        if delay is not None:
            store = open_store(url)
            store.migrate()
            slow = SlowStore(store, delay)
            pipeline: Any = rt.pipeline
            if hasattr(pipeline, "store"):
                pipeline.store = slow
        elif label == "healthy store":
            open_store(url).migrate()
        _latencies(500)  # warm-up
        lat = _latencies(calls)
        results[label] = (percentile(lat, 0.50), percentile(lat, 0.99))
        instrument.shutdown(2.0)
    if print_table:
        from benchmarks.report import table

        base = results["healthy store"][1]
        table("Isolation: decorated-call latency (µs)", ["store", "p50", "p99", "p99 × healthy"],
              [[k, f"{p50:,.1f}", f"{p99:,.1f}", f"{p99 / base:.2f}x"]
               for k, (p50, p99) in results.items()])
    return results
