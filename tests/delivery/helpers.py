"""Record factories and store-locking helpers shared by the delivery tests."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from instrument.record import ExecutionRecord, ExecutionResult, TokenUsage

if TYPE_CHECKING:
    from instrument.pipeline import DeliveryPipeline


def make_record(agent_id: str = "agent-1", execution_id: uuid.UUID | None = None
                ) -> ExecutionRecord:
    now = datetime.now(UTC)
    return ExecutionRecord(
        execution_id=execution_id or uuid.uuid4(), agent_id=agent_id, user_id="u1",
        engine="mapping", name="run", started_at=now, completed_at=now, duration_ms=1.5,
        result=ExecutionResult(success=True, tokens=TokenUsage(input_tokens=3, output_tokens=4,
                                                               total_tokens=7)),
    )


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite file: every writer sees `database is locked`."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        c.execute("ROLLBACK")
        c.close()


def file_pipeline(db: str, spool: Path | None, **kw: object) -> DeliveryPipeline:
    """A fast-ticking pipeline over the fault-injection SQLite store (executions writer)."""
    from instrument.pipeline import DeliveryPipeline
    from instrument.retry import Backoff
    from tests.delivery.faultstore import FileStore

    opts: dict[str, object] = {"batch_size": 100, "flush_interval_s": 0.02,
                               "backoff": Backoff(base_s=0.02, cap_s=0.2)}
    opts.update(kw)
    return DeliveryPipeline(FileStore(db), writers=("executions",), spool_dir=spool,
                            store_factory=lambda: FileStore(db), **opts)  # type: ignore[arg-type]
