"""The writer contract.

The five built-in writers (``executions``, ``logs``, ``stats``, ``intensity``,
``usage_ledger``) are applied by the store inside one transaction per batch, so their effects
for a record land together or not at all. A user writer is any object with a ``name`` and a
``write(records)`` method; it runs after the store batch committed, on the pipeline's
background thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from instrument.record import ExecutionRecord

__all__ = ["BUILTIN_WRITERS", "Writer"]

BUILTIN_WRITERS: tuple[str, ...] = ("executions", "logs", "stats", "intensity", "usage_ledger")


@runtime_checkable
class Writer(Protocol):
    """A custom destination for records (a webhook, a queue, another table).

    ``write`` must be idempotent per ``execution_id``: after a crash a batch can be delivered
    again. Raise to have the batch retried.
    """

    name: str

    def write(self, records: Sequence[ExecutionRecord]) -> None: ...
