"""A spool that cannot be written: degrade to a bounded in-memory queue, re-create it later.

The worker checks its spool at most every :data:`CHECK_S` (and right after an acknowledgement
could not be written). When its files are gone (the directory removed while the process runs,
the active segment deleted) the pipeline *degrades*: the records that only the spool held are
read back through the writer's still-open descriptors and queued in memory, every pending
record is marked "in memory only", and the writer is closed. While degraded (or when the spool
could not be created at start: read-only, no space, no permission) the worker tries to
re-create it every ``spool_retry_s``; once that works, the records held in memory are written
to the new segment, so a crash from then on loses none of them.

The loss policy while degraded is the spool-off one: at most ``queue_size`` records are held in
memory; more are dropped, each counted (``stats().dropped``), logged (rate limited) and reported
by the next ``flush()`` (``False``). Nothing is reported as "in the spool" that is not:
``stats().spool_records`` counts only pending records that are on disk, ``memory_only`` the
others, and the exit message says which are lost.

A full disk needs no degrading: an append that fails keeps that record in memory only (counted
the same way) and the next append tries the disk again.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from pathlib import Path

from instrument.pipeline.loop import RateLimitedLog
from instrument.pipeline.orphans import Adopter
from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import Entry, encode
from instrument.record import ExecutionRecord

__all__ = ["CHECK_S", "SPOOL_RETRY_S", "SpoolRecovery"]

_log = logging.getLogger(__name__)

#: how often the worker checks that its spool files still exist
CHECK_S = 1.0
#: how often a spool that cannot be used is tried again (default of ``spool_retry_s``)
SPOOL_RETRY_S = 5.0


class SpoolRecovery:
    """The spool-health side of :class:`~instrument.pipeline.worker.DeliveryPipeline` (a
    mixin). The pipeline owns the state below (built in its ``_init_state``)."""

    spool_dir: Path | None
    queue_size: int
    orphan_scan_s: float
    spool_retry_s: float
    _lock: threading.Lock  # the submit lock
    _mem: deque[tuple[int, int, ExecutionRecord]]
    _spilling: bool
    _read_pos: tuple[int, int]
    _writer: SegmentWriter | None
    _adopter: Adopter | None
    _closed: bool
    _submitted: int
    _done: int
    #: records submitted and then lost (the spool removed with records only it held)
    _lost: int
    _dropped: int
    _dropped_unreported: int
    #: pending records held in memory only (not in any spool segment)
    _mem_only: int
    #: this process's batch being delivered (the worker retries it after a failed cycle)
    _inflight: list[Entry]
    _loud: RateLimitedLog
    _next_spool_check: float
    _spool_suspect: bool

    # -- accounting ----------------------------------------------------------------------
    def _pending(self) -> int:
        """Records submitted and neither delivered, quarantined nor lost."""
        return self._submitted - self._done - self._lost

    def _backlog_text(self) -> str:
        pending = self._pending()
        mem_only = min(self._mem_only, pending)
        if not mem_only:
            return f"{pending} records wait in the spool"
        return (f"{pending} records wait ({pending - mem_only} in the spool, {mem_only} in "
                "memory only: lost if the process ends first)")

    def _lose(self, n: int, why: str) -> None:
        """`n` submitted records are gone (caller holds the submit lock): counted as dropped,
        logged, and reported by the next flush()."""
        self._lost += n
        self._dropped += n
        self._dropped_unreported += n
        _log.error("logged-execution: lost %d records: %s (%d dropped so far)", n, why,
                   self._dropped)

    def _spool_write_failed(self) -> None:
        self._loud.log(logging.ERROR, "spool-write", "logged-execution: spool write failed; "
                       "keeping records in memory (at most INSTRUMENT_QUEUE_SIZE; more are "
                       "dropped and counted). Free space in %s", self.spool_dir, exc=True)

    def _ack_failed(self, exc: OSError) -> None:
        """An acknowledgement could not be written: delivery goes on (the records are in the
        store; a lost acknowledgement only re-delivers, which the store ignores)."""
        if exc.errno in (errno.ENOENT, errno.ESTALE):
            self._spool_suspect = True  # the directory may be gone: check it now
        self._loud.log(logging.WARNING, "ack", "logged-execution: cannot acknowledge delivered "
                       "records in the spool %s (%s); delivery goes on", self.spool_dir, exc)

    # -- the worker's check ----------------------------------------------------------------
    def _check_spool(self) -> None:
        """Degrade when the spool's files are gone; re-create a spool that could not be used."""
        now = time.monotonic()
        if now < self._next_spool_check and not self._spool_suspect:
            return
        self._spool_suspect = False
        w = self._writer
        if w is not None:
            self._next_spool_check = now + CHECK_S
            with self._lock:
                gone = w.removed()
                if gone:
                    self._degrade_locked(w)
            if gone:
                w.close(all_acked=False)
                self._next_spool_check = 0.0  # try a new spool right away
        elif self.spool_dir is not None and not self._closed:
            self._next_spool_check = now + self.spool_retry_s
            self._recreate(self.spool_dir)

    def _degrade_locked(self, w: SegmentWriter) -> None:
        """The spool's files are gone: hold every pending record in memory (caller holds the
        submit lock; `w` is still open)."""
        pending = self._pending()
        held = len(self._mem) + len(self._inflight)
        # what only the disk holds starts after the last queued record that is on disk
        start = max(((seq, end) for seq, end, _ in self._mem if seq >= 0),
                    default=self._read_pos)
        rest = w.read_rest(*start) if self._spilling else []
        salvaged = [e.record for e in rest if e.record is not None]
        mem = deque((-1, 0, r) for _, _, r in self._mem)
        room = max(0, self.queue_size - len(mem))
        mem.extend((-1, 0, r) for r in salvaged[:room])
        for e in self._inflight:
            e.seq = -1  # nothing to acknowledge any more
        lost = pending - held - min(room, len(salvaged))
        self._mem = mem
        self._spilling = False
        self._writer = None
        self._mem_only = len(mem) + len(self._inflight)
        _log.error("logged-execution: the spool %s was removed while in use; %d pending "
                   "records are held in memory (not on disk) until it can be re-created",
                   self.spool_dir, self._mem_only)
        if lost > 0:
            self._lose(lost, f"the spool {self.spool_dir} was removed while they were on disk "
                       "only, and could not all be read back or held in memory")

    def _recreate(self, directory: Path) -> None:
        try:
            w = SegmentWriter(directory)
        except OSError as exc:
            self._loud.log(logging.WARNING, "spool-recreate", "logged-execution: the spool "
                           "%s still cannot be used (%s); %s. Fix the directory (space, "
                           "permissions, a read-only mount); it is retried every %.0fs",
                           directory, exc, self._backlog_text(), self.spool_retry_s)
            return
        with self._lock:
            if self._closed:  # shutdown raced us: leave nothing behind
                w.close(all_acked=True)
                return
            written = self._respool_locked(w)
            self._writer = w
            self._read_pos = (0, 0)
        if self._adopter is None:
            self._adopter = Adopter(directory, exclude=w.owner, scan_s=self.orphan_scan_s)
        _log.warning("logged-execution: the spool %s is usable again; %d records held in "
                     "memory were written to it", directory, written)

    def _respool_locked(self, w: SegmentWriter) -> int:
        """Append the pending records held in memory only (the batch in flight first, then
        the queue, in their order) to `w`; returns how many."""
        mem: deque[tuple[int, int, ExecutionRecord]] = deque()
        written = 0
        for e in self._inflight:
            if e.seq < 0 and e.record is not None:
                try:
                    e.seq, e.end = w.append(encode(e.record))
                    written += 1
                except (OSError, TypeError, ValueError):  # stays in memory only
                    pass
        for item in self._mem:
            if item[0] < 0:
                try:
                    item = (*w.append(encode(item[2])), item[2])  # noqa: PLW2901
                    written += 1
                except (OSError, TypeError, ValueError):  # no space, or not encodable: the
                    pass  # record stays in memory only, as before
            mem.append(item)
        self._mem = mem
        self._mem_only -= written
        return written
