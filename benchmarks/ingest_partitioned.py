"""Ingest throughput on PostgreSQL with and without the monthly-partitioned layout.

`python -m benchmarks.ingest_partitioned [--n 20000] [--pg-admin-url URL]`: for each layout, a
fresh database, migrated (and converted with ``migrate --partition-by-month``'s code path), then
records/s with all five built-in writers at batch 500 and 1000 (benchmarks/ingest.py's
``throughput``). Why: partitioning adds a routing step per row and one more index key column;
this says what it costs. Figures are recorded in docs/cli.md.
"""

from __future__ import annotations

import argparse

from benchmarks.__main__ import DEFAULT_PG, _drop_pg_db, _fresh_pg_db, _machine
from benchmarks.common import synthetic_records
from benchmarks.ingest import throughput
from instrument.stores import open_store


def run(admin_url: str, n: int, batches: tuple[int, ...] = (500, 1000)
        ) -> dict[str, dict[int, float]]:
    import psycopg

    from instrument.stores.migrations import migrate_postgres_report

    out: dict[str, dict[int, float]] = {}
    for layout in ("unpartitioned", "partitioned by month"):
        name = "instrument_bench_partitioned"
        url = _fresh_pg_db(admin_url, name)
        try:
            with psycopg.connect(url) as conn:
                migrate_postgres_report(conn, partition_by_month=layout != "unpartitioned")
            store = open_store(url)
            out[layout] = {b: throughput(store, synthetic_records(n, seed=b), b)
                           for b in batches}
            store.close()
        finally:
            _drop_pg_db(admin_url, name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest_partitioned",
                                     description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="records per batch size")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG)
    args = parser.parse_args(argv)
    print(f"machine: {_machine()}; {args.n:,} records per run, all five writers")
    for layout, row in run(args.pg_admin_url, args.n).items():
        print(f"{layout:>22}: " + ", ".join(f"batch {b}: {v:,.0f} records/s"
                                             for b, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
