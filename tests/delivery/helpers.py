"""Record factories and store-locking helpers shared by the delivery tests."""

from __future__ import annotations

import errno
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from instrument.record import ExecutionRecord, ExecutionResult, TokenUsage

if TYPE_CHECKING:
    from instrument.pipeline import DeliveryPipeline, ReplayReport


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
    from instrument.pipeline.retry import Backoff
    from tests.delivery.faultstore import FileStore

    opts: dict[str, object] = {"batch_size": 100, "flush_interval_s": 0.02,
                               "backoff": Backoff(base_s=0.02, cap_s=0.2)}
    opts.update(kw)
    return DeliveryPipeline(FileStore(db), writers=("executions",), spool_dir=spool,
                            store_factory=lambda: FileStore(db), **opts)  # type: ignore[arg-type]


def replay_spool(url: str, spool: Path | str) -> ReplayReport:
    """Replay `spool` into the store at `url` with the default writers, as `instrument replay`
    does (the store is opened and closed here)."""
    from instrument.pipeline import replay
    from instrument.stores import open_store
    from instrument.writers import BUILTIN_WRITERS

    store = open_store(url, keep_content=True)
    try:
        return replay(store, spool_dir=Path(spool), writers=BUILTIN_WRITERS)
    finally:
        store.close()


def filling_disk(short_at: int, keep: int) -> Callable[[int, bytes, int], int]:
    """An ``os.pwrite`` for a disk that fills up: call number `short_at` writes only its first
    `keep` bytes (a short write), the next call fails with ENOSPC, later calls work again."""
    real_pwrite = os.pwrite
    calls = [0]

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls[0] += 1
        if calls[0] == short_at:
            return real_pwrite(fd, bytes(data[:keep]), offset)
        if calls[0] == short_at + 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    return pwrite
