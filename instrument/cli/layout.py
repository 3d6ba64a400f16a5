"""Tables fitted to the terminal's width, or plain text when the output is piped.

A :class:`Grid` is what a command wants to show: columns, each with a priority and whether its
values may wrap, and rows of cells. :func:`show` draws it

- on a terminal, as a rich table exactly as wide as the terminal allows: long values in wrapping
  columns wrap, and when even the narrowest layout does not fit, the least important columns
  are left out (a line under the table names them). A header is never cut: it wraps at its
  spaces, and a column is never narrower than the longest word of its header;
- anywhere else (a pipe, a file), as plain aligned text: no borders, no colour, no wrapping,
  every column and every value whole, so ``grep``, ``awk`` and ``cut`` see one row per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Cell", "Col", "Grid", "fit", "plain_lines", "show"]

Cell = str | Text

#: Border and padding around each column of a rich table with the default box: one space of
#: padding each side plus one vertical line, and one more line closing the table.
_PER_COLUMN = 3
_EDGE = 1


@dataclass(frozen=True, slots=True)
class Col:
    """One column: its header, alignment, importance, and how narrow its values may wrap."""

    header: str
    right: bool = False
    #: 0 is the most important; at a narrow width the highest numbers are left out first
    priority: int = 0
    #: ``None``: values never wrap (the column is as wide as its widest value); a number: values
    #: may wrap down to that many characters
    wrap: int | None = None


@dataclass
class Grid:
    """A table to show: a title, columns, rows of cells, and lines printed under it."""

    title: str | None
    cols: Sequence[Col]
    rows: list[tuple[Cell, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        if len(cells) != len(self.cols):
            raise ValueError(f"{len(cells)} cells for {len(self.cols)} columns")
        self.rows.append(cells)


def _len(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _natural(grid: Grid, i: int) -> int:
    """The width column `i` takes when nothing has to wrap."""
    return max([cell_len(grid.cols[i].header), *(_len(r[i]) for r in grid.rows)])


def _narrowest(grid: Grid, i: int) -> int:
    """The narrowest width column `i` may take: its widest value, or its wrap width, and never
    less than the longest word of its header."""
    col = grid.cols[i]
    word = max(cell_len(w) for w in col.header.split()) if col.header.split() else 1
    natural = max([0, *(_len(r[i]) for r in grid.rows)])
    values = natural if col.wrap is None else min(col.wrap, natural)
    return max(word, values, 1)


def fit(grid: Grid, width: int) -> tuple[list[int], dict[int, int]]:
    """Which columns fit in `width` terminal cells, and the content width of each.

    Returns the indexes of the dropped columns (least important first) and ``{index: width}``
    for the kept ones. The first column is always kept.
    """
    kept = list(range(len(grid.cols)))
    dropped: list[int] = []
    lows = {i: _narrowest(grid, i) for i in kept}

    def room(cols: Sequence[int]) -> int:
        return width - _PER_COLUMN * len(cols) - _EDGE

    while len(kept) > 1 and sum(lows[i] for i in kept) > room(kept):
        # the least important column; among equals, the rightmost
        worst = max(kept[1:], key=lambda i: (grid.cols[i].priority, i))
        kept.remove(worst)
        dropped.append(worst)
    highs = {i: max(lows[i], _natural(grid, i)) for i in kept}
    avail = room(kept)
    if sum(highs.values()) <= avail:
        return dropped, highs
    # Wrapping columns share what is left: the largest cap every one of them can wrap at.
    lo, hi = 0, max(highs.values())
    while lo < hi:
        cap = (lo + hi + 1) // 2
        if sum(max(lows[i], min(highs[i], cap)) for i in kept) <= avail:
            lo = cap
        else:
            hi = cap - 1
    return dropped, {i: max(lows[i], min(highs[i], lo)) for i in kept}


def _table(grid: Grid, widths: dict[int, int], *, header: bool) -> Table:
    table = Table(title=grid.title if header else None, title_justify="left", padding=(0, 1),
                  show_header=header)
    for i, w in widths.items():
        col = grid.cols[i]
        # "fold" breaks a word longer than the column instead of cutting it with an ellipsis
        table.add_column(col.header, justify="right" if col.right else "left", width=w,
                         overflow="fold")
    for row in grid.rows:
        table.add_row(*(row[i] for i in widths))
    return table


def plain_lines(grid: Grid, *, header: bool = True) -> list[str]:
    """The grid as aligned plain text: title, header, one line per row, then the notes."""
    n = range(len(grid.cols))
    widths = [_natural(grid, i) for i in n]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(widths[i]) if grid.cols[i].right else c.ljust(widths[i])
                 for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    lines = [grid.title] if grid.title and header else []
    if header:
        lines.append(line([c.header for c in grid.cols]))
    lines.extend(line([_plain(c) for c in row]) for row in grid.rows)
    lines.extend(grid.notes)
    return lines


def show(out: Console, grid: Grid, *, header: bool = True) -> None:
    """Print `grid`: fitted to the terminal, or as plain text when `out` is not a terminal.

    ``header=False`` prints the rows only (``tail --follow`` adding to a table on screen).
    """
    if not out.is_terminal:
        for text in plain_lines(grid, header=header):
            out.out(text, highlight=False)  # `out` does no wrapping and no markup
        return
    dropped, widths = fit(grid, out.width)
    out.print(_table(grid, widths, header=header))
    for note in grid.notes:
        out.print(note, markup=False, highlight=False)
    if dropped and header:
        names = ", ".join(grid.cols[i].header for i in sorted(dropped))
        out.print(f"Not shown at {out.width} columns: {names} (widen the terminal; piped "
                  "output has every column).", markup=False, highlight=False)
