"""Deferred spool mode: the call path only hands records over; a spooler thread spools them.

``submit`` appends the record to a lock-free intake queue (no encoding, no lock); every
``spool_interval_s`` (10 ms by default, plus however long it waits for the interpreter lock; see
docs/reliability.md) the spooler thread encodes what was handed over and appends it to the
spool, then queues it for the worker like a write-through submit would. ``flush()`` and
``shutdown()`` drain the intake themselves, so nothing handed over is ever silently lost.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import encode
from instrument.record import ExecutionRecord

__all__ = ["DEFERRED_SPOOL_INTERVAL_S", "DeferredSpooling"]

_log = logging.getLogger(__name__)

#: deferred spool mode: how often the spooler writes what was handed over (plus however long
#: it waits for the interpreter lock; see docs/reliability.md)
DEFERRED_SPOOL_INTERVAL_S = 0.01


class DeferredSpooling:
    """The spooler side of :class:`~instrument.pipeline.worker.DeliveryPipeline` (a mixin).

    The pipeline owns the state below (built in its ``_init_state``) and the intake steps.
    """

    spool_interval_s: float
    #: records the call path handed over, not spooled yet (appended without a lock; the
    #: spooler thread, or flush(), moves them on in order)
    _intake: deque[ExecutionRecord]
    _intake_lock: threading.Lock  # one drainer at a time
    _lock: threading.Lock  # the submit lock
    _stop: threading.Event
    _closed: bool
    _deferred: bool
    _spooler: threading.Thread | None
    _writer: SegmentWriter | None
    _drop: Callable[[str], None]
    _enqueue_locked: Callable[[ExecutionRecord, int, int], None]
    _spool_write_failed: Callable[[], None]

    def _start_spooler(self) -> None:
        """Switch the call path to deferred mode and start the spooler thread."""
        self._deferred = True
        self._spooler = threading.Thread(target=self._spool_loop, name="instrument-spooler",
                                         daemon=True)
        self._spooler.start()

    def _spool_loop(self) -> None:
        """Move handed-over records to the spool every `spool_interval_s` until stopped."""
        stop = self._stop
        while not stop.wait(self.spool_interval_s):
            if self._intake:
                try:
                    self._drain_intake()
                except Exception:  # never let the spooler die; flush() drains as well
                    _log.exception("logged-execution: the spooler failed; retrying")
        self._drain_intake()

    def _drain_intake(self) -> None:
        """Spool and queue every handed-over record, in submission order.

        Encodes them all first, then appends them with one write per segment: a system call
        releases the interpreter lock, and under CPU-bound callers every re-acquisition can
        wait a whole switch interval, so one write per record would starve this thread.
        """
        if not self._intake:
            return
        with self._intake_lock:
            pop = self._intake.popleft
            records: list[ExecutionRecord] = []
            lines: list[bytes] = []
            bad = 0
            while True:
                try:
                    record = pop()
                except IndexError:
                    break
                try:
                    lines.append(encode(record))
                except Exception:  # counted and logged below; never stops the rest
                    _log.debug("deferred record could not be encoded", exc_info=True)
                    bad += 1
                    continue
                records.append(record)
            with self._lock:
                for _ in range(bad):
                    self._drop("the record could not be serialized to JSON")
                if self._closed:
                    for _ in records:
                        self._drop("a record was submitted after shutdown()")
                    return
                if not records:
                    return
                writer = self._writer  # None while the spool is degraded (recovery.py)
                positions = (writer.append_many(lines) if writer is not None
                             else [(-1, 0)] * len(records))
                if writer is not None and any(seq < 0 for seq, _ in positions):
                    self._spool_write_failed()
                for record, (seq, end) in zip(records, positions, strict=True):
                    self._enqueue_locked(record, seq, end)
