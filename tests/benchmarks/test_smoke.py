"""Smoke runs of every benchmark at tiny sizes, so the harness cannot rot. No timing assertions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "which", ["overhead", "breakdown", "ingest", "isolation", "memory", "scaling", "peers", "e2e"])
def test_benchmark_smoke(which: str, pg_admin_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "INSTRUMENT_STRICT": "0", "COLUMNS": "160"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", which, "--smoke", "--pg-admin-url", pg_admin_url],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "machine:" in proc.stdout
    expected = {"overhead": "Call overhead", "breakdown": "Where the time goes",
                "ingest": "Ingest throughput",
                "isolation": "Isolation", "memory": "Resident memory", "scaling": "Cost per record",
                "peers": "The peers", "e2e": "End to end"}
    assert expected[which] in proc.stdout, proc.stdout[-3000:]
