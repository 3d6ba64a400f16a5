"""Shared fixtures: strict mode, a fresh runtime per test, and real PostgreSQL databases."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("INSTRUMENT_STRICT", "1")
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")

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
