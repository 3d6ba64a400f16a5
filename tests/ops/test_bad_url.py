"""A bad database URL says what is wrong and what to write instead; at call time it never
dumps a traceback or drops a record (issue 18 item 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import instrument
from instrument.errors import ConfigurationError
from instrument.pipeline.spool import backlog
from instrument.stores import open_store, url_problem
from tests.ops.test_exit_time import EXIT_BUDGET_S, run_script


@pytest.mark.parametrize(("url", "advice"), [
    ("sqlite://instrument.db", "'sqlite:///instrument.db'"),
    ("sqlite:instrument.db", "use 'sqlite:///path.db'"),
    ("postgresql+psycopg://me:secret@db/agents", "write 'postgresql://me:***@db/agents'"),
    ("file:///srv/agents.db", "write 'sqlite:////srv/agents.db'"),
    ("agents.db", "for a SQLite file write 'sqlite:///agents.db'"),
    ("mysql://root@localhost/agents", "unsupported database URL scheme 'mysql'"),
    ("", "is empty"),
])
def test_every_bad_url_says_what_to_write_instead(url: str, advice: str) -> None:
    problem = url_problem(url, "INSTRUMENT_DATABASE_URL")
    assert problem is not None
    assert advice in problem, problem
    assert "secret" not in problem
    with pytest.raises(ConfigurationError) as raised:
        open_store(url)
    assert advice in str(raised.value)


def test_good_urls_have_no_problem() -> None:
    for url in ("sqlite:///a.db", "sqlite:////abs/a.db", "sqlite://:memory:",
                "postgresql://u@h/db", "postgres://u@h/db", "supabase", "supabase://proj"):
        assert url_problem(url) is None, url


def test_configure_with_two_slashes_raises_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"has two slashes.*'sqlite:///x\.db'"):
        instrument.configure(database_url="sqlite://x.db", spool_dir=str(tmp_path / "s"))


@pytest.mark.parametrize("url", ["sqlite://agents.db", "mysql://root@localhost/agents"])
def test_a_bad_url_at_call_time_spools_the_records_and_says_so_once(
        tmp_path: Path, url: str) -> None:
    exit_s, lines = run_script(tmp_path, INSTRUMENT_DATABASE_URL=url)
    assert exit_s < EXIT_BUDGET_S, f"exit took {exit_s:.2f}s"
    assert len(lines) == 1, lines  # no traceback, one line
    line = lines[0]
    assert "Traceback" not in line
    assert "3 records not yet written to" in line
    assert "ConfigurationError" in line
    assert "INSTRUMENT_SPOOL_DIR=<this spool> instrument " \
        "replay" in line
    spool = Path(line.split(" stay in the spool ", 1)[1].split(" and are written")[0])
    assert spool.is_relative_to(tmp_path / "home")  # the HOME of that process
    assert backlog(spool) == 3
    # fixed, the records are delivered from that spool
    db = tmp_path / "fixed.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTRUMENT_")}
    env.update(INSTRUMENT_SPOOL_DIR=str(spool), HOME=str(tmp_path / "home"))
    replay = subprocess.run([sys.executable, "-m", "instrument.cli", "replay",
                             "--database-url", f"sqlite:///{db}"], capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert replay.returncode == 0, replay.stderr
    assert "Delivered 3 record(s)" in replay.stdout
    assert backlog(spool) == 0


def test_strict_mode_raises_a_bad_url_at_call_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_DATABASE_URL", "sqlite://agents.db")
    monkeypatch.setenv("INSTRUMENT_STRICT", "1")

    @instrument.logged_execution(engine="orchestrator", agent_id="agent.id")
    def run(agent: dict[str, str]) -> dict[str, bool]:
        return {"success": True}

    with pytest.raises(ConfigurationError, match="two slashes"):
        run({"id": "a"})
