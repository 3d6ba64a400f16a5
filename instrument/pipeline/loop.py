"""The worker thread's side of the delivery pipeline: batch, deliver with retries, acknowledge.

The worker takes this process's records in batches (from memory, or read back from the spool
once the in-memory queue spilled), writes each batch through a
:class:`~instrument.pipeline.delivery.Deliverer` behind the circuit breaker, acknowledges it in
the spool, and in between delivers what finished processes left (their segments, adopted by
:class:`~instrument.pipeline.orphans.Adopter`).

The thread never dies: an exception in a cycle (a full disk while acknowledging, a bug) is
logged (rate limited) and the cycle is retried after a backoff, starting with the batch that was
in flight (whatever of it was delivered is not delivered again by this process).

At exit (:meth:`DeliveryLoop._flush_for_exit`, what ``shutdown()`` waits with) the worker is
not waited for once the store has failed twice in a row while every pending record is in the
spool: they are safe there, and a script with its database down exits at once with one line
saying where they are, instead of retrying until the exit budget runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from instrument.errors import SchemaMismatch
from instrument.pipeline.base import PipelineStats
from instrument.pipeline.delivery import Deliverer, Partial
from instrument.pipeline.orphans import Adopter
from instrument.pipeline.retry import Backoff, BreakerStopped, CircuitBreaker, wait_for_breaker
from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import Entry
from instrument.ratelimit import RateLimiter, held_back
from instrument.record import ExecutionRecord
from instrument.stores.base import Store

__all__ = ["DeliveryLoop", "RateLimitedLog"]

_log = logging.getLogger(__name__)

_SCHEMA_RETRY_S = 30.0
_LOUD_EVERY_S = 60.0
#: consecutive failed attempts at exit after which spooled records are left for the next start
#: (two: one blip retried at once, then the store is taken to be down)
EXIT_FAILURES = 2


class RateLimitedLog:
    """Rate-limited logging per message key."""

    def __init__(self, every_s: float = _LOUD_EVERY_S) -> None:
        self._limiter = RateLimiter(every_s)

    def log(self, level: int, key: str, msg: str, *args: object, exc: bool = False) -> None:
        n = self._limiter.admit(key)
        if n is not None:
            _log.log(level, msg + held_back(n), *args, exc_info=exc)


class DeliveryLoop:
    """The worker thread of :class:`~instrument.pipeline.worker.DeliveryPipeline` (a mixin).

    The pipeline owns the state below (built in its ``_init_state``); the call path fills
    ``_mem`` (or spills to the spool) under ``_lock`` and counts ``_submitted``; this thread
    alone counts ``_done``.
    """

    batch_size: int
    flush_interval_s: float
    queue_size: int
    spool_dir: Path | None
    _store: Store
    _lock: threading.Lock  # the submit lock
    _mem: deque[tuple[int, int, ExecutionRecord]]
    _spilling: bool
    _mem_limit: int
    #: where spilled records are read back from: (segment seq, byte offset)
    _read_pos: tuple[int, int]
    _writer: SegmentWriter | None
    _adopter: Adopter | None
    _submitted: int
    _done: int
    _lost: int
    _mem_only: int
    _inflight: list[Entry]
    _retries: int
    _worker_errors: int
    _backoff: Backoff
    _flushing: int
    _closed: bool
    _cv: threading.Condition
    _kick: threading.Event
    _probe: threading.Event
    _stop: threading.Event
    _loud: RateLimitedLog
    _breaker: CircuitBreaker
    _deliverer: Deliverer
    _cleanup: Callable[[], None]
    _check_spool: Callable[[], None]
    _pending: Callable[[], int]
    _backlog_text: Callable[[], str]
    _ack_failed: Callable[[OSError], None]
    _spool_suspect: bool
    _thread: threading.Thread
    _dropped_unreported: int
    _drain_intake: Callable[[], None]
    stats: Callable[[], PipelineStats]
    #: set by :meth:`_flush_for_exit`: failures are counted, not logged, and reported once
    #: (class defaults: the pipeline's ``_init_state`` does not know them)
    _closing: bool = False
    _exit_failures: int = 0
    #: why the last attempt failed (None after a success), for the line said at exit
    _last_failure: BaseException | None = None
    _left_reported: bool = False

    def _run(self) -> None:
        """The worker: supervised cycles until shutdown; then the pipeline's cleanup."""
        failures = 0
        busy: bool | None = False
        next_log = time.monotonic() + 60.0
        while True:
            try:
                if not busy:  # let a partial batch fill up for one interval (or until kicked)
                    self._kick.wait(self.flush_interval_s)
                    self._kick.clear()
                busy = self._cycle()
                if busy is None:
                    break
                failures = 0
                if time.monotonic() >= next_log:
                    next_log = time.monotonic() + 60.0
                    self._log_stats()
            except BreakerStopped:
                break
            except Exception as exc:  # supervision: nothing may end delivery for good
                failures += 1
                self._worker_errors += 1
                delay = self._backoff.delay(failures)
                self._loud.log(logging.ERROR, "worker", "logged-execution: a delivery cycle "
                               "failed (%s: %s); retrying in %.1fs; %s", type(exc).__name__,
                               exc, delay, self._backlog_text(), exc=True)
                self._kick.wait(delay)  # flush() and shutdown() cut the wait short
                self._kick.clear()
                if self._stop.is_set():
                    break
                busy = True
        if self._closed:
            self._cleanup()

    def _cycle(self) -> bool | None:
        """One pass: this process's ready batches, then one batch of a finished process's.
        Returns whether more is ready right away, or ``None`` once stopped."""
        self._check_spool()
        while batch := (self._inflight or self._take()):
            self._inflight = batch
            self._deliver(list(batch), self._ack_inflight)
            if not self._more_ready():
                break
        if self._stop.is_set():
            return None
        adopter = self._adopter  # finished processes' records, once ours are out
        if adopter is not None and (entries := adopter.next_batch(self.batch_size)):
            self._deliver(entries, adopter.ack)
            return True
        return False

    def _more_ready(self) -> bool:
        """Deliver another batch right away (else wait for the next one to fill)?"""
        return (len(self._mem) >= self.batch_size or self._spilling or self._flushing > 0
                or self._stop.is_set())

    def _log_stats(self) -> None:
        s = self.stats()
        level = logging.INFO if (s.spool_records or s.dropped or s.quarantined) else logging.DEBUG
        _log.log(level, "logged-execution delivery: %s", s.as_dict())

    def _take(self) -> list[Entry]:
        """The next batch of this process's records: from memory, else spilled from disk."""
        while True:
            with self._lock:
                if self._mem:
                    popleft = self._mem.popleft
                    items = [popleft() for _ in range(min(self.batch_size, len(self._mem)))]
                else:
                    items = []
                if items:
                    last = max((i for i in items if i[0] >= 0), default=None,
                               key=lambda i: (i[0], i[1]))
                    if last is not None:
                        self._read_pos = (last[0], last[1])
                    break
                w = self._writer
                if not self._spilling or w is None:
                    return []
                seq, off = self._read_pos
                if seq == w.seq and off >= w.size:
                    self._spilling = False  # caught up: new records go through memory again
                    return []
                stop = w.size if seq == w.seq else w.sealed.get(seq, 0)
                if off >= stop:  # the end of a sealed segment
                    self._read_pos = (seq + 1, 0)
                    continue
                f = w.reader(seq)  # our own descriptor: still reads if the file was deleted
            # read outside the lock: submitters never wait for our disk reads
            entries, new_off = w.read(seq, off, self.batch_size, stop, f)
            if not entries and new_off >= off and seq < w.seq:
                if f is None and not w.path(seq).exists():
                    self._spool_suspect = True  # deleted under us: the spool check counts it
                self._read_pos = (seq + 1, 0)  # a torn tail of a sealed segment: skip it
                continue
            self._read_pos = (seq, new_off)
            return entries
        return [Entry(s, e, r) for s, e, r in items]

    def _ack_inflight(self, entries: list[Entry]) -> None:
        """`entries`, the next part of the batch in flight, are delivered (or quarantined)."""
        self._ack_own(entries)
        del self._inflight[:len(entries)]

    def _ack_own(self, entries: list[Entry]) -> None:
        ends: dict[int, int] = {}
        n = len(entries)
        mem_only = 0
        for e in entries:
            if e.seq >= 0:
                ends[e.seq] = max(ends.get(e.seq, 0), e.end)
            else:
                mem_only += 1
        w = self._writer
        try:
            if w is not None:
                for seq, end in ends.items():
                    w.ack(seq, end)
            if w is not None and self._pending() == n:
                # caught up: start a fresh segment instead of growing this one, and delete the
                # old one *before* waking flush(), so a flushed pipeline has nothing stale on
                # disk
                with self._lock:
                    sealed = w.recycle() if self._pending() == n else None
                if sealed is not None:
                    w.ack(*sealed)
        except OSError as exc:  # the records are in the store: count them delivered anyway
            self._ack_failed(exc)
        if mem_only:
            with self._lock:
                self._mem_only -= mem_only
        with self._cv:  # only this worker thread writes _done
            self._done += n
            self._cv.notify_all()

    def _deliver(self, entries: list[Entry], ack: Callable[[list[Entry]], None]) -> None:
        if self._writer is not None:
            self._writer.sync()
        while entries:
            self._check_spool()  # also during an outage: the spool may vanish meanwhile
            wait_for_breaker(self._breaker, stop=self._stop, probe=self._probe,
                             flushing=self._is_flushing)
            try:
                self._deliverer.deliver(entries, ack, self._stop)
            except Partial as p:
                entries = entries[p.done:]
                self._retries += 1
                if self._writer is not None:
                    self._mem_limit = min(self.queue_size, self.batch_size)
                self._last_failure = p.cause
                if self._closing:  # at exit: counted, reported once in the exit line
                    self._breaker.failure()
                    with self._cv:
                        self._exit_failures += 1
                        self._cv.notify_all()
                    continue
                if isinstance(p.cause, SchemaMismatch):
                    delay = self._breaker.failure(min_delay_s=_SCHEMA_RETRY_S)
                    self._loud.log(logging.ERROR, "schema", "logged-execution: %s: %s. Run "
                                   "`instrument migrate` against it; %s %s (next try in "
                                   "%.0fs)", self._store.display_url, p.cause,
                                   self._backlog_text(), self.spool_dir, delay)
                else:
                    delay = self._breaker.failure()
                    self._loud.log(logging.WARNING, "transient", "logged-execution: writing to "
                                   "%s failed (%s: %s); retrying in %.1fs; %s",
                                   self._store.display_url, type(p.cause).__name__, p.cause,
                                   delay, self._backlog_text())
                self._loud.log(logging.INFO, "stats", "logged-execution delivery: %s",
                               self.stats().as_dict())
                continue
            self._breaker.success()
            self._mem_limit = self.queue_size
            self._exit_failures = 0
            self._last_failure = None
            return

    def _is_flushing(self) -> bool:
        return self._flushing > 0

    # -- exit -------------------------------------------------------------------------------
    def _flush_for_exit(self, timeout_s: float) -> bool:
        """``shutdown()``'s flush: like ``flush()``, but it stops waiting as soon as the store
        has failed :data:`EXIT_FAILURES` times in a row while every pending record is in the
        spool (none held in memory only). A slow store that has not failed is waited for until
        `timeout_s` (leaving its records behind would lose them on a machine that is thrown
        away); records held in memory only are always waited for.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cv:
            self._closing = True
            self._exit_failures = 0
        self._drain_intake()  # deferred mode: what the caller submitted goes to disk now
        with self._lock:
            target = self._submitted
        with self._cv:
            self._flushing += 1
        try:
            self._probe.set()
            self._kick.set()
            with self._cv:
                while self._done + self._lost < target and self._thread.is_alive():
                    left = deadline - time.monotonic()
                    if left <= 0 or (self._exit_failures >= EXIT_FAILURES
                                     and self._mem_only == 0):
                        break
                    self._cv.wait(min(left, 0.5))
                ok = self._done + self._lost >= target
        finally:
            with self._cv:
                self._flushing -= 1
        dropped, self._dropped_unreported = self._dropped_unreported, 0
        return ok and dropped == 0

    def _report_left_in_spool(self, spooled: int) -> None:
        """Say once, in one line, that `spooled` records stay in the spool, where, and why."""
        if self._left_reported or spooled <= 0:
            return
        self._left_reported = True
        cause = self._last_failure
        why = (f"{type(cause).__name__}: {_first_line(cause)}" if cause is not None
               else "the store did not answer in time")
        _log.warning("logged-execution: %d records not yet written to %s stay in the spool %s "
                     "and are written on the next start, or by `instrument replay` (%s)",
                     spooled, self._store.display_url, self.spool_dir, why)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
