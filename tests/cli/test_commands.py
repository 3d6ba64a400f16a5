"""Each command: its success output, its --json form, and bad input (one line, non-zero)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import instrument
from instrument.cli import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from instrument.cli.app import cli
from tests.cli.conftest import UNREACHABLE_PG, WRONG_SCHEME, Run, assert_one_line_error

COMMANDS = sorted(cli.commands)  # type: ignore[attr-defined]
DEMO_AGENTS = {"invoice-pipeline", "support-triage", "lead-research", "order-assistant"}


def test_every_command_is_there_with_help(run: Run) -> None:
    assert COMMANDS == ["demo", "doctor", "migrate", "prune", "replay", "schema", "show", "stats",
                        "tail"]
    top = run("--help")
    assert top.code == EXIT_OK
    for name in COMMANDS:
        assert name in top.out
        got = run(name, "--help")
        assert got.code == EXIT_OK, got
        assert "--database-url" in got.out, f"{name} lacks --database-url"


def test_usage_errors_exit_2(run: Run) -> None:
    assert run("nosuchcommand").code == EXIT_USAGE
    assert run("tail", "--status", "sideways").code == EXIT_USAGE
    assert run("tail", "--limit", "0").code == EXIT_USAGE


@pytest.mark.parametrize("argv", [[c] for c in ("demo", "stats", "tail", "doctor", "migrate",
                                                 "replay")] + [["schema"]])
def test_wrong_url_scheme_is_a_one_line_usage_error(run: Run, db_url: str,
                                                    argv: list[str]) -> None:
    got = run(*argv, "--database-url", WRONG_SCHEME)
    assert_one_line_error(got, EXIT_USAGE, "mysql", "sqlite:///", "postgresql://")


def test_wrong_url_scheme_from_the_environment(run: Run, db_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_DATABASE_URL", WRONG_SCHEME)
    assert_one_line_error(run("stats"), EXIT_USAGE, "INSTRUMENT_DATABASE_URL")


@pytest.mark.parametrize("command", ["demo", "stats", "tail", "migrate"])
def test_unreachable_database_is_a_one_line_problem(run: Run, db_url: str, command: str) -> None:
    got = run(command, "--database-url", UNREACHABLE_PG)
    assert_one_line_error(got, EXIT_PROBLEM, "127.0.0.1:1", "--database-url")
    assert "nowhere" in got.err


# -- demo ---------------------------------------------------------------------------------------


def test_demo_prints_every_writers_rows_and_the_agent_stats(run: Run, db_url: str) -> None:
    got = run("demo")
    assert got.code == EXIT_OK, got.err
    for title in ("Writer `executions` -> agent_executions", "Writer `logs` -> agent_logs",
                  "Writer `stats` -> agent_stats", "Writer `intensity`", "AIS components"):
        assert title in got.out
    for agent in DEMO_AGENTS:
        assert agent in got.out
    for engine in ("orchestrator", "agentkit", "mapping", "openai_chat", "openai_responses",
                   "openai_agents"):
        assert engine in got.out
    assert "failed" in got.out
    assert "PluginTimeoutError" in got.out
    assert "MAX_ITERATIONS_REACHED" in got.out
    # What the demo printed is what the store holds.
    rows = run("tail", "--json", "--limit", "100").json_lines()
    assert len(rows) == 11
    assert {r["engine"] for r in rows} >= {"orchestrator", "agentkit"}
    assert sum(r["status"] == "failed" for r in rows) == 3


def test_demo_refuses_to_run_disabled(run: Run, db_url: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_DISABLED", "true")
    assert_one_line_error(run("demo"), EXIT_USAGE, "INSTRUMENT_DISABLED")


@pytest.mark.postgres
def test_demo_against_real_postgres(run: Run, db_url: str, pg_url: str) -> None:
    got = run("demo", "--database-url", pg_url)
    assert got.code == EXIT_OK, got.out + got.err
    assert "-> postgresql://" in " ".join(got.out.split())
    logs_section = got.out.split("Writer `logs`", 1)[1].split("Writer `stats`", 1)[0]
    statuses = [ln.split()[2] for ln in logs_section.splitlines()[2:]]  # piped: plain rows
    assert sorted(statuses) == ["completed"] * 8 + ["failed"] * 3  # every agent_logs row
    agents = {a["agent_id"] for a in run("stats", "--json", "--database-url", pg_url)
              .json()["agents"]}
    assert agents == DEMO_AGENTS


def test_demo_runs_again_and_accumulates(run: Run, db_url: str) -> None:
    assert run("demo").code == EXIT_OK
    assert run("demo").code == EXIT_OK
    agents = {a["agent_id"]: a for a in run("stats", "--json").json()["agents"]}
    assert agents["support-triage"]["runs"] == 8
    assert agents["invoice-pipeline"]["runs"] == 6


# -- stats --------------------------------------------------------------------------------------


def test_stats_table_and_json(run: Run, db_url: str) -> None:
    run("demo")
    table = run("stats")
    assert table.code == EXIT_OK
    for header in ("runs", "success %", "mean ms", "measured score", "combined score",
                   "multiplier", "token", "plugin", "workflow", "memory"):
        assert header in table.out
    data = run("stats", "--json").json()
    assert data["ranges"] == "best-practice"
    by_id = {a["agent_id"]: a for a in data["agents"]}
    assert set(by_id) == DEMO_AGENTS
    triage = by_id["support-triage"]
    assert (triage["runs"], triage["successes"], triage["failures"]) == (4, 2, 2)
    assert triage["success_rate"] == 50.0
    assert set(triage["components"]) == {"token", "execution", "plugin", "workflow", "memory"}
    assert 1.0 <= triage["multiplier"] <= 2.0
    assert triage["components"]["workflow"] is None  # not measured: unknown, never 0
    one = run("stats", "--json", "--agent", "support-triage").json()
    assert [a["agent_id"] for a in one["agents"]] == ["support-triage"]


def test_stats_recompute_ranges(run: Run, db_url: str) -> None:
    run("demo")
    got = run("stats", "--json", "--recompute-ranges")
    assert got.code == EXIT_OK
    ranges = got.json()["ranges"]
    assert isinstance(ranges, dict)
    assert ranges
    assert all(hi > lo for lo, hi in ranges.values())


def test_stats_recompute_ranges_scores_with_the_databases_ais_config(
        run: Run, db_url: str) -> None:
    import sqlite3

    from instrument import ais
    from instrument.cli.summary import ais_scores, dynamic_ranges
    from instrument.stores.sqlite.intensity import save_config_sqlite

    run("demo")
    custom = ais.AISConfig.from_mapping({  # execution-heavy weights, a lower percentile
        "weight.token": 0.05, "weight.execution": 0.8, "weight.plugin": 0.05,
        "weight.workflow": 0.05, "weight.memory": 0.05, "dynamic.percentile": 0.5})
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        save_config_sqlite(conn, custom)
        rows = [dict(zip([c[0] for c in cur.description], r, strict=True))
                for cur in [conn.execute("SELECT * FROM agent_intensity_metrics")]
                for r in cur.fetchall()]
    data = run("stats", "--json", "--recompute-ranges").json()
    ranges = dynamic_ranges(rows, custom)
    assert ranges != dynamic_ranges(rows)  # the stored percentile, not the default one
    assert {k: tuple(v) for k, v in data["ranges"].items()} == ranges
    for agent in data["agents"]:
        row = next(r for r in rows if r["agent_id"] == agent["agent_id"])
        expected = ais_scores(row, ranges, custom)
        assert agent["execution_score"] == expected["execution_score"]
        assert agent["combined_score"] == expected["combined_score"]
    scored = [a for a in data["agents"] if a["execution_score"] is not None]
    assert any(ais_scores(next(r for r in rows if r["agent_id"] == a["agent_id"]), ranges)
               ["execution_score"] != a["execution_score"] for a in scored)  # not defaults


def test_stats_recompute_ranges_on_a_small_fleet(run: Run, db_url: str) -> None:
    @instrument.logged_execution(agent_id="agent_id")
    def once(agent_id: str) -> dict[str, object]:
        return {"success": True, "iterations": 3}

    once("lonely")
    assert instrument.flush(10)
    data = run("stats", "--json", "--recompute-ranges").json()
    assert data["ranges"] == "best-practice"
    assert "at least 10 executions" in data["note"]
    assert "at least 10 executions" in run("stats", "--recompute-ranges").out


def test_stats_unknown_agent(run: Run, db_url: str) -> None:
    run("demo")
    got = run("stats", "--agent", "suport-triage")
    assert_one_line_error(got, EXIT_USAGE, "unknown agent 'suport-triage'", "support-triage")


def test_stats_on_an_empty_database(run: Run, db_url: str) -> None:
    assert run("migrate").code == EXIT_OK
    empty = run("stats")
    assert empty.code == EXIT_OK
    assert "No executions recorded yet" in empty.out
    assert run("stats", "--json").json()["agents"] == []


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["stats", "tail"])
def test_reading_an_unmigrated_postgres_names_migrate(run: Run, db_url: str, pg_url: str,
                                                      command: str) -> None:
    got = run(command, "--database-url", pg_url)
    assert_one_line_error(got, EXIT_PROBLEM, "instrument migrate")


# -- tail ---------------------------------------------------------------------------------------


def test_tail_table_json_and_filters(run: Run, db_url: str) -> None:
    run("demo")
    table = run("tail")
    assert table.code == EXIT_OK
    assert "agent_executions" in table.out
    rows = run("tail", "--json", "-n", "4").json_lines()
    assert len(rows) == 4
    started = [r["started_at"] for r in rows]
    assert started == sorted(started)  # oldest first, like tail
    failed = run("tail", "--json", "--status", "failed").json_lines()
    assert len(failed) == 3
    assert all(r["status"] == "failed" for r in failed)
    kit = run("tail", "--json", "--engine", "agentkit", "--agent", "support-triage",
              "--user", "demo-user").json_lines()
    assert len(kit) == 4
    assert {r["engine"] for r in kit} == {"agentkit"}
    nobody = run("tail", "--user", "someone-else")
    assert nobody.code == EXIT_OK
    assert "No executions match" in nobody.out


def test_tail_unknown_agent_and_engine(run: Run, db_url: str) -> None:
    run("demo")
    assert_one_line_error(run("tail", "--agent", "ghost"), EXIT_USAGE, "unknown agent 'ghost'")
    assert_one_line_error(run("tail", "--engine", "langchian"), EXIT_USAGE, "unknown engine")


def test_tail_follow_prints_executions_as_they_land(db_url: str, tmp_path: Path) -> None:
    instrument.configure(database_url=db_url)
    from instrument.stores import open_store

    store = open_store(db_url)
    store.migrate()
    store.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "instrument.cli", "tail", "--follow", "--json",
         "--interval", "0.1", "--timeout", "8", "--agent", "follow-me"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.5)  # let it print the (empty) start and begin polling

        @instrument.logged_execution(agent_id="agent_id")
        def step(agent_id: str, n: int) -> dict[str, object]:
            return {"success": n % 2 == 0, "iterations": n}

        for n in range(3):
            step("follow-me", n)
        assert instrument.flush(10)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_OK, err
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [r["agent_id"] for r in rows] == ["follow-me"] * 3
    assert [r["status"] for r in rows] == ["completed", "failed", "completed"]


# -- doctor -------------------------------------------------------------------------------------


def _checks(result_json: dict[str, object]) -> dict[str, dict[str, str]]:
    return {c["check"]: c for c in result_json["checks"]}  # type: ignore[index, union-attr]


def test_doctor_healthy(run: Run, db_url: str) -> None:
    run("migrate")
    got = run("doctor")
    assert got.code == EXIT_OK, got.out + got.err
    assert "database" in got.out
    assert "schema" in got.out
    data = run("doctor", "--json").json()
    assert data["ok"] is True
    assert data["settings"]["database_url"] == db_url
    assert data["settings"]["writers"] == ["executions", "logs", "stats", "intensity",
                                           "usage_ledger"]
    # the spool in use, with the default resolved (next to the SQLite file)
    assert data["settings"]["spool_dir"] == db_url.removeprefix("sqlite:///") + ".spool"
    assert data["settings"]["spool_mode"] == "write-through"
    checks = _checks(data)
    assert set(checks) >= {"database", "schema", "otlp", "spool", "quarantine"}
    assert checks["schema"]["status"] == "ok"
    assert checks["otlp"]["status"] == "skip"


def test_doctor_missing_schema_names_migrate(run: Run, db_url: str) -> None:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn:
        conn.execute("CREATE TABLE other (id INTEGER)")  # a SQLite file, not our schema
        conn.commit()
    got = run("doctor", "--json")
    assert got.code == EXIT_PROBLEM
    checks = _checks(got.json())
    assert checks["schema"]["status"] == "fail"
    assert "instrument migrate" in checks["schema"]["fix"]
    assert_one_line_error(got, EXIT_PROBLEM, "schema", "instrument migrate")


def test_doctor_unreachable_database(run: Run, db_url: str) -> None:
    got = run("doctor", "--json", "--database-url",
              UNREACHABLE_PG.replace("postgres@", "postgres:hunter2@"))
    assert got.code == EXIT_PROBLEM
    assert "hunter2" not in got.out + got.err
    checks = _checks(got.json())
    assert checks["database"]["status"] == "fail"
    assert "--database-url" in checks["database"]["fix"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_otlp_endpoint(run: Run, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run("migrate")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    down = run("doctor", "--json")
    assert down.code == EXIT_PROBLEM
    otlp = _checks(down.json())["otlp"]
    assert otlp["status"] == "fail"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in otlp["fix"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        up = run("doctor", "--json")
    assert _checks(up.json())["otlp"]["status"] == "ok", up.out
    assert up.code == EXIT_OK


def test_doctor_reports_quarantined_records(run: Run, db_url: str, tmp_path: Path) -> None:
    run("migrate")
    spool = tmp_path / "cli.db.spool"
    spool.mkdir(exist_ok=True)
    (spool / "quarantine.jsonl").write_text(json.dumps({
        "execution_id": "00000000-0000-0000-0000-000000000001", "error_type": "RecordRejected",
        "error": "value too long for column agent_id", "quarantined_at": time.time(),
        "store": "sqlite", "record": None, "raw": "{}",
    }) + "\n")
    got = run("doctor", "--json")
    assert got.code == EXIT_PROBLEM
    q = _checks(got.json())["quarantine"]
    assert q["status"] == "fail"
    assert "RecordRejected" in q["detail"]
    assert "quarantine.jsonl" in q["fix"]
    assert "damaged" not in q["detail"]


def test_doctor_tells_damaged_spool_bytes_from_refused_records(run: Run, db_url: str,
                                                               tmp_path: Path) -> None:
    from instrument.pipeline.quarantine import quarantine
    from instrument.pipeline.spool import Entry

    run("migrate")
    spool = tmp_path / "cli.db.spool"
    quarantine(spool, Entry(1, 40, None, "", "unreadable spool entry", damaged=b"\0" * 12),
               "UnreadableSpoolEntry", "unreadable spool entry: NUL bytes", "sqlite")
    got = run("doctor", "--json")
    q = _checks(got.json())["quarantine"]
    assert q["status"] == "fail"
    assert "1 damaged stretch(es) of the spool" in q["detail"]
    assert "refused by the store" not in q["detail"]
    assert "replay" not in q["fix"]  # quarantined entries are not replayable yet


# -- migrate, schema ---------------------------------------------------------------------------


def test_migrate_is_idempotent(run: Run, db_url: str) -> None:
    first = run("migrate")
    assert first.code == EXIT_OK
    assert first.out.startswith(f"Created {db_url.removeprefix('sqlite:///')} with schema v")
    again = run("migrate")
    assert again.code == EXIT_OK
    assert "already" in again.out


@pytest.mark.postgres
def test_migrate_and_doctor_on_real_postgres(run: Run, db_url: str, pg_url: str) -> None:
    migrated = run("migrate", "--database-url", pg_url)
    assert migrated.code == EXIT_OK, migrated.out + migrated.err
    got = run("doctor", "--json", "--database-url", pg_url)
    checks = _checks(got.json())
    assert checks["database"]["status"] == "ok"
    assert checks["schema"]["status"] == "ok"
    assert run("stats", "--json", "--database-url", pg_url).json()["agents"] == []


def test_schema_prints_ddl_per_dialect(run: Run, db_url: str) -> None:
    pg = run("schema", "--dialect", "postgres")
    assert pg.code == EXIT_OK
    assert "CREATE TABLE" in pg.out.upper()
    assert "increment_agent_stats" in pg.out
    lite = run("schema", "--dialect", "sqlite")
    assert lite.code == EXIT_OK
    assert "agent_executions" in lite.out
    assert run("schema").out == lite.out  # the dialect of the (sqlite) database URL
    assert run("schema", "--dialect", "oracle").code == EXIT_USAGE


# -- replay -------------------------------------------------------------------------------------


def test_replay_with_an_empty_spool(run: Run, db_url: str) -> None:
    run("migrate")
    got = run("replay")
    assert got.code == EXIT_OK
    assert "Delivered 0 record(s)" in got.out


_SPOOL_WRITER = """
import os, instrument
instrument.configure(database_url=os.environ["TARGET"], strict=False)

