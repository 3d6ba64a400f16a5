"""Done-when tests against the real stores: a Postgres outage behind a loopback proxy, a poison
record in a real batch, and bounded memory with the store down."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import instrument
from instrument import logged_execution, runtime
from instrument.pipeline import DeliveryPipeline, quarantined
from instrument.record import ExecutionResult, TokenUsage
from tests.delivery.effects import effects
from tests.delivery.proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxied_pg(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    from instrument.stores import open_store

    store = open_store(pg_url)
    store.migrate()
    store.close()
    proxy = TcpProxy()
    proxy.start()
    _head, _, dbname = pg_url.rpartition("/")
    yield f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}", proxy
    proxy.stop()


@logged_execution(engine="mapping", agent_id=instrument.literal("agent-outage"),
                  user_id=instrument.literal("u1"))
def _executor(i: int) -> dict[str, object]:
    return {"success": i % 7 != 0, "tokens": {"input_tokens": 3, "output_tokens": 4,
                                             "total_tokens": 7}, "iterations": 1}


def _timed_calls(n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        _executor(i)
        out.append(time.perf_counter() - t0)
    return out


def test_postgres_outage_during_10000_executions_loses_and_duplicates_nothing(
        proxied_pg: tuple[str, TcpProxy], pg_url: str, tmp_path: Path) -> None:
    url, proxy = proxied_pg
    instrument.configure(database_url=url, spool_dir=tmp_path / "spool", queue_size=2000)
    healthy = _timed_calls(2000)
    assert instrument.flush(30)

    proxy.stop()  # the database becomes unreachable (the real server keeps running)
    down = _timed_calls(10_000)
    t0 = time.monotonic()
    assert instrument.flush(1.0) is False  # bounded even though the store is dead
    assert time.monotonic() - t0 < 5
    stats = runtime.current().pipeline.stats()  # type: ignore[attr-defined]
    assert stats.spool_records == 10_000
    assert stats.queue_depth <= 2000  # the rest is on disk, not in memory
    assert stats.retries >= 1

    proxy.start()  # the database comes back
    assert instrument.flush(120)
    ids, logs, runs = effects(pg_url)
    assert len(ids) == 12_000
    assert len(set(ids)) == 12_000
    assert logs == 12_000
    assert runs == 12_000  # stats applied exactly once per execution

    med_ok, med_down = statistics.median(healthy), statistics.median(down)
    print(f"call overhead median: healthy {med_ok * 1e6:.0f} us, store down "
          f"{med_down * 1e6:.0f} us; max down {max(down) * 1e3:.1f} ms")
    # generous bounds: same range as healthy, and no call ever waited for the database
    # (its connect timeout is seconds)
    assert med_down < 5 * med_ok + 0.001
    assert max(down) < 1.0


@logged_execution(engine="mapping", agent_id="agent")
def _maybe_poison(agent: str, tokens: int) -> ExecutionResult:
    # an ExecutionResult passes through the adapter as is (a dict would be sanitized first);
    # model_construct skips the record's own range check, so the database is what refuses it
    return ExecutionResult(success=True, tokens=TokenUsage.model_construct(total_tokens=tokens))


def test_poison_record_is_quarantined_while_its_batch_lands(store_url: str, tmp_path: Path
                                                           ) -> None:
    spool = tmp_path / "spool"
    instrument.configure(database_url=store_url, spool_dir=spool, batch_size=100,
                         flush_interval_s=0.5)
    for i in range(40):
        # 10**20 fits no integer column: the database itself refuses this one record
        _maybe_poison("agent", 10**20 if i == 13 else 5)
    assert instrument.flush(30)  # quarantined counts as handled; the rest is written
    stats = runtime.current().pipeline.stats()  # type: ignore[attr-defined]
    assert stats.quarantined == 1
    assert stats.batches >= 2  # the refused batch was bisected
    ids, logs, runs = effects(store_url)
    assert len(ids) == 39
    assert logs == 39
    assert runs == 39
    q = quarantined(spool)
    assert len(q) == 1
    assert q[0].error_type == "RecordRejected"
    assert q[0].record is not None
    assert q[0].record["result"]["tokens"]["total_tokens"] == 10**20
    assert q[0].execution_id not in ids


def test_memory_stays_bounded_with_the_store_down(tmp_path: Path) -> None:
    """50,000 calls against a dead store: records go to disk, resident memory stays flat.

    (The 1,000,000-call figure is measured by the benchmarks with the same `flood` entry.)
    """
    dead = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1: refused
    proc = subprocess.run(
        [sys.executable, "-m", "tests.delivery.procs", "flood", dead, str(tmp_path / "spool"),
         "50000", "1000"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    grown_kb = out["rss_end_kb"] - out["rss_base_kb"]
    spool_kb = out["stats"]["spool_bytes"] // 1024
    print(f"rss growth {grown_kb} kB for {spool_kb} kB spooled; {out['per_call_us']:.0f} us/call")
    assert out["stats"]["spool_records"] == 50_000
    assert out["stats"]["dropped"] == 0
    assert out["stats"]["queue_depth"] <= 1000
    assert spool_kb > 20_000
    assert grown_kb < spool_kb / 4  # the backlog is on disk, not in RAM


def test_stats_of_a_fresh_pipeline_are_zero(tmp_path: Path) -> None:
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    p = runtime.current().pipeline
    assert isinstance(p, DeliveryPipeline)
    s = p.stats()
    assert s.submitted == 0
    assert s.breaker_state == "closed"


def test_flush_and_shutdown_keep_their_bounds_with_a_hanging_database(
        proxied_pg: tuple[str, TcpProxy], pg_url: str, tmp_path: Path) -> None:
    url, proxy = proxied_pg
    proxy.blackhole = True  # connections are accepted and then nothing ever answers
    spool = tmp_path / "spool"
    instrument.configure(database_url=url, spool_dir=spool)
    for i in range(100):
        _executor(i)
    t0 = time.monotonic()
    assert instrument.flush(1.0) is False
    assert instrument.shutdown(1.0) is False
    assert time.monotonic() - t0 < 3.0  # the worker may still be stuck in connect(); we are not
    proxy.blackhole = False
    # the next pipeline on this spool delivers the leftovers once the old worker let go
    instrument.configure(database_url=url, spool_dir=spool)
    deadline = time.monotonic() + 60
    while len(effects(pg_url)[0]) < 100 and time.monotonic() < deadline:
        time.sleep(0.2)
    ids, logs, runs = effects(pg_url)
    assert len(ids) == 100
    assert logs == 100
    assert runs == 100


def test_unmigrated_postgres_keeps_records_until_migrate(
        pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from instrument.stores import open_store

    instrument.configure(database_url=pg_url, spool_dir=tmp_path / "spool")
    for i in range(25):
        _executor(i)
    assert instrument.flush(1.0) is False
    assert "instrument migrate" in caplog.text  # the fix, said loudly
    stats = runtime.current().pipeline.stats()  # type: ignore[attr-defined]
    assert stats.spool_records == 25
    store = open_store(pg_url)
    store.migrate()
    store.close()
    assert instrument.flush(30)  # flush probes right away despite the slow schema retry
    ids, _logs, runs = effects(pg_url)
    assert len(ids) == 25
    assert runs == 25


DISK_FULL = """
import resource, instrument
from instrument import runtime
from tests.delivery.procs import make_executor
instrument.configure(database_url=URL, spool_dir=SPOOL, batch_size=50, flush_interval_s=0.05)
# from now on no file of this process may grow past 64 kB: spool appends start failing (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, resource.RLIM_INFINITY))
run = make_executor(OUT, "agent-disk")
for i in range(400):
    run(i)
