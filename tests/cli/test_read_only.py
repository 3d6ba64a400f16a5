"""Commands that only read never create a database; every message names the absolute path."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from instrument.cli import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from tests.cli.conftest import Run, assert_one_line_error, run_cli


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no INSTRUMENT_DATABASE_URL: the embedded default."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("INSTRUMENT_DATABASE_URL", raising=False)
    monkeypatch.delenv("INSTRUMENT_SPOOL_DIR", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return work


@pytest.mark.parametrize("argv", [["tail"], ["tail", "--json"], ["tail", "--agent", "x"],
                                  ["stats"], ["stats", "--json"]])
def test_reading_in_an_empty_folder_creates_nothing(run: Run, empty_dir: Path,
                                                    argv: list[str]) -> None:
    got = run(*argv)
    assert_one_line_error(got, EXIT_PROBLEM, f"no database at {empty_dir / 'instrument.db'}",
                          "instrument migrate")
    assert list(empty_dir.iterdir()) == []


def test_doctor_in_an_empty_folder_says_no_database_and_creates_nothing(
        run: Run, empty_dir: Path) -> None:
    got = run("doctor", "--json")
    assert got.code == EXIT_PROBLEM
    checks = {c["check"]: c for c in got.json()["checks"]}
    assert checks["database"]["status"] == "fail"
    assert checks["database"]["detail"] == f"no database at {empty_dir / 'instrument.db'}"
    assert "instrument migrate" in checks["database"]["fix"]
    assert checks["schema"]["status"] == "skip"
    assert got.json()["settings"]["database_url"] == f"sqlite:///{empty_dir / 'instrument.db'}"
    assert list(empty_dir.iterdir()) == []


def test_replay_with_nothing_to_deliver_creates_nothing(run: Run, empty_dir: Path) -> None:
    got = run("replay")
    assert_one_line_error(got, EXIT_PROBLEM, f"no database at {empty_dir / 'instrument.db'}",
                          "spool", "is empty")
    assert list(empty_dir.iterdir()) == []


def test_a_typo_in_the_url_does_not_create_an_empty_database(run: Run, empty_dir: Path) -> None:
    assert run("demo").code == EXIT_OK
    before = sorted(p.name for p in empty_dir.iterdir())
    got = run("stats", "--database-url", "sqlite:///instrumnet.db")
    assert_one_line_error(got, EXIT_PROBLEM, f"no database at {empty_dir / 'instrumnet.db'}",
                          "instrument migrate --database-url sqlite:///instrumnet.db")
    assert sorted(p.name for p in empty_dir.iterdir()) == before


def test_migrate_and_demo_may_create(run: Run, empty_dir: Path) -> None:
    made = run("migrate")
    assert made.code == EXIT_OK, made.err
    assert made.out.startswith(f"Created {empty_dir / 'instrument.db'} with schema v")
    shown = run("tail", "--user", "nobody")
    assert shown.code == EXIT_OK
    assert f"No executions match in sqlite:///{empty_dir / 'instrument.db'}" in shown.out


def test_a_sqlite_file_without_our_schema_is_left_alone(run: Run, empty_dir: Path) -> None:
    other = empty_dir / "app.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        conn.commit()
    url = f"sqlite:///{other}"
    for argv in (["tail"], ["stats"]):
        got = run(*argv, "--database-url", url)
        assert_one_line_error(got, EXIT_PROBLEM, f"no logged-execution schema in {other}",
                              f"instrument migrate --database-url {url}")
    doctor = run("doctor", "--json", "--database-url", url)
    assert {c["check"]: c["status"] for c in doctor.json()["checks"]}["schema"] == "fail"
    with closing(sqlite3.connect(other)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    assert tables == ["users"]


def test_two_slashes_say_to_use_three(run: Run, empty_dir: Path) -> None:
    for argv in (["tail"], ["migrate"], ["demo"]):
        got = run(*argv, "--database-url", "sqlite://instrument.db")
        assert_one_line_error(got, EXIT_USAGE, "two slashes", "'sqlite:///instrument.db'",
                              str(empty_dir / "instrument.db"))
    assert list(empty_dir.iterdir()) == []


def test_two_slashes_from_the_environment_name_the_variable(
        run: Run, empty_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_DATABASE_URL", "sqlite://agents.db")
    assert_one_line_error(run("stats"), EXIT_USAGE, "INSTRUMENT_DATABASE_URL",
                          "'sqlite:///agents.db'")


def test_the_console_script_in_an_empty_folder(empty_dir: Path) -> None:
    """The same through the installed entry point in a fresh process."""
    got = run_cli("tail", cwd=empty_dir, env={"INSTRUMENT_DATABASE_URL": ""})
    assert got.code == EXIT_PROBLEM
    assert got.err.strip().startswith(f"error: no database at {empty_dir / 'instrument.db'};")
    assert list(empty_dir.iterdir()) == []
