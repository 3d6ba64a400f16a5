"""PostgreSQL errors as the pipeline needs them, judged by evidence (see
:mod:`instrument.stores.sqlstate`), each naming the statement and what to do, never its SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from instrument.errors import RecordRejected, SchemaMismatch, StoreUnavailable
from instrument.record import ExecutionRecord
from instrument.stores.sqlstate import classify

__all__ = ["FIX_URL", "MIGRATE", "brief", "first_line", "single", "translate"]

FIX_URL = "INSTRUMENT_DATABASE_URL (or configure(database_url=...) / --database-url)"
MIGRATE = (
    "run `instrument migrate` against this database (INSTRUMENT_DATABASE_URL or --database-url)"
)
#: Longest server message kept in an error (the first line; never the SQL of its CONTEXT).
_MESSAGE_CHARS = 300


def translate(
    exc: BaseException, statement: str, records: Sequence[ExecutionRecord], *, host: str,
    display_url: str, dbname: str,
) -> StoreUnavailable | SchemaMismatch | RecordRejected:
    """The error for `exc`, raised by `statement` (a name such as
    ``instrument_ingest(batch of 500)``) while applying `records` (empty for other work)."""
    state = getattr(exc, "sqlstate", None)
    text = brief(exc)
    low = text.lower()
    verdict = classify(state)
    if verdict == "schema":
        return SchemaMismatch(
            f"PostgreSQL database {display_url}: {statement} failed ({text}): the "
            f"logged-execution schema is missing or incomplete; {MIGRATE}"
        )
    if verdict == "rejected" and records:
        return RecordRejected(
            f"PostgreSQL rejected a record of {statement} ({text}); the batch is split "
            "until the record is found and quarantined with this error",
            execution_id=single(records),
        )
    if verdict == "rejected":
        return StoreUnavailable(f"PostgreSQL rejected {statement} on {display_url} "
                                f"({text})")
    if verdict == "credentials" or "password authentication failed" in low or (
        "role" in low and "does not exist" in low
    ):
        return StoreUnavailable(
            f"PostgreSQL at {host} rejected the credentials of {display_url} "
            f"({text}); fix the user/password in {FIX_URL}"
        )
    if verdict == "no_database" or ("database" in low and "does not exist" in low):
        return StoreUnavailable(
            f"database {dbname!r} does not exist on PostgreSQL at {host}; "
            f"create it (createdb {dbname}) or fix the database name in {FIX_URL}"
        )
    if verdict == "privilege":
        return StoreUnavailable(
            f"the PostgreSQL user of {display_url} lacks a privilege for {statement} "
            f"({text}); connect as the schema owner or service_role via {FIX_URL}"
        )
    hint = (
        f"is PostgreSQL running at {host}? Check host and port in {FIX_URL}"
        if state is None and ("refused" in low or "timeout" in low or "could not" in low)
        else "the batch will be retried"
    )
    return StoreUnavailable(
        f"PostgreSQL at {host} is unavailable: {statement} failed ({text}); {hint}"
    )


def single(records: Sequence[ExecutionRecord]) -> str | None:
    return str(records[0].execution_id) if len(records) == 1 else None


def first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "..."


def brief(exc: BaseException) -> str:
    """``SQLSTATE: primary message (detail)``, bounded: never the SQL of the error's CONTEXT."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = " ".join(primary.split()) if primary else first_line(exc)
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    if detail:
        text += f" ({' '.join(detail.split())})"
    if len(text) > _MESSAGE_CHARS:
        text = text[:_MESSAGE_CHARS] + "..."
    state = getattr(exc, "sqlstate", None)
    return f"{state}: {text}" if state else text
