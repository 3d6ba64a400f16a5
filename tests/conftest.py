"""Shared fixtures: strict mode, a fresh runtime per test, real PostgreSQL databases, and a
sandbox so that no test touches the user's own database or spool.

The suite runs where users keep their data: `instrument demo` leaves ./instrument.db in the
checkout, and network stores spool under ~/.cache/logged-execution. Before any test module is
imported (some decorate at import time), the default database URL points into a throwaway
directory and HOME is a throwaway home; pip keeps the real cache. At the end of the session,
the run fails if ./instrument.db or ~/.cache/logged-execution changed anyway.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("INSTRUMENT_STRICT", "1")
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")

#: what the suite must leave untouched: the default database where the suite runs, and the
#: real home's spool directory for network stores
USER_DEFAULT_DB = Path.cwd() / "instrument.db"
USER_SPOOL_ROOT = Path.home() / ".cache" / "logged-execution"
SANDBOX = Path(tempfile.mkdtemp(prefix="instrument-tests-"))
atexit.register(shutil.rmtree, SANDBOX, ignore_errors=True)
os.environ.setdefault("PIP_CACHE_DIR", str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"))
(SANDBOX / "home").mkdir()
os.environ["HOME"] = str(SANDBOX / "home")
os.environ["INSTRUMENT_DATABASE_URL"] = f"sqlite:///{SANDBOX / 'default.db'}"


def _fingerprint(path: Path) -> list[tuple[str, int, int]]:
    """Every file at or under `path` with its size and modification time."""
    if path.is_file():
        st = path.stat()
        return [(str(path), st.st_size, st.st_mtime_ns)]
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in path.rglob("*") if p.is_file()) if path.is_dir() else []


_USER_DATA_BEFORE = {p: _fingerprint(p) for p in (USER_DEFAULT_DB, USER_SPOOL_ROOT)}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    changed = [str(p) for p, before in _USER_DATA_BEFORE.items() if _fingerprint(p) != before]
    if changed:
        print(f"\nERROR: the test suite changed the user's own data: {changed}; a test wrote "
              "to the default database or spool instead of its own (tests/conftest.py)")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

PG_ADMIN_URL = os.environ.get("INSTRUMENT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The admin URL of the real PostgreSQL server. In CI a missing server fails the test."""
    problem = _pg_available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: a missing Postgres is a failure, not a skip)")
        pytest.skip(problem)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A brand-new database for one test, dropped afterwards."""
    import psycopg

    name = f"instr_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """Every test starts unconfigured and leaves nothing running."""
    from instrument import runtime

    runtime.reset(2.0)
    yield
    runtime.reset(2.0)


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120
               ) -> subprocess.CompletedProcess[str]:
    """Run a snippet in a fresh interpreter (for atexit, fork and crash tests)."""
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=False)