assert instrument.flush(60)
print(runtime.current().pipeline.stats().as_dict())
"""


def test_spool_write_failures_fall_back_to_memory_without_losing_records(
        pg_url: str, tmp_path: Path) -> None:
    from instrument.stores import open_store

    store = open_store(pg_url)
    store.migrate()
    store.close()
    out = tmp_path / "out"
    head = (f"URL = {pg_url!r}\nSPOOL = {str(tmp_path / 'spool')!r}\nOUT = {str(out)!r}\n")
    proc = subprocess.run([sys.executable, "-c", head + DISK_FULL], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "spool write failed" in proc.stderr
    started = [x for x in (tmp_path / "out.started").read_text().splitlines() if x]
    ids, logs, runs = effects(pg_url)
    assert sorted(ids) == sorted(started)
    assert logs == 400
    assert runs == 400


def test_a_record_that_bypassed_the_door_with_a_lone_surrogate_is_quarantined(
        store_url: str, tmp_path: Path) -> None:
    """A hand-built record with text that cannot be UTF-8 encoded: the store refuses it, and
    quarantining it must not fail in turn (its JSON escapes the surrogate)."""
    from instrument.pipeline import DeliveryPipeline
    from instrument.record import ErrorInfo
    from instrument.stores import open_store
    from tests.delivery.helpers import make_record

    spool = tmp_path / "spool"
    good = [make_record("agent") for _ in range(5)]
    bad = make_record("agent").model_copy(update={"result": ExecutionResult.model_construct(
        success=False, error=ErrorInfo.model_construct(type="X", message="bad \udc80 text"))})
    pipe = DeliveryPipeline(open_store(store_url), writers=("executions", "logs", "stats"),
                            spool_dir=spool, flush_interval_s=0.05)
    try:
        for r in [*good[:2], bad, *good[2:]]:
            pipe.submit(r)
        assert pipe.flush(30)
    finally:
        pipe.shutdown(10)
    ids, logs, _ = effects(store_url)
    assert sorted(ids) == sorted(str(r.execution_id) for r in good)
    assert logs == 5
    (q,) = quarantined(spool)
    assert q.execution_id == str(bad.execution_id)
    assert q.record is not None
    assert q.record["result"]["error"]["message"] == "bad \udc80 text"
