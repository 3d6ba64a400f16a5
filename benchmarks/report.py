"""Printing results: a rich table when rich is installed, plain text otherwise."""

from __future__ import annotations

from collections.abc import Sequence


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for row in [header, *rows]:
            print("  " + " | ".join(row))
        return
    t = Table(title=title)
    for h in header:
        t.add_column(h)
    for row in rows:
        t.add_row(*row)
    Console().print(t)