@instrument.logged_execution(agent_id="agent_id")
def work(agent_id, n):
    return {"success": True, "iterations": n}

for n in range(5):
    work("spooled-agent", n)
os._exit(0)  # die with the records still in the spool
"""


def test_replay_delivers_a_dead_process_spool(run: Run, db_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "shared-spool"
    monkeypatch.setenv("INSTRUMENT_SPOOL_DIR", str(spool))
    env = {"TARGET": UNREACHABLE_PG, "INSTRUMENT_SPOOL_DIR": str(spool),
           "INSTRUMENT_STRICT": "0"}
    from tests.conftest import run_python

    proc = run_python(_SPOOL_WRITER, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert list(spool.glob("*.seg")), "the writer process left no spool"
    down = run("replay", "--database-url", UNREACHABLE_PG)
    assert_one_line_error(down, EXIT_PROBLEM, "5 record(s) still in the spool", "instrument doctor")
    run("migrate")
    waiting = run("doctor", "--json")
    assert waiting.code == EXIT_OK  # a backlog is a warning, not a failure
    backlog = _checks(waiting.json())["spool"]
    assert backlog["status"] == "warn"
    assert "5 record(s) waiting" in backlog["detail"]
    assert "instrument replay" in backlog["fix"]
    got = run("replay")
    assert got.code == EXIT_OK, got.out + got.err
    assert "Delivered 5 record(s)" in got.out
    rows = run("tail", "--json", "--agent", "spooled-agent").json_lines()
    assert len(rows) == 5
    assert run("replay").out.count("Delivered 0") == 1  # drained: nothing twice


def test_without_the_cli_extra_the_command_says_what_to_install() -> None:
    from tests.conftest import run_python

    proc = run_python("import sys; sys.modules['rich'] = None\n"
                      "from instrument.cli import main\n"
                      "sys.exit(main(['stats']))")
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.strip() == ("error: the instrument command needs rich; pip install -e "
                                   "'.[cli]' in your logged-execution checkout (once published: "
                                   "pip install 'logged-execution[cli]')")


def test_printed_sqlite_schema_is_what_migrate_applies(run: Run, db_url: str,
                                                       tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    ddl = run("schema", "--dialect", "sqlite").out
    with closing(sqlite3.connect(tmp_path / "printed.db")) as conn:
        conn.executescript(ddl)
    checks = _checks(run("doctor", "--json", "--database-url",
                         f"sqlite:///{tmp_path / 'printed.db'}").json())
    assert checks["schema"]["status"] == "ok", checks["schema"]


@pytest.mark.postgres
def test_printed_postgres_schema_is_what_migrate_applies(run: Run, db_url: str,
                                                         pg_url: str) -> None:
    import psycopg

    ddl = run("schema", "--dialect", "postgres").out
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(ddl)  # type: ignore[call-overload]
    checks = _checks(run("doctor", "--json", "--database-url", pg_url).json())
    assert checks["schema"]["status"] == "ok", checks["schema"]
    assert run("migrate", "--database-url", pg_url).out.startswith("Schema already at v")
