"""A throwaway PostgreSQL cluster, for what the shared server cannot show.

Roles are cluster-wide: on the shared test server, Supabase's roles exist (other tests create
them), so "a plain-PostgreSQL migrate creates no role" can only be watched on a cluster of its
own. :func:`pristine_cluster` runs ``initdb`` and ``pg_ctl`` (as the ``postgres`` OS user when
the tests run as root, since the server refuses to run as root) on a free local port, and
removes everything afterwards. About 1.5 s.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["pristine_cluster"]


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        real = Path(os.path.realpath(found)).parent
        if (real / "initdb").exists():
            return real
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pristine_cluster() -> Iterator[str]:
    """The admin URL (database ``postgres``, user ``postgres``, trust auth) of a new cluster."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("initdb/pg_ctl are not installed (PostgreSQL server binaries)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start a PostgreSQL server")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="instrument-pg-"))
    data = root / "data"
    port = _free_port()
    if as_user:
        shutil.chown(root, user="postgres")
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "postgres", "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(root / "log"), "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
