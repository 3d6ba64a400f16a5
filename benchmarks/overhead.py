"""Per-call overhead: our decorator vs a bare call and a raw OpenTelemetry span, in one process.

Every variant uses the same TracerProvider (BatchSpanProcessor + a no-op exporter). Ours runs
the full path: span, record, adapter, submit, with all four writers enabled and the store
(SQLite by default) draining in the background; once with the default write-through spool and
once with ``spool_mode="deferred"`` (the spooler thread's encoding shares the GIL with the
timed calls, so it is part of what the deferred rows measure).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import instrument
from benchmarks.common import Summary, interleaved, summarize, timed


class NoopExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter(), max_queue_size=1_000_000))
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        trace.set_tracer_provider(provider)
        return provider
    return current


def run(*, rounds: int = 15, calls: int = 2000, database_url: str | None = None,
        mode: str = "call-path", print_table: bool = True) -> dict[str, Summary]:
    """`mode="call-path"`: the store drains between rounds (batches larger than a round), so a
    round times only the caller's thread. `mode="sustained"`: default batching, so the store's
    background work shares the 2 cores and the GIL with the calls being timed."""
    provider = _provider()
    tracer = provider.get_tracer("bench")
    tmp = tempfile.mkdtemp(prefix="instrument-bench-")
    tuning: dict[str, Any] = {}
    if mode == "call-path":
        tuning = {"batch_size": calls * 8, "flush_interval_s": 3600.0}
    from instrument import runtime
    from instrument.config import resolve_settings

    # The same settings twice but for the spool mode (each runtime with its own database):
    # variants swap the live runtime in before their round, so both run in one process.
    deferred_url = database_url or f"sqlite:///{Path(tmp) / 'bench-deferred.db'}"
    deferred = runtime.build(resolve_settings(database_url=deferred_url, traces="none",
                                              strict=False, spool_mode="deferred", **tuning))
    instrument.configure(database_url=database_url or f"sqlite:///{Path(tmp) / 'bench.db'}",
                         traces="none", strict=False, **tuning)
    default = runtime.current()

    def on(rt: runtime.Runtime, fn: Callable[[int], float]) -> Callable[[int], float]:
        def run(calls: int) -> float:
            runtime.swap(rt)
            return fn(calls)
        return run

    def flush_both() -> None:
        deferred.flush(60.0)
        default.flush(60.0)

    def f(x: int) -> int:
        return x + 1

    def raw_span() -> int:
        with tracer.start_as_current_span("f"):
            return f(1)

    def raw_span_attrs() -> int:
        with tracer.start_as_current_span("f") as span:
            for i in range(10):
                span.set_attribute(f"attr.{i}", i)
            return f(1)

    ours = instrument.logged_execution(f)
    ours_full = instrument.logged_execution(agent_id="agent_id", user_id="user_id")(
        _agentkit_like)

    async def af(x: int) -> int:
        return x + 1

    ours_async = instrument.logged_execution(af)

    def gen(n: int) -> Any:
        yield from range(n)

    ours_gen = instrument.logged_execution(gen)
    loop = asyncio.new_event_loop()

    def async_variant(fn: Any) -> Any:
        def go(calls: int) -> float:
            import time as _t

            async def many() -> None:
                for _ in range(calls):
                    await fn(1)

            t0 = _t.perf_counter_ns()
            loop.run_until_complete(many())
            return (_t.perf_counter_ns() - t0) / calls / 1000
        return go

    d = default
    variants = {
        "bare call": timed(lambda: f(1)),
        "raw OTel span": timed(raw_span),
        "raw span + 10 attributes": timed(raw_span_attrs),
        "@logged_execution (sync, int result)": on(d, timed(lambda: ours(1))),
        "@logged_execution (sync, agentkit result)": on(d, timed(lambda: ours_full("a-1", "u-1"))),
        "@logged_execution (async)": on(d, async_variant(ours_async)),
        "@logged_execution (generator, 3 items)": on(d, timed(lambda: sum(ours_gen(3)))),
        "deferred spool: int result": on(deferred, timed(lambda: ours(1))),
        "deferred spool: agentkit result": on(deferred, timed(lambda: ours_full("a-1", "u-1"))),
        "deferred spool: async": on(deferred, async_variant(ours_async)),
    }
    samples = interleaved(variants, rounds, calls,
                          between=flush_both if mode == "call-path" else None)
    loop.close()
    runtime.swap(default)
    deferred.shutdown(10.0)
    instrument.shutdown(10.0)
    result = {name: summarize(name, values) for name, values in samples.items()}
    if print_table:
        from benchmarks.report import table

        base = result["raw OTel span"].median
        table(f"Call overhead, {mode} (µs per call; ratio to a raw OTel span)",
              ["variant", "median", "p10–p90", "× raw span"],
              [s.row("µs", base) for s in result.values()])
    return result


_RESULT = {
    "success": True, "response": "done", "iterations": 3,
    "toolCalls": [{"plugin": "gmail", "action": "search", "success": True,
                   "result": {"emails": [1, 2, 3]}}],
    "tokensUsed": {"prompt": 3000, "completion": 600, "total": 3600},
    "executionTime": 12000, "model": "gpt-4o", "provider": "openai",
}


def _agentkit_like(agent_id: str, user_id: str) -> dict[str, Any]:
    return _RESULT
