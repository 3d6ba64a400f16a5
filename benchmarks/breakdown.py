"""Where the decorator's time goes: the same call with parts of the live runtime swapped out.

Each row also reports how much of its time was garbage collection (``gc.callbacks``, whatever
thread triggered it): the objects a call leaves alive until they are exported or written
(spans in the span processor's queue, records in the delivery queue) make every collection
longer, and that cost lands on whichever call happens to allocate next.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import instrument
from benchmarks.common import interleaved, timed
from benchmarks.overhead import _provider
from instrument import runtime
from instrument.pipeline import NullPipeline


def run(*, rounds: int = 15, calls: int = 2000, print_table: bool = True) -> dict[str, float]:
    tracer = _provider().get_tracer("bench")
    tmp = Path(tempfile.mkdtemp(prefix="instrument-breakdown-"))
    instrument.configure(database_url=f"sqlite:///{tmp / 'b.db'}", traces="none", strict=False,
                         batch_size=calls * 8, flush_interval_s=3600.0)
    rt = runtime.current()
    pipeline, tracing = rt.pipeline, rt.tracing
    # the same store and settings with the deferred spool (its own spool directory)
    deferred_rt = runtime.build(dataclasses.replace(
        rt.settings, database_url=f"sqlite:///{tmp / 'd.db'}", spool_mode="deferred"))
    deferred = deferred_rt.pipeline

    def f(x: int) -> int:
        return x + 1

    decorated = instrument.logged_execution(f)

    def raw() -> int:
        with tracer.start_as_current_span("f"):
            return f(1)

    def variant(with_store: bool, with_span: bool, spool: Any = pipeline) -> Any:
        def call() -> int:
            rt.pipeline = spool if with_store else NullPipeline()
            rt.tracing = tracing if with_span else None
            return int(decorated(1))
        return timed(call)

    gc_ns = [0, 0]  # [collection time in the current round, start of the running collection]

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            gc_ns[1] = time.perf_counter_ns()
        else:
            gc_ns[0] += time.perf_counter_ns() - gc_ns[1]

    gc_us: dict[str, list[float]] = {}

    def gc_counted(name: str, run_calls: Callable[[int], float]) -> Callable[[int], float]:
        def run(n: int) -> float:
            gc_ns[0] = 0
            per_call = run_calls(n)
            gc_us.setdefault(name, []).append(gc_ns[0] / n / 1000)
            return per_call
        return run

    variants = {
        "raw OTel span": timed(raw),
        "core only (no span, no spool/store)": variant(False, False),
        "core + span": variant(False, True),
        "core + spool/store (no span)": variant(True, False),
        "everything (default)": variant(True, True),
        "everything, deferred spool": variant(True, True, deferred),
    }
    gc.callbacks.append(on_gc)
    try:
        samples = interleaved({k: gc_counted(k, v) for k, v in variants.items()}, rounds, calls,
                              between=lambda: (pipeline.flush(60.0), deferred.flush(60.0)))
    finally:
        gc.callbacks.remove(on_gc)
    rt.pipeline, rt.tracing = pipeline, tracing
    deferred_rt.shutdown(10.0)
    instrument.shutdown(10.0)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    if print_table:
        from benchmarks.report import table

        base = medians["raw OTel span"]
        table("Where the time goes (µs per call; ratio to a raw OTel span)",
              ["configuration", "median", "× raw span", "of which GC (mean)"],
              [[k, f"{v:,.2f} µs", f"{v / base:.2f}x", f"{statistics.mean(gc_us[k]):,.2f} µs"]
               for k, v in medians.items()])
    return medians
