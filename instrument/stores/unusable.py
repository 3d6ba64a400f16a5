"""A store for a database URL that cannot be used: every batch fails with what to fix.

A bad ``INSTRUMENT_DATABASE_URL`` found by the first decorated call must neither raise into the
host nor drop records: the runtime builds its pipeline on an :class:`UnusableStore`, so the
records go to the spool like during an outage, and the reason is said in one line (the
pipeline's exit line quotes the error) until the URL is fixed and the spool replayed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from instrument.errors import ConfigurationError
from instrument.record import ExecutionRecord
from instrument.stores.base import ApplyResult
from instrument.urls import mask_url

__all__ = ["UnusableStore"]


class UnusableStore:
    """Implements :class:`~instrument.stores.Store`; ``apply`` always raises the
    :class:`~instrument.errors.ConfigurationError` it was built with."""

    dialect = "none"

    def __init__(self, url: str, problem: str) -> None:
        self.display_url = mask_url(url)
        self.problem = problem

    def apply(self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
              ) -> ApplyResult:
        raise ConfigurationError(
            f"{self.problem}; once it is fixed, `INSTRUMENT_SPOOL_DIR=<this spool> instrument "
            "replay` delivers these records")

    def close(self) -> None:
        return None
