"""Exceptions the SDK raises to *its own* callers (configure, CLI, stores), never to a host call."""

from __future__ import annotations

__all__ = [
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
