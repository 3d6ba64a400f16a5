"""`instrument demo`: the main job, end to end, against the embedded SQLite default."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from contextlib import closing
from typing import Any

import click

from instrument import runtime
from instrument.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    CliError,
    console,
    database_url_option,
    first_line,
    open_store_for,
    queries,
    schema_admin,
    settings_for,
    store_call,
)
from instrument.cli.layout import show
from instrument.cli.render import (
    agents_table,
    ais_table,
    executions_table,
    logs_table,
    stats_rows_table,
)
from instrument.cli.summary import agent_summaries
from instrument.config import Settings
from instrument.demo import run_demo
from instrument.errors import ConfigurationError
from instrument.stores import AISConfigSource, Store

__all__ = ["demo"]


def _logs_rows(store: Store, settings: Settings, ids: Collection[str]) -> list[dict[str, Any]]:
    """The ``agent_logs`` rows of these executions (the Store protocol has no reader for them)."""
    reader = getattr(store, "recent_logs", None)
    if reader is not None:
        rows: list[dict[str, Any]] = reader(len(ids) + 100)
        return [r for r in rows if str(r.get("execution_id")) in ids]
    url = settings.database_url
    marks = ",".join("?" * len(ids))
    sql = f"SELECT * FROM agent_logs WHERE execution_id IN ({marks}) ORDER BY created_at"
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///"):])) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, list(ids))]
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(url, row_factory=dict_row, connect_timeout=5) as conn:
            cur = conn.execute(
                "SELECT * FROM agent_logs WHERE execution_id = ANY(%s::uuid[]) "
                "ORDER BY created_at", (list(ids),))
            return list(cur.fetchall())
    return []


@click.command()
@database_url_option
def demo(database_url: str | None) -> int:
    """Run sample executors of every built-in engine and show what each writer stored.

    The orchestrator and agentkit executors of the origin application (some failing), a plain
    mapping executor, the OpenAI chat/Responses engines and the Agents SDK when installed (with
    recorded model answers: no network), each decorated with @logged_execution. Uses the
    embedded sqlite:///instrument.db unless --database-url or INSTRUMENT_DATABASE_URL says
    otherwise; creates the schema if needed.
    """
    settings = settings_for(database_url)
    if settings.disabled:
        raise CliError("INSTRUMENT_DISABLED is set, so nothing would be recorded; unset it to "
                       "run the demo", 2)
    with open_store_for(settings) as store:
        store_call(store, schema_admin(store).migrate)
    try:
        run = run_demo(settings.database_url, migrate=False)
    except ConfigurationError as exc:
        raise CliError(first_line(exc), 2) from None
    out = console()
    n = len(run.records)
    out.print(f"[bold]instrument demo[/bold]: {n} executions ({run.failures} failed) through "
              f"@logged_execution, engines {', '.join(run.engines)} -> {run.database_url}")
    for engine, why in run.skipped.items():
        out.print(f"  skipped {engine}: {why}")
    for raised in run.raised:
        out.print(f"  raised to the caller (and recorded as failed): {raised}")
    if not run.flushed:
        runtime.shutdown(2.0)
        raise CliError("the records were not written within 30 s; run `instrument doctor` to "
                       "see why (they wait in the spool)")

    ids = {str(r.execution_id) for r in run.records}
    agents = {r.agent_id for r in run.records}
    with open_store_for(settings) as store:
        reader = queries(store)
        executions = [r for r in store_call(store, lambda: reader.recent_executions(n + 100))
                      if str(r.get("id", r.get("execution_id"))) in ids]
        stats_rows = [r for r in store_call(store, reader.agent_stats) if r["agent_id"] in agents]
        intensity = [r for r in store_call(store, lambda: reader.intensity_metrics(None))
                     if r["agent_id"] in agents]
        logs = store_call(store, lambda: _logs_rows(store, settings, ids))
        base = (store_call(store, store.ais_config) if isinstance(store, AISConfigSource)
                else None)
    order = {str(r.execution_id): i for i, r in enumerate(run.records)}
    logs.sort(key=lambda r: order.get(str(r.get("execution_id")), len(order)))
    runtime.shutdown(5.0)

    executions.sort(key=lambda r: str(r.get("started_at")))
    out.print()
    show(out, executions_table(executions, title="Writer `executions` -> agent_executions "
                               "(this run)"))
    show(out, logs_table(logs, title="Writer `logs` -> agent_logs (this run)"))
    show(out, stats_rows_table(stats_rows, title="Writer `stats` -> agent_stats (all runs so far)"))
    summaries = agent_summaries(stats_rows, intensity, base=base)
    show(out, agents_table(summaries, title="Writer `intensity` -> agent_intensity_metrics: "
                           "per-agent stats"))
    show(out, ais_table(summaries))
    out.print("Next: `instrument stats`, `instrument tail --status failed`, "
              "`instrument doctor`.")
    if len(executions) != n:
        click.echo(f"error: {n} records were delivered but {len(executions)} rows were read "
                   "back; run `instrument doctor`", err=True)
        return EXIT_PROBLEM
    return EXIT_OK
