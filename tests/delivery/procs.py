"""Worker processes for the fault-injection tests (run as ``python -m tests.delivery.procs``).

``flood URL SPOOL N QUEUE_SIZE``: N decorated calls, then print resident memory and the
pipeline's stats as JSON (the memory-bound test and the benchmarks use it with a dead store).

``produce URL SPOOL OUT N [SPOOL_MODE [linger]]``: configure the SDK for URL with SPOOL, then
run N decorated calls (0 = until killed; ``linger``: then wait to be killed). The id of every
execution is appended to ``OUT.started`` inside the call and to ``OUT.done`` after the decorated
call returned, so the test knows exactly which executions were produced even when this process
is ``kill -9``ed at an arbitrary instant.
"""

from __future__ import annotations

import os
import sys

import instrument
from instrument import logged_execution


def _append(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


LAST: list[str] = [""]


def make_executor(out: str, agent: str = "agent-kill") -> object:
    @logged_execution(engine="mapping", agent_id=instrument.literal(agent),
                      user_id=instrument.literal("u1"))
    def run(i: int) -> dict[str, object]:
        ctx = instrument.current_execution()
        assert ctx is not None
        LAST[0] = str(ctx.execution_id)
        _append(out + ".started", f"{ctx.execution_id}\n")
        return {"success": True, "tokens": {"input_tokens": 2, "output_tokens": 3,
                                            "total_tokens": 5}, "iterations": 1}
    return run


def produce(url: str, spool: str, out: str, n: int, spool_mode: str = "write-through",
            linger: bool = False) -> None:
    """`linger`: after the N calls, write ``OUT.finished`` and wait to be killed (no flush)."""
    instrument.configure(database_url=url, spool_dir=spool, batch_size=50,
                         flush_interval_s=0.01, spool_mode=spool_mode)
    run = make_executor(out)
    i = 0
    while n == 0 or i < n:
        run(i)  # type: ignore[operator]
        _append(out + ".done", LAST[0] + "\n")
        i += 1
    if linger:
        import time

        _append(out + ".finished", "1\n")
        while True:
            time.sleep(1)
    instrument.flush(30)


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def flood(url: str, spool: str, n: int, queue_size: int) -> None:
    """N decorated calls (store typically down); prints RSS and pipeline stats as JSON."""
    import json
    import time

    from instrument import runtime

    instrument.configure(database_url=url, spool_dir=spool, queue_size=queue_size)

    @logged_execution(engine="mapping", agent_id=instrument.literal("agent-flood"))
    def run(i: int) -> dict[str, object]:
        return {"success": True, "tokens": {"total_tokens": 5}, "iterations": 1}

    warm = min(n, 2000)
    for i in range(warm):
        run(i)
    base = _rss_kb()
    t0 = time.perf_counter()
    for i in range(n - warm):
        run(i)
    elapsed = time.perf_counter() - t0
    pipeline = runtime.current().pipeline
    stats = pipeline.stats().as_dict()  # type: ignore[attr-defined]
    print(json.dumps({"calls": n, "rss_base_kb": base, "rss_end_kb": _rss_kb(),
                      "per_call_us": elapsed / max(1, n - warm) * 1e6, "stats": stats}))
    runtime.shutdown(0.5)


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]),
                *sys.argv[6:7], linger="linger" in sys.argv[7:])
    elif sys.argv[1] == "flood":
        flood(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
