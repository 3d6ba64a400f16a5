"""Memory: resident set size over many decorated calls, healthy store vs dead store.

Run each scenario in its own process (`python -m benchmarks memory`) so RSS is not shared.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, sys, gc
import instrument
from benchmarks.common import rss_mb
url, spool, calls, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
instrument.configure(database_url=url, traces="none", strict=False, spool_dir=spool,
                     spool_mode=mode)
if url.startswith("sqlite"):
    from instrument.stores import open_store
    open_store(url).migrate()
@instrument.logged_execution(agent_id="agent_id")
def executor(agent_id):
    return {"success": True, "iterations": 1}
samples = []
step = max(1, calls // 10)
for i in range(calls):
    executor("agent-%d" % (i % 3))
    if i % step == 0:
        gc.collect()
        samples.append((i, rss_mb()))
samples.append((calls, rss_mb()))
instrument.shutdown(2.0)
print(json.dumps(samples))
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*, calls: int = 1_000_000, print_table: bool = True) -> dict[str, list[Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="instrument-mem-"))
    dead = f"postgresql://postgres@127.0.0.1:{_closed_port()}/none?connect_timeout=1"
    scenarios = {
        "healthy store (SQLite)": (f"sqlite:///{tmp / 'mem.db'}", "write-through"),
        "dead store": (dead, "write-through"),
        "dead store, deferred spool": (dead, "deferred"),
    }
    out: dict[str, list[Any]] = {}
    for label, (url, mode) in scenarios.items():
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, url, str(tmp / f"spool-{len(out)}"), str(calls),
             mode],
            capture_output=True, text=True, check=True, timeout=3600,
        )
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    if print_table:
        from benchmarks.report import table

        table(f"Resident memory over {calls:,} decorated calls (MB)",
              ["store", "after 1st step", "peak", "end"],
              [[k, f"{v[1][1]:.1f}" if len(v) > 1 else f"{v[0][1]:.1f}",
                f"{max(s[1] for s in v):.1f}", f"{v[-1][1]:.1f}"] for k, v in out.items()])
    return out
