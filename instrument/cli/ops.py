"""`instrument migrate`, `instrument schema` and `instrument replay`: operating the store."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from instrument.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    CliError,
    console,
    database_url_option,
    first_line,
    open_store_for,
    settings_for,
    store_call,
)

__all__ = ["migrate", "replay", "schema"]


def _migrations() -> Any:
    try:
        return importlib.import_module("instrument.stores.migrations")
    except ImportError as exc:
        raise CliError(f"this installation has no instrument.stores.migrations ({exc}); "
                       "reinstall logged-execution") from None


@click.command()
@database_url_option
def migrate(database_url: str | None) -> int:
    """Create the schema, or upgrade it to this SDK's version. Safe to run again."""
    settings = settings_for(database_url)
    with open_store_for(settings) as store:
        before = store_call(store, store.schema_version)
        after = store_call(store, store.migrate)
        url = store.display_url
    out = console()
    if before == after:
        out.print(f"Schema already at v{after} in {url}; nothing to do.")
    else:
        was = "no schema" if before is None else f"v{before}"
        out.print(f"Migrated {url}: {was} -> v{after}.")
    return EXIT_OK


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
def replay(database_url: str | None) -> int:
    """Deliver the records waiting in the local spool to the store, with a progress bar.

    Exits 0 when the spool is drained, 1 when records are left (the database is unreachable,
    or the store refused some: see `instrument doctor`).
    """
    settings = settings_for(database_url)
    from instrument.pipeline import worker as pipeline

    run: Callable[..., Any] | None = getattr(pipeline, "replay", None)
    if run is None:
        raise CliError("this installation's instrument.pipeline has no replay(); upgrade "
                       "logged-execution", EXIT_USAGE)
    with open_store_for(settings) as store:  # validates the URL scheme before any work
        url = store.display_url
    out = console()
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task(f"replaying into {url}", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        try:
            result = run(settings, progress)
        except Exception as exc:  # the spool's and the store's errors: one line, exit 1
            raise CliError(f"replay stopped: {first_line(exc)}; fix it (see `instrument "
                           "doctor`), then run `instrument replay` again") from None
    delivered = _field(result, "delivered", "applied")
    dupes = _field(result, "duplicates")
    left = _field(result, "remaining", "left")
    bad = _field(result, "quarantined")
    live = _field(result, "skipped_live")
    out.print(f"Delivered {delivered or 0} record(s) to {url}"
              + (f" ({dupes} already there)" if dupes else "")
              + (f"; {bad} quarantined (see `instrument doctor`)" if bad else "")
              + (f"; {left} still waiting" if left else "")
              + (f"; left {live} running process(es) to deliver their own" if live else "")
              + ".")
    error = getattr(result, "error", None)
    if left or error:
        why = f" ({error})" if error else ""
        click.echo(f"error: {left or 0} record(s) still in the spool{why}; check the database "
                   "with `instrument doctor`, then run `instrument replay` again", err=True)
        return EXIT_PROBLEM
    return EXIT_OK


def _field(result: Any, *names: str) -> int | None:
    for n in names:
        v = result.get(n) if isinstance(result, dict) else getattr(result, n, None)
        if v is not None:
            return int(v)
    if isinstance(result, int) and names[0] in ("delivered", "applied"):
        return result
    return None
