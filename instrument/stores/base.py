"""The store contract: one transaction per batch, idempotent per execution_id."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from instrument.record import ExecutionRecord

if TYPE_CHECKING:
    from instrument.ais import AISConfig

__all__ = ["ApplyResult", "ExecutionFilter", "Store"]


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
    """A database the built-in writers target.

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

    def migrate(self) -> int: ...

    def schema_version(self) -> int | None: ...

    def apply(
        self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
    ) -> ApplyResult: ...

    def recent_executions(
        self, limit: int = 20, where: ExecutionFilter | None = None
    ) -> list[dict[str, Any]]: ...

    def agent_stats(self) -> list[dict[str, Any]]: ...

    def intensity_metrics(self, agent_id: str | None = None) -> list[dict[str, Any]]: ...

    def ais_config(self) -> AISConfig:
        """The AIS configuration stored in the database (its ``ais_config`` table)."""
        ...

    def close(self) -> None: ...
