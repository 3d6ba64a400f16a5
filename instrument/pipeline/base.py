"""What the decorator hands records to: the :class:`Pipeline` protocol, its health figures,
and the pipeline that discards everything."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from instrument.record import ExecutionRecord

__all__ = ["NullPipeline", "Pipeline", "PipelineStats"]


@runtime_checkable
class Pipeline(Protocol):
    """Where the decorator hands records. Implementations must never block `submit`."""

    def submit(self, record: ExecutionRecord) -> None: ...

    def flush(self, timeout_s: float = 5.0) -> bool: ...

    def shutdown(self, timeout_s: float = 5.0) -> bool: ...


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """Delivery health, for logs and the OTel instruments of the tracing module."""

    queue_depth: int
    spool_records: int
    spool_bytes: int
    submitted: int
    delivered: int
    duplicates: int
    retries: int
    dropped: int
    spilled: int
    quarantined: int
    batches: int
    writer_errors: int
    last_write_latency_ms: float | None
    breaker_state: str
    orphans_replayed: int
    #: ``ok``; ``degraded`` (the spool cannot be written: pending records are held in memory
    #: and it is re-created when possible); ``off`` (no spool)
    spool_state: str = "ok"
    #: pending records held in memory only (not in the spool: lost if the process ends)
    memory_only: int = 0
    #: delivery cycles that failed with an unexpected error and were retried
    worker_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NullPipeline:
    """Discards records (INSTRUMENT_DISABLED)."""

    def submit(self, record: ExecutionRecord) -> None:
        return None

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        return True

    def stats(self) -> PipelineStats:
        return PipelineStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, "closed", 0, "off")
