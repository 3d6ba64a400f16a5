"""The store contracts: a small ingest protocol, and optional admin and query protocols.

:class:`Store` is all the delivery pipeline needs: one transaction per batch, idempotent per
execution_id. Reading and administering a database are separate, optional protocols
(:class:`SchemaAdmin`, :class:`ExecutionQueries`, :class:`AISConfigSource`) that the built-in
stores implement and that commands check for (``isinstance``) before they use them, so a
third-party store only needs what it is used for. :class:`BudgetSource` is what budgets read:
committed spend, and atomic reservations of runs in flight.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from uuid import UUID

from instrument.record import ExecutionRecord

if TYPE_CHECKING:
    from instrument.ais import AISConfig

__all__ = [
    "AISConfigSource",
    "ApplyResult",
    "BudgetPer",
    "BudgetSource",
    "ExecutionFilter",
    "ExecutionQueries",
    "Reservation",
    "SchemaAdmin",
    "Spend",
    "Store",
    "budget_column",
]

#: Whose spend a budget counts: a user's, a tenant's or an agent's.
BudgetPer = Literal["user", "tenant", "agent"]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one `apply` did: records newly applied, and records skipped as already applied."""

    applied: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """Which executions a read returns: every field given must match (``None``: any)."""

    agent_id: str | None = None
    user_id: str | None = None
    status: str | None = None
    engine: str | None = None
    tenant_id: str | None = None
    #: The children of this execution (``parent_execution_id``).
    parent_execution_id: str | None = None
    #: Executions whose ``tags`` include this one.
    tag: str | None = None
    #: ``started_at >= since`` and ``started_at < until`` (timezone-aware; naive is UTC).
    since: datetime | None = None
    until: datetime | None = None


_BUDGET_COLUMNS = {"user": "user_id", "tenant": "tenant_id", "agent": "agent_id"}


def budget_column(per: str) -> str:
    """The column a budget `per` counts by; a ValueError naming the choices otherwise."""
    column = _BUDGET_COLUMNS.get(per)
    if column is None:
        raise ValueError(f"budget per={per!r}: use 'user', 'tenant' or 'agent'")
    return column


@dataclass(frozen=True, slots=True)
class Spend:
    """Committed spend of one budget key since a time: exact USD, total tokens, runs.

    Only what landed counts (records the store committed); refused executions spend nothing
    and are not runs; unpriced runs add no USD (their tokens still count).
    """

    usd: Decimal
    tokens: int
    runs: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer of :meth:`BudgetSource.reserve`.

    `allowed`: the committed spend was below every given limit, and the execution is now
    registered as in flight. `spent_usd`/`spent_tokens`: that committed spend. `in_flight`:
    other executions of the key registered in flight (not expired) at that moment.
    """

    allowed: bool
    spent_usd: Decimal
    spent_tokens: int
    in_flight: int


@runtime_checkable
class Store(Protocol):
    """A database the built-in writers target (what the delivery pipeline needs).

    ``apply`` applies, for every record, the built-in writers named in ``record.writers`` (or
    ``default_writers`` when that is ``None``) in **one transaction** for the whole batch, and
    skips records whose execution_id was already applied. It raises
    :class:`~instrument.errors.StoreUnavailable` for transient failures (retry the batch),
    :class:`~instrument.errors.SchemaMismatch` when migrations are missing, and
    :class:`~instrument.errors.RecordRejected` when the batch holds a record the database refuses.
    """

    #: "sqlite" | "postgres" | "supabase"
    dialect: str
    #: The URL with any password masked, for messages.
    display_url: str

    def apply(
        self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
    ) -> ApplyResult: ...

    def close(self) -> None: ...


@runtime_checkable
class SchemaAdmin(Protocol):
    """A store whose schema can be created/upgraded (``instrument migrate``) and inspected."""

    def migrate(self) -> int:
        """Apply the missing migrations; the schema version reached."""
        ...

    def schema_version(self) -> int | None:
        """The applied schema version, or ``None`` when the schema is not there."""
        ...


@runtime_checkable
class ExecutionQueries(Protocol):
    """A store the CLI can read back (``instrument tail``, ``stats``, ``demo``)."""

    def recent_executions(
        self, limit: int = 20, where: ExecutionFilter | None = None
    ) -> list[dict[str, Any]]: ...

    def agent_stats(self) -> list[dict[str, Any]]: ...

    def intensity_metrics(self, agent_id: str | None = None) -> list[dict[str, Any]]: ...


@runtime_checkable
class AISConfigSource(Protocol):
    """A store holding the AIS configuration it scores with (its ``ais_config`` table)."""

    def ais_config(self) -> AISConfig:
        """The AIS configuration stored in the database."""
        ...


@runtime_checkable
class BudgetSource(Protocol):
    """A store that budgets can read: committed spend, and atomic reservations.

    `per` names the key's column (``user`` -> ``user_id``, ``tenant`` -> ``tenant_id``,
    ``agent`` -> ``agent_id``); `since` is timezone-aware (naive is UTC).
    """

    def spend(self, per: BudgetPer, key: str, since: datetime) -> Spend:
        """Committed spend of `key` from executions that started at or after `since`, exact."""
        ...

    def reserve(self, per: BudgetPer, key: str, since: datetime, limit_usd: Decimal | None,
                limit_tokens: int | None, execution_id: UUID, ttl_s: float) -> Reservation:
        """Atomically: read the committed spend since `since`; if it is below both limits
        (``None``: no limit), register `execution_id` as in flight for `ttl_s` seconds (until
        its record lands). Reservations of one key are serialized."""
        ...
