"""The store contracts: a small ingest protocol, and optional admin and query protocols.

:class:`Store` is all the delivery pipeline needs: one transaction per batch, idempotent per
execution_id. Reading and administering a database are separate, optional protocols
(:class:`SchemaAdmin`, :class:`ExecutionQueries`, :class:`AISConfigSource`) that the built-in
stores implement and that commands check for (``isinstance``) before they use them, so a
third-party store only needs what it is used for.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from instrument.record import ExecutionRecord

if TYPE_CHECKING:
    from instrument.ais import AISConfig

__all__ = [
    "AISConfigSource",
    "ApplyResult",
    "ExecutionFilter",
    "ExecutionQueries",
    "SchemaAdmin",
    "Store",
]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one `apply` did: records newly applied, and records skipped as already applied."""

    applied: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    agent_id: str | None = None
    user_id: str | None = None
    status: str | None = None
    engine: str | None = None


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
