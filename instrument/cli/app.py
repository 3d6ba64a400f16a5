"""The command group and :func:`main`, the console script's entry point."""

from __future__ import annotations

from collections.abc import Sequence

import click

from instrument.cli.common import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, CliError, first_line
from instrument.cli.demo import demo
from instrument.cli.doctor import doctor
from instrument.cli.ops import migrate, replay, schema
from instrument.cli.prune import prune
from instrument.cli.query import stats, tail
from instrument.cli.show import show_execution
from instrument.errors import ConfigurationError, InstrumentError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="logged-execution", prog_name="instrument")
def cli() -> None:
    """logged-execution: see what your AI-agent executors did.

    Every command takes --database-url (default: $INSTRUMENT_DATABASE_URL, else the embedded
    sqlite:///instrument.db). Exit codes: 0 ok, 1 problem found, 2 usage or configuration error.
    Start with `instrument demo`.
    """


for _command in (demo, stats, tail, show_execution, doctor, migrate, schema, replay, prune):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``instrument`` command; returns the exit code (the console script exits with it)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="instrument",
                          standalone_mode=False)
    except CliError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ConfigurationError as exc:
        click.echo(f"error: {first_line(exc)}", err=True)
        return EXIT_USAGE
    except InstrumentError as exc:
        click.echo(f"error: {first_line(exc)}", err=True)
        return EXIT_PROBLEM
    return result if isinstance(result, int) else EXIT_OK
