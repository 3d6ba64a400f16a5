"""Through a real PgBouncer in transaction mode (what Supabase's pooler on port 6543 is).

A pooled server connection serves many clients, one transaction at a time. Two things break
there and are checked against Debian's ``pgbouncer``: nothing we set may outlive our
transaction (a per-connection ``SET statement_timeout`` would leak into the next client of
that server connection), and rows must land exactly once when batches go through the pooler.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from instrument.stores.postgres.store import PostgresStore
from instrument.writers import BUILTIN_WRITERS
from tests.conftest import IN_CI
from tests.stores.records import agentkit

pytestmark = pytest.mark.postgres

_PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer"
                                           if os.path.exists("/usr/sbin/pgbouncer") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pooled_url(pg_url: str) -> Iterator[str]:
    """A PgBouncer (transaction mode, ONE server connection) in front of a fresh database."""
    if _PGBOUNCER is None:
        reason = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if IN_CI:
            pytest.fail(f"{reason}; .ci/run installs it")
        pytest.skip(reason)
    # PgBouncer refuses to run as root: as root, run it as the postgres user, from a directory
    # that user owns.
    tmp_path = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    command = [_PGBOUNCER]
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(tmp_path, account.pw_uid, account.pw_gid)
        command = ["runuser", "-u", "postgres", "--", _PGBOUNCER]
    parts = urlsplit(pg_url)
    db = parts.path.lstrip("/")
    user = parts.username or "postgres"
    port = _free_port()
    (tmp_path / "users.txt").write_text(f'"{user}" ""\n')
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{db} = host={parts.hostname} port={parts.port or 5432} dbname={db}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir = {tmp_path}\n"
        "auth_type = trust\n"
        f"auth_file = {tmp_path / 'users.txt'}\n"
        "pool_mode = transaction\n"
        "default_pool_size = 1\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 50\n"
        f"logfile = {tmp_path / 'pgbouncer.log'}\n"
        "ignore_startup_parameters = extra_float_digits,options\n")
    proc = subprocess.Popen([*command, str(ini)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"postgresql://{user}@127.0.0.1:{port}/{db}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2, prepare_threshold=None):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log = (tmp_path / "pgbouncer.log")
                    pytest.fail("pgbouncer did not start: "
                                + (log.read_text()[-2000:] if log.exists() else ""))
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_nothing_we_set_outlives_our_transaction_on_a_pooled_connection(
        pg_url: str, pooled_url: str) -> None:
    # migrate directly (DDL needs no pooler), then write through the pooler
    direct = PostgresStore(pg_url)
    direct.migrate()
    direct.close()
    store = PostgresStore(pooled_url, statement_timeout_ms=1234)
    try:
        records = [agentkit(i) for i in range(40)]
        for start in range(0, 40, 10):
            applied = store.apply(records[start:start + 10], BUILTIN_WRITERS)
            assert applied.applied == 10
        # the same batch again (a retry after a lost acknowledgement): nothing lands twice
        again = store.apply(records[:10], BUILTIN_WRITERS)
        assert again.applied == 0
        # Another client of the pool gets the same (only) server connection: it must see the
        # server's default, not our 1234 ms.
        with psycopg.connect(pooled_url, autocommit=True, prepare_threshold=None) as other:
            timeout = other.execute("show statement_timeout").fetchone()
            backend = other.execute("select pg_backend_pid()").fetchone()
        assert timeout == ("0",), "our SET leaked to another client of the pool"
        with psycopg.connect(pooled_url, autocommit=True, prepare_threshold=None) as other:
            assert other.execute("select pg_backend_pid()").fetchone() == backend, \
                "the pool has one server connection: both clients must have shared it"
    finally:
        store.close()
    with psycopg.connect(pg_url) as conn:
        count = conn.execute("select count(*) from agent_executions").fetchone()
        runs = conn.execute("select sum(run_count) from agent_stats").fetchone()
    assert count == (40,)
    assert runs == (40,)
