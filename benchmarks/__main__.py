"""`python -m benchmarks {overhead,breakdown,ingest,isolation,memory,scaling,peers,e2e,all}
[--smoke]`.

Figures and the command that produced them are recorded in docs/performance.md. `--smoke`
runs tiny sizes (the test suite does this so the harness cannot rot; it asserts no timings).
"""

from __future__ import annotations

import argparse
import os
import platform

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _machine() -> str:
    return (f"{platform.python_implementation()} {platform.python_version()} on "
            f"{platform.machine()}, {os.cpu_count()} cores")


def _fresh_pg_db(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_pg_db(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("which", choices=["overhead", "breakdown", "ingest", "isolation",
                                          "memory", "scaling", "peers", "e2e", "all"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG,
                        help="admin URL; benchmark databases are created and dropped there")
    parser.add_argument("--no-postgres", action="store_true", help="skip Postgres scenarios")
    parser.add_argument("--python", default=None,
                        help="peers: the interpreter of an environment with the peers installed "
                             "(default: this one)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    print(f"machine: {_machine()}")
    import tempfile

    tmp = tempfile.mkdtemp(prefix="instrument-bench-")
    if args.which in ("overhead", "all"):
        from benchmarks import overhead

        for mode in ("call-path", "sustained"):
            overhead.run(rounds=3 if smoke else 21, calls=50 if smoke else 3000, mode=mode)
    if args.which in ("breakdown", "all"):
        from benchmarks import breakdown

        breakdown.run(rounds=3 if smoke else 15, calls=50 if smoke else 2000)
    if args.which in ("ingest", "all"):
        from benchmarks import ingest

        urls = {"SQLite file": f"sqlite:///{tmp}/ingest.db"}
        if not args.no_postgres:
            urls["PostgreSQL"] = _fresh_pg_db(args.pg_admin_url, "instrument_bench_ingest")
        try:
            ingest.run(urls, n=60 if smoke else 20000,
                       batches=(1, 10, 50) if smoke else (1, 10, 100, 500, 1000),
                       naive_n=20 if smoke else 1000)
        finally:
            if not args.no_postgres:
                _drop_pg_db(args.pg_admin_url, "instrument_bench_ingest")
    if args.which in ("isolation", "all"):
        from benchmarks import isolation

        isolation.run(calls=200 if smoke else 20000)
    if args.which in ("memory", "all"):
        from benchmarks import memory

        memory.run(calls=2000 if smoke else 1_000_000)
    if args.which in ("scaling", "all") and not args.no_postgres:
        from benchmarks import scaling

        url = _fresh_pg_db(args.pg_admin_url, "instrument_bench_scaling")
        try:
            scaling.run(url, sizes=(100, 1000) if smoke else (1_000, 10_000, 100_000, 1_000_000),
                        batch=20 if smoke else 500, agents=(1, 5) if smoke else (1, 10, 100))
        finally:
            _drop_pg_db(args.pg_admin_url, "instrument_bench_scaling")
    if args.which in ("e2e", "all"):
        from benchmarks import e2e

        e2e.run(rounds=1 if smoke else 5, calls=200 if smoke else 20000, python=args.python)
    if args.which in ("peers", "all"):
        from benchmarks import peers

        peers.run(rounds=2 if smoke else 15, calls=20 if smoke else 2000, python=args.python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
