"""What a PostgreSQL error means for a batch, judged by evidence, not by an allow-list.

An error the server raised *while executing our statement* says something in the batch is
wrong, whatever its SQLSTATE class: a value out of range (22003), a constraint (23xxx), an
index row too large for its key (54000), an exception our function raised for this data
(P0001, 42xxx). Such a batch is bisected and the one bad record quarantined (``rejected``).
Only what says nothing about the data keeps the batch for a retry (``unavailable``): no
answer at all (refused, reset, timed out: no SQLSTATE), the connection or the server going
away (08, 57P01/57P02/57P03), a server out of resources (53xxx: too many connections, disk
full), a read-only standby (25006), a statement cancelled by its timeout (57014), lock and
serialization conflicts (40001/40P01, retried at once first; 55P03), internal errors (XX).
The Supabase store applies the same verdicts to the SQLSTATE PostgREST passes on.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["RETRY_STATES", "SCHEMA_STATES", "Verdict", "classify"]

Verdict = Literal[
    "schema", "credentials", "no_database", "privilege", "retry", "unavailable", "rejected"
]

#: The schema is not what we expect: a table, column, function, schema or type is missing.
SCHEMA_STATES = frozenset({"42P01", "42883", "42703", "3F000", "42704"})
#: Conflicts with concurrent transactions: retried at once (a few times), then unavailable.
RETRY_STATES = frozenset({"40001", "40P01"})
#: Classes about the connection or the server, never about the data: connection exception,
#: invalid transaction state (a read-only standby is 25006), invalid statement name (a pooler
#: lost a prepared statement), insufficient resources, operator intervention (shutdown,
#: cancel, statement timeout), system error (I/O), configuration file error, snapshot too
#: old, internal error.
_UNAVAILABLE_CLASSES = ("08", "25", "26", "53", "57", "58", "F0", "72", "XX")
#: Codes of other classes with the same meaning: lock not available, object in use, and
#: "cached plan must not change result type" after a migration (0A000; replanned on retry).
_UNAVAILABLE_STATES = frozenset({"55P03", "55006", "0A000"})


def classify(sqlstate: str | None) -> Verdict:
    """The verdict for an error with `sqlstate` (``None``: the server never answered)."""
    if not sqlstate:
        return "unavailable"
    if sqlstate in SCHEMA_STATES:
        return "schema"
    if sqlstate in ("28P01", "28000"):
        return "credentials"
    if sqlstate == "3D000":
        return "no_database"
    if sqlstate == "42501":
        return "privilege"
    if sqlstate in RETRY_STATES:
        return "retry"
    if sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in _UNAVAILABLE_STATES:
        return "unavailable"
    return "rejected"
