"""Exact decimal arithmetic for SQLite's cost columns (TEXT holding the decimal string).

SQLite has no decimal type: ``sum()`` or ``+`` on the text would go through a 64-bit float and
round. The store registers these functions on its connection, so the ledger's ``cost_usd`` is
added, and budgets' spend summed, in Python's :mod:`decimal` arithmetic, inside SQL statements
(under the write lock, like every other ``x = x + delta``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from instrument.stores.reference.ledger import EXACT as _CONTEXT

__all__ = ["DecimalSum", "decimal_add", "register"]



def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:  # text that is not a number: the row was written by hand
        raise ValueError(f"cost_usd value {value!r} is not a decimal number") from exc


def decimal_add(a: object, b: object) -> str | None:
    """``a + b`` as plain decimal text; NULL when either is NULL (like SQL's ``+``)."""
    if a is None or b is None:
        return None
    return format(_CONTEXT.add(_decimal(a), _decimal(b)), "f")


class DecimalSum:
    """``sum()`` of decimal text, exact; NULL when every value is NULL (like SQL's ``sum``)."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: object) -> None:
        if value is not None:
            d = _decimal(value)
            self.total = d if self.total is None else _CONTEXT.add(self.total, d)

    def finalize(self) -> str | None:
        return None if self.total is None else format(self.total, "f")


def register(conn: sqlite3.Connection) -> None:
    """Make ``instrument_decimal_add(a, b)`` and ``instrument_decimal_sum(x)`` available."""
    conn.create_function("instrument_decimal_add", 2, decimal_add, deterministic=True)
    # typeshed types an aggregate's values as int; this one takes and returns decimal text
    conn.create_aggregate("instrument_decimal_sum", 1, cast("Callable[[], Any]", DecimalSum))
