"""The ``instrument`` command: demo, stats, tail, show, doctor, migrate, schema, replay,
prune.

Exit codes scripts can rely on: 0 ok, 1 a problem was found (database unreachable, schema
missing, doctor findings, records left in the spool), 2 usage or configuration error (bad
option, unknown agent, unsupported database URL).

The command needs the ``cli`` extra (click and rich); :func:`main` says so in one line when
they are missing instead of failing with a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from instrument.cli.exits import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE

__all__ = ["EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "cli", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``instrument`` command and return its exit code."""
    try:  # late: click and rich are the optional `cli` extra
        from instrument.cli.app import main as run
    except ImportError as exc:
        package = (exc.name or "").split(".")[0]
        if package in ("click", "rich"):
            sys.stderr.write(f"error: the instrument command needs {package}; pip install -e "
                             "'.[cli]' in your logged-execution checkout (once published: "
                             "pip install 'logged-execution[cli]')\n")
            return EXIT_USAGE
        raise
    return run(argv)


def __getattr__(name: str) -> Any:
    if name == "cli":  # late, as in main()
        from instrument.cli.app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
