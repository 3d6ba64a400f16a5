"""`replay`'s progress bar shows the known total from the start (not `0/?`)."""

from __future__ import annotations

import re
from pathlib import Path

from instrument.cli import EXIT_OK, EXIT_PROBLEM
from tests.cli.conftest import UNREACHABLE_PG, run_cli
from tests.cli.test_commands import _SPOOL_WRITER
from tests.conftest import run_python


def test_the_bar_counts_against_the_records_waiting(tmp_path: Path, db_url: str) -> None:
    spool = tmp_path / "spool"
    env = {"TARGET": UNREACHABLE_PG, "INSTRUMENT_SPOOL_DIR": str(spool),
           "INSTRUMENT_STRICT": "0"}
    proc = run_python(_SPOOL_WRITER, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr

    down = run_cli("replay", "--database-url", UNREACHABLE_PG, columns=120,
                   env={"INSTRUMENT_SPOOL_DIR": str(spool)})
    assert down.code == EXIT_PROBLEM
    bars = re.findall(r"(\d+)/(\S+) \d+:\d\d:\d\d", down.out)
    assert bars, down.out
    assert {total for _, total in bars} == {"5"}  # the database is down: still 0/5, never 0/?
    assert "Delivered 0 record(s)" in down.out

    up = run_cli("replay", "--database-url", db_url, columns=120,
                 env={"INSTRUMENT_SPOOL_DIR": str(spool)})
    assert up.code == EXIT_OK, up.out + up.err
    assert re.findall(r"(\d+)/(\S+) \d+:\d\d:\d\d", up.out)[-1] == ("5", "5")
    assert "Delivered 5 record(s)" in up.out
