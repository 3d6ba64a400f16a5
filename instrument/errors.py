"""Exceptions the SDK raises to *its own* callers (configure, CLI, stores), never to a host call."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

__all__ = [
    "BudgetExceeded",
    "ConfigurationError",
    "InstrumentError",
    "RecordRejected",
    "SchemaMismatch",
    "StoreUnavailable",
]


class InstrumentError(Exception):
    """Base class. Every message says what went wrong and what to do about it."""


class ConfigurationError(InstrumentError, ValueError):
    """A setting is invalid (bad URL scheme, unknown writer, weights not summing to 1, ...)."""


class StoreUnavailable(InstrumentError):
    """Transient: the store cannot take the batch right now (no answer, refused, reset, timed
    out, shutting down, out of connections, read-only, locked). The batch is retried later."""


class SchemaMismatch(InstrumentError):
    """Permanent until fixed by an operator: tables missing or at another version.

    The message names the fix (``instrument migrate``). Records wait in the pipeline/spool.
    """


class RecordRejected(InstrumentError):
    """Permanent for a record of the batch: the store raised an error executing it (any
    class: a constraint, a value out of range, an index row too large, an exception raised for
    the data). The pipeline bisects the batch and quarantines the record; `execution_id` is set
    when the batch held that one record."""

    def __init__(self, message: str, *, execution_id: str | None = None) -> None:
        super().__init__(message)
        self.execution_id = execution_id


class BudgetExceeded(InstrumentError):
    """A budget stopped a run before the executor ran (``@logged_execution(budget=...)``).

    The one SDK exception a decorated call raises on purpose: the caller asked for a limit.
    The run is recorded with status ``refused``. `limit` and `spent` are in the budget's unit
    (USD as a ``Decimal``, or tokens as an ``int``); `window` is the budget's window (``"day"``,
    ``"month"`` or a ``timedelta``); `key` is the identity it is counted per (the user id for
    ``per="user"``). `store_down` is True when the spend could not be read and the budget's
    ``on_store_down="deny"`` refused the run (then `spent` is the last spend known, or None).
    """

    def __init__(self, message: str, *, limit: Decimal | int, spent: Decimal | int | None,
                 window: str | timedelta, key: str, per: str = "user",
                 store_down: bool = False) -> None:
        super().__init__(message)
        self.limit = limit
        self.spent = spent
        self.window = window
        self.key = key
        self.per = per
        self.store_down = store_down

    def __reduce__(self) -> tuple[object, ...]:  # picklable across process pools
        return (_rebuild_budget_exceeded, (str(self), self.limit, self.spent, self.window,
                                           self.key, self.per, self.store_down))


def _rebuild_budget_exceeded(message: str, limit: Decimal | int, spent: Decimal | int | None,
                             window: str | timedelta, key: str, per: str,
                             store_down: bool) -> BudgetExceeded:
    return BudgetExceeded(message, limit=limit, spent=spent, window=window, key=key, per=per,
                          store_down=store_down)
