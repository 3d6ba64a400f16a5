"""Fault injection with real processes: kill -9 mid-batch, fork children, gunicorn-style preload."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.delivery.effects import effects
from tests.delivery.helpers import replay_spool

ROOT = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[str]:
    try:
        return [x for x in path.read_text().splitlines() if x]
    except FileNotFoundError:
        return []


def _wait_rows(url: str, n: int, timeout_s: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        ids = effects(url)[0]
        if len(ids) >= n or time.monotonic() > deadline:
            return ids
        time.sleep(0.2)


def test_kill_9_mid_batch_repeatedly_then_replay(store_url: str, tmp_path: Path) -> None:
    spool, out = tmp_path / "spool", tmp_path / "out"
    rng = random.Random(7)
    for _ in range(4):
        before = len(_lines(Path(f"{out}.done")))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.delivery.procs", "produce", store_url, str(spool),
             str(out), "0"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(_lines(Path(f"{out}.done"))) < before + 300 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.15))
        proc.kill()  # SIGKILL: no atexit, no flush, whatever batch was in flight
        proc.wait()
        assert proc.returncode == -9
    report = replay_spool(store_url, spool)
    assert report.error is None
    assert report.remaining == 0
    ids, logs, runs = effects(store_url)
    started, done = set(_lines(Path(f"{out}.started"))), set(_lines(Path(f"{out}.done")))
    assert len(done) >= 1200
    assert len(ids) == len(set(ids))  # one row per execution
    assert done <= set(ids)  # nothing a caller saw complete is lost
    assert set(ids) <= started  # nothing invented; at most the in-flight call per kill extra
    assert len(ids) - len(done) <= 4
    assert logs == len(ids)  # one log row per execution
    assert runs == len(ids)  # stats counted exactly once per execution
    assert list(spool.glob("*.seg")) == []


FORK_MP = """
import multiprocessing as mp, sys, instrument
from tests.delivery.procs import make_executor
instrument.configure(database_url=URL, spool_dir=SPOOL, batch_size=50, flush_interval_s=5.0)
run = make_executor(OUT, "parent")
for i in range(20):
    run(i)          # these sit in the parent's memory at fork time (5 s batch age)
def child(k):
    for i in range(50):
        run(i)      # no explicit flush: the child's pipeline flushes at process exit
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=child, args=(k,)) for k in range(3)]
    for p in ps: p.start()
    for p in ps: p.join(60)
    assert [p.exitcode for p in ps] == [0, 0, 0], [p.exitcode for p in ps]
    assert instrument.flush(30)
"""

PRELOAD = """
import os, sys, instrument
from tests.delivery.procs import make_executor
instrument.configure(database_url=URL, spool_dir=SPOOL, batch_size=50, flush_interval_s=5.0)
run = make_executor(OUT, "parent")          # the app is imported and configured before fork
for i in range(20):
    run(i)
pids = []
for k in range(3):
    pid = os.fork()
    if pid == 0:                            # a worker: serve "requests", then exit
        for i in range(50):
            run(i)
        if k == 2:
            os._exit(0)                     # a worker that dies without any cleanup
        sys.exit(0)                         # gunicorn workers leave through SystemExit
    pids.append(pid)
for pid in pids:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
assert instrument.flush(30)
"""


def _run_fork_script(code: str, url: str, tmp_path: Path,
                     spool_mode: str = "write-through") -> Path:
    out = tmp_path / "out"
    head = f"URL = {url!r}\nSPOOL = {str(tmp_path / 'spool')!r}\nOUT = {str(out)!r}\n"
    proc = subprocess.run([sys.executable, "-c", head + code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "INSTRUMENT_SPOOL_MODE": spool_mode})
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("spool_mode", ["write-through", "deferred"])
def test_multiprocessing_fork_children_deliver(store_url: str, tmp_path: Path,
                                               spool_mode: str) -> None:
    out = _run_fork_script(FORK_MP, store_url, tmp_path, spool_mode)
    started = _lines(Path(f"{out}.started"))
    assert len(started) == 170
    ids, logs, runs = effects(store_url)
    assert sorted(ids) == sorted(started)  # the parent's 20 once, each child's 50 once
    assert logs == 170
    assert runs == 170


def test_preloaded_fork_workers_deliver(store_url: str, tmp_path: Path) -> None:
    out = _run_fork_script(PRELOAD, store_url, tmp_path)
    started = _lines(Path(f"{out}.started"))
    assert len(started) == 170
    # the worker that died without cleanup left its records in the spool; the next process
    # on that spool (here: replay, as `instrument replay` would) delivers them
    report = replay_spool(store_url, tmp_path / "spool")
    assert report.error is None
    ids = _wait_rows(store_url, 170)
    assert sorted(ids) == sorted(started)
    _, logs, runs = effects(store_url)
    assert logs == 170
    assert runs == 170


REPLAYER = """
import json
from tests.delivery.helpers import replay_spool
r = replay_spool(URL, SPOOL)
print(json.dumps({"applied": r.applied, "duplicates": r.duplicates, "error": r.error}))
"""


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # a spool property: one store
def test_concurrent_replayers_never_apply_a_record_twice(store_url: str, tmp_path: Path) -> None:
    import json

    spool = tmp_path / "spool"
    dead = "postgresql://postgres@127.0.0.1:1/test"
    for _ in range(3):  # three processes that ended with their records still spooled
        subprocess.run([sys.executable, "-m", "tests.delivery.procs", "flood", dead, str(spool),
                        "1000", "100"], cwd=ROOT, capture_output=True, timeout=120, check=True)
    assert len(list(spool.glob("*.seg"))) >= 3
    head = f"URL = {store_url!r}\nSPOOL = {str(spool)!r}\n"
    procs = [subprocess.Popen([sys.executable, "-c", head + REPLAYER], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(3)]
    reports = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(r["error"] is None for r in reports)
    assert sum(r["applied"] for r in reports) == 3000
    # the store never even saw a record twice: each spool was adopted by one replayer
    assert sum(r["duplicates"] for r in reports) == 0
    ids, logs, runs = effects(store_url)
    assert len(ids) == 3000
    assert logs == 3000
    assert runs == 3000
    assert list(spool.glob("*.seg")) == []


IDLE_CHILD = """
import os, instrument
from tests.delivery.procs import make_executor
instrument.configure(database_url=URL, spool_dir=SPOOL)
run = make_executor(OUT, "parent")
run(0)
before = sorted(os.listdir(SPOOL))
pid = os.fork()
if pid == 0:  # a child that records nothing (or execs) starts nothing and writes nothing
    import threading
    ok = sorted(os.listdir(SPOOL)) == before and threading.active_count() == 1
    ok = ok and instrument.flush(1.0)
    os._exit(0 if ok and sorted(os.listdir(SPOOL)) == before else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
assert instrument.flush(10)
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_forked_child_that_records_nothing_leaves_no_trace(store_url: str, tmp_path: Path
                                                             ) -> None:
    _run_fork_script(IDLE_CHILD, store_url, tmp_path)
    assert len(effects(store_url)[0]) == 1
