"""`instrument migrate`, `instrument schema` and `instrument replay`: operating the store."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from instrument.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    CliError,
    console,
    database_url_option,
    first_line,
    missing_objects,
    no_database,
    open_store_for,
    schema_admin,
    settings_for,
    sqlite_file,
    store_call,
    url_flag,
)
from instrument.config import Settings, spool_dir_for
from instrument.pipeline import replay as replay_spool
from instrument.pipeline import requeue_quarantined
from instrument.pipeline.spool import backlog
from instrument.runtime import pricer_for
from instrument.stores import open_store
from instrument.stores.grants import RolesReport
from instrument.stores.migrations import expected_version, migrate_postgres_report

__all__ = ["migrate", "replay", "schema"]


def _migrations() -> Any:
    try:
        return importlib.import_module("instrument.stores.migrations")
    except ImportError as exc:
        raise CliError(f"this installation has no instrument.stores.migrations ({exc}); "
                       "reinstall logged-execution") from None


@click.command()
@database_url_option
@click.option("--supabase/--no-supabase", "supabase", default=None,
              help="PostgreSQL: create Supabase's roles (anon, authenticated, service_role) and "
              "auth schema where missing and keep their grants and policies, or leave none "
              "(plain PostgreSQL). [default: Supabase mode only where the three roles exist]")
@click.option("--grant", "grant", metavar="ROLE", multiple=True,
              help="PostgreSQL: give this application role what the SDK needs (its tables, "
              "sequences, functions and a row-level security policy); remembered and "
              "re-applied by later migrations. Repeatable.")
@click.option("--partition-by-month", "partition", is_flag=True,
              help="PostgreSQL: convert agent_executions and agent_logs to monthly range "
              "partitions (rows kept), so prune drops a month with one statement; later "
              "migrations keep 3 months of partitions ahead. One-way; see docs/cli.md.")
def migrate(database_url: str | None, supabase: bool | None, grant: tuple[str, ...],
            partition: bool = False) -> int:
    """Create the schema, or upgrade it to this SDK's version. Safe to run again.

    On PostgreSQL that is not Supabase, nothing cluster-wide is created: run it as the
    database's owner and give the application's role access with --grant ROLE.
    """
    settings = settings_for(database_url)
    path = sqlite_file(settings.database_url)
    created = path is not None and not path.is_file()
    with open_store_for(settings) as store:
        admin = schema_admin(store)
        if (supabase is not None or grant) and store.dialect != "postgres":
            raise CliError(f"--supabase, --no-supabase and --grant apply to PostgreSQL "
                           f"databases; {store.display_url} is {store.dialect}", EXIT_USAGE)
        if partition and store.dialect != "postgres":
            raise CliError(f"--partition-by-month applies to PostgreSQL databases; "
                           f"{store.display_url} is {store.dialect} (on Supabase, pass the "
                           "project's postgresql:// connection string as --database-url)",
                           EXIT_USAGE)
        before = store_call(store, admin.schema_version)
        # what a hand edit removed from a current schema, to say what migrate repaired
        current = expected_version("sqlite" if store.dialect == "sqlite" else "postgres")
        lacking = (missing_objects(store, settings.database_url) or []
                   if before == current else [])
        report = (store_call(store, lambda: _migrate_postgres(settings.database_url, supabase,
                                                              grant, partition))
                  if store.dialect == "postgres" else None)
        after = report.version if report is not None else store_call(store, admin.migrate)
        still = missing_objects(store, settings.database_url) or []
        url = store.display_url
    out = console()
    repaired = [m for m in lacking if m not in still]
    if created:
        out.print(f"Created {path} with schema v{after}.")
    elif before is None:
        out.print(f"Migrated {url}: no schema -> v{after}.")
    elif before != after:
        out.print(f"Migrated {url}: v{before} -> v{after}.")
    if repaired:
        out.print(f"Repaired {url} (schema v{after}): re-created {', '.join(repaired)}.")
    elif before == after and not partition:
        out.print(f"Schema already at v{after} in {url}, every table, view and function "
                  "present; nothing to do.")
    if report is not None:
        _say_roles(out, report)
    if partition:
        out.print("agent_executions and agent_logs are partitioned by month (started_at, "
                  "created_at), with partitions up to 3 months ahead and a DEFAULT partition; "
                  "run `instrument migrate` monthly to keep them ahead.", markup=False)
    if still:
        raise CliError(f"after migrating, {url} still lacks {', '.join(still)}; check that "
                       "this database role may create tables, views and functions")
    return EXIT_OK


def _migrate_postgres(url: str, supabase: bool | None, grant: Sequence[str],
                      partition: bool = False) -> RolesReport:
    import psycopg  # late: psycopg is the optional `postgres` extra, present for this URL

    with psycopg.connect(url, connect_timeout=10) as conn:
        return migrate_postgres_report(conn, supabase=supabase, grant=grant,
                                       partition_by_month=partition)


def _say_roles(out: Console, report: RolesReport) -> None:
    if report.supabase:
        made = f" (created {', '.join(report.created)})" if report.created else ""
        out.print(f"Supabase mode{made}: anon, authenticated and service_role get the grants "
                  "and row-level security policies of docs/writers-and-schema.md.",
                  markup=False)
    else:
        out.print("Plain PostgreSQL: no Supabase role or auth schema created or kept (pass "
                  "--supabase to create them).", markup=False)
    if report.granted:
        out.print(f"Granted {', '.join(report.granted)} the SDK's tables, sequences and "
                  "functions (applied again by every migrate).", markup=False)


@click.command()
@database_url_option
@click.option("--dialect", type=click.Choice(["postgres", "sqlite"]), default=None,
              help="SQL dialect to print. [default: the dialect of the database URL]")
def schema(database_url: str | None, dialect: str | None) -> int:
    """Print the DDL `instrument migrate` applies (tables, indexes, functions, policies)."""
    if dialect is None:  # the store's own dialect; also rejects an unsupported URL scheme
        with open_store_for(settings_for(database_url)) as store:
            dialect = "sqlite" if store.dialect == "sqlite" else "postgres"
    ddl: Callable[[str], str] = _migrations().ddl
    click.echo(ddl(dialect).rstrip("\n"))
    return EXIT_OK


@click.command()
@database_url_option
@click.option("--quarantined", "requeue", is_flag=True,
              help="Deliver the quarantined records again (after fixing why the store "
                   "refused them).")
def replay(database_url: str | None, requeue: bool) -> int:
    """Deliver the records waiting in the local spool to the store, with a progress bar.

    Exits 0 when the spool is drained, 1 when records are left (the database is unreachable,
    or the store refused some: see `instrument doctor`). With --quarantined, delivers the
    quarantined records again instead; those the store still refuses stay quarantined.
    """
    settings = settings_for(database_url)
    if requeue:
        return _requeue(settings)
    with open_store_for(settings) as store:  # validates the URL scheme before any work
        url = store.display_url
    spool_dir = spool_dir_for(settings.spool_dir, settings.database_url, settings.supabase_url)
    waiting = backlog(spool_dir)
    path = sqlite_file(settings.database_url)
    if path is not None and not path.is_file() and not waiting:
        # nothing to deliver: a typo in the URL must not create an empty database
        raise CliError(no_database(path, url_flag(database_url))
                       + f"; its spool ({spool_dir}) is empty")
    out = console()
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=False) as bar:
        # the records waiting now (spools of running processes included; replay leaves those
        # to them and reports its own total with the first batch)
        task = bar.add_task(f"replaying into {url}", total=waiting)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total if total is not None else waiting)

        # the records obey the content policy already (as in the live pipeline's store)
        store = open_store(settings.database_url, keep_content=True,
                           supabase_url=settings.supabase_url,
                           supabase_key=settings.supabase_key)
        try:
            result = replay_spool(store, spool_dir=spool_dir, writers=settings.writers,
                                  custom_writers=settings.custom_writers,
                                  batch_size=settings.batch_size, progress=progress,
                                  pricer=pricer_for(settings))
        except Exception as exc:  # the spool's and the store's errors: one line, exit 1
            raise CliError(f"replay stopped: {first_line(exc)}; fix it (see `instrument "
                           "doctor`), then run `instrument replay` again") from None
        finally:
            with suppress(Exception):  # closing must not mask the error being reported
                store.close()
    left = result.remaining
    out.print(f"Delivered {result.applied} record(s) to {url}"
              + (f" ({result.duplicates} already there)" if result.duplicates else "")
              + (f"; {result.quarantined} quarantined (see `instrument doctor`)"
                 if result.quarantined else "")
              + (f"; {left} still waiting" if left else "")
              + (f"; left {result.skipped_live} running process(es) to deliver their own"
                 if result.skipped_live else "")
              + ".")
    if left or result.error:
        why = f" ({result.error})" if result.error else ""
        click.echo(f"error: {left} record(s) still in the spool{why}; check the database "
                   "with `instrument doctor`, then run `instrument replay` again", err=True)
        return EXIT_PROBLEM
    return EXIT_OK


def _requeue(settings: Settings) -> int:
    spool_dir = spool_dir_for(settings.spool_dir, settings.database_url, settings.supabase_url)
    store = open_store(settings.database_url, keep_content=True,
                       supabase_url=settings.supabase_url, supabase_key=settings.supabase_key)
    try:
        result = requeue_quarantined(store, spool_dir=spool_dir, writers=settings.writers,
                                     custom_writers=settings.custom_writers,
                                     batch_size=settings.batch_size,
                                     pricer=pricer_for(settings))
    except Exception as exc:  # the quarantine file's and the store's errors: one line, exit 1
        raise CliError(f"requeue stopped: {first_line(exc)}; the quarantine is unchanged "
                       "or put back; fix it (see `instrument doctor`) and run again") from None
    finally:
        with suppress(Exception):  # closing must not mask the error being reported
            store.close()
    console().print(
        f"Delivered {result.applied} quarantined record(s) to {store.display_url}"
        + (f" ({result.duplicates} already there)" if result.duplicates else "")
        + (f"; {result.refused} refused again (see `instrument doctor`)" if result.refused
           else "")
        + (f"; {result.kept} kept in the quarantine" if result.kept else "") + ".")
    if result.error:
        click.echo(f"error: requeue stopped ({result.error}); the rest stays quarantined",
                   err=True)
    return EXIT_PROBLEM if (result.refused or result.error) else EXIT_OK
