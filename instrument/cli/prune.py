"""`instrument prune --older-than 30d`: retention for the per-execution rows.

Deletes ``agent_executions`` rows that started, and ``agent_logs`` rows created, before the
cutoff, in bounded batches (:mod:`instrument.stores.prune`); the aggregates and the usage
ledger are left as they are. ``--dry-run`` counts what would go.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from instrument.cli.common import (
    EXIT_OK,
    console,
    database_url_option,
    reading,
    settings_for,
    store_call,
    url_flag,
)
from instrument.cli.when import Age
from instrument.stores.prune import prune as prune_store

__all__ = ["prune"]


@click.command()
@database_url_option
@click.option("--older-than", "age", type=Age(), required=True, metavar="AGE",
              help="Delete executions that started, and log rows created, longer ago than "
              "this: 30d, 12h, 2w.")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000),
              help="Rows deleted per transaction.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def prune(database_url: str | None, age: timedelta, batch_size: int, dry_run: bool) -> int:
    """Delete old executions and logs in bounded batches; aggregates stay untouched.

    agent_stats, agent_intensity_metrics and usage_ledger keep every run they counted, and the
    idempotency ledger stays (a late replay of an old record changes nothing).
    """
    settings = settings_for(database_url)
    cutoff = datetime.now(UTC) - age
    out = console()
    with reading(settings, url_flag(database_url)) as store:
        def progress(table: str, done: int) -> None:
            if out.is_terminal:
                out.print(f"  {table}: {done:,} deleted", markup=False)

        report = store_call(store, lambda: prune_store(store, cutoff, batch_size=batch_size,
                                                       dry_run=dry_run, progress=progress))
        url = store.display_url
    executions = report.deleted["agent_executions"]
    logs = report.deleted["agent_logs"]
    when = f"{cutoff:%Y-%m-%d %H:%M:%S} UTC"
    if dry_run:
        out.print(f"Would delete {executions:,} execution(s) started and {logs:,} agent_logs "
                  f"row(s) created before {when} from {url} (dry run: nothing deleted).",
                  markup=False)
        return EXIT_OK
    months = report.months_dropped
    dropped = (f"; dropped the month partition(s) {', '.join(str(m) for m in months)} with one "
               "statement each" if months else "")
    out.print(f"Deleted {executions:,} execution(s) started and {logs:,} agent_logs row(s) "
              f"created before {when} from {url}, in {report.batches} batch(es) of at most "
              f"{batch_size:,}{dropped}; agent_stats, agent_intensity_metrics and usage_ledger "
              "are untouched.", markup=False)
    return EXIT_OK
