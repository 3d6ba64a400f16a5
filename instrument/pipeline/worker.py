"""Submit -> spool -> batch -> store + writers, off the call path. See docs/reliability.md.

``submit`` is O(1) and never does network I/O: it appends the record's JSON line to this
process's spool segment (a copy into its memory map, no system call, no fsync; see
:mod:`instrument.pipeline.segments`) and, while the in-memory queue has room, hands the record
object to the background worker. In deferred spool mode it only hands the record over to the
spooler thread (:mod:`instrument.pipeline.spooler`). When the queue is full the record is only
on disk ("spilled") and the worker reads it back later, so memory stays bounded and nothing
blocks. The worker thread (:mod:`instrument.pipeline.loop`) batches by size and age, writes
each batch through the store in one transaction, then through the custom writers, and
acknowledges it in the spool.

A spool that cannot be written degrades to a bounded in-memory queue and is re-created when
possible (:mod:`instrument.pipeline.recovery`); the worker thread is supervised and never dies
(:mod:`instrument.pipeline.loop`).

Failures: transient ones (StoreUnavailable, anything unknown) are retried with exponential
backoff and jitter behind a circuit breaker (:mod:`instrument.pipeline.retry`); RecordRejected
bisects the batch and quarantines only the refused record(s); SchemaMismatch keeps everything
on disk, says to run ``instrument migrate`` (rate limited) and retries slowly. A process's
leftovers (crash, kill -9, timeout at exit) are adopted by the next process that starts on the
same spool (:mod:`instrument.pipeline.orphans`), or replayed by
:func:`instrument.pipeline.replay`. Applying entries to the store (bisecting, quarantine,
custom writers) lives in :mod:`instrument.pipeline.delivery`; fork handling in
:mod:`instrument.pipeline.forks`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from instrument.pipeline import forks
from instrument.pipeline.base import PipelineStats
from instrument.pipeline.delivery import Deliverer
from instrument.pipeline.forks import ForkSafety
from instrument.pipeline.loop import DeliveryLoop, RateLimitedLog
from instrument.pipeline.orphans import Adopter
from instrument.pipeline.recovery import SPOOL_RETRY_S, SpoolRecovery
from instrument.pipeline.retry import Backoff, CircuitBreaker
from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import encode, spool_usage
from instrument.pipeline.spooler import DEFERRED_SPOOL_INTERVAL_S, DeferredSpooling
from instrument.pricing import Pricer
from instrument.record import ExecutionRecord
from instrument.stores.base import Store
from instrument.writers import Writer

__all__ = ["DeliveryPipeline"]

_log = logging.getLogger(__name__)


class DeliveryPipeline(DeliveryLoop, SpoolRecovery, DeferredSpooling, ForkSafety):
    """The production pipeline: spool, bounded queue, batching worker, retries, quarantine."""

    def __init__(
        self,
        store: Store,
        *,
        writers: Sequence[str],
        custom_writers: Sequence[Writer] = (),
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        queue_size: int = 10_000,
        spool_dir: Path | None = None,
        store_factory: Callable[[], Store] | None = None,
        orphan_scan_s: float = 5.0,
        backoff: Backoff | None = None,
        spool_mode: str = "write-through",
        spool_interval_s: float = DEFERRED_SPOOL_INTERVAL_S,
        spool_retry_s: float = SPOOL_RETRY_S,
        pricer: Pricer | None = None,
    ) -> None:
        """`store_factory` opens a store like `store` (a forked child needs its own; without
        one the child shares the parent's). `spool_dir` ``None``: no spool (memory only).
        `spool_retry_s`: how often a spool that cannot be used is tried again. `pricer`
        prices each record in the worker, before the store sees it (``None``: unpriced)."""
        self.writers = tuple(writers)
        self.pricer = pricer
        self.custom_writers = tuple(custom_writers)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.queue_size = queue_size
        self.spool_dir = spool_dir
        self.orphan_scan_s = orphan_scan_s
        self.spool_mode = spool_mode
        self.spool_interval_s = spool_interval_s
        self.spool_retry_s = spool_retry_s
        self._store_factory = store_factory
        self._backoff = backoff or Backoff()
        self._closed = False
        self._forked = False
        self._init_state(store)
        forks.track(self)

    # -- state (also rebuilt in a forked child) -------------------------------------------
    def _init_state(self, store: Store, *, start: bool = True) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._mem: deque[tuple[int, int, ExecutionRecord]] = deque()
        self._intake = deque()
        self._intake_lock = threading.Lock()
        self._deferred = False
        self._spooler = None
        self._spilling = False
        #: records kept in memory before spilling: `queue_size`, or one batch while the store
        #: is failing (no point holding an outage's backlog in RAM when it is on disk anyway)
        self._mem_limit = self.queue_size
        self._read_pos = (0, 0)
        self._submitted = self._done = self._lost = self._mem_only = 0
        self._inflight = []
        self._dropped = self._dropped_unreported = self._spilled = 0
        self._retries = self._worker_errors = 0
        self._next_spool_check = time.monotonic() + self.spool_retry_s
        self._spool_suspect = False
        self._flushing = 0
        self._cv = threading.Condition()
        self._kick = threading.Event()
        self._probe = threading.Event()
        self._stop = threading.Event()
        self._cleaned = False
        self._loud = RateLimitedLog()
        self._breaker = CircuitBreaker(backoff=self._backoff)
        self._adopter = None
        self._writer = None
        self._deliverer = Deliverer(store, self.writers, self.custom_writers, self.spool_dir,
                                    self.pricer)
        if not start:
            return
        if self.spool_dir is not None:
            try:
                self._writer = SegmentWriter(self.spool_dir)
            except OSError as exc:
                _log.warning("logged-execution: cannot use spool directory %s (%s); records are "
                             "kept in memory only (at most INSTRUMENT_QUEUE_SIZE, drops counted) "
                             "and the directory is tried again every %.0fs", self.spool_dir,
                             exc, self.spool_retry_s)
            else:
                self._adopter = Adopter(self.spool_dir, exclude=self._writer.owner,
                                        scan_s=self.orphan_scan_s)
        self._thread = threading.Thread(target=self._run, name="instrument-pipeline",
                                        daemon=True)
        self._thread.start()
        if self._writer is not None and self.spool_mode == "deferred":
            self._start_spooler()

    # -- call path ------------------------------------------------------------------------
    def submit(self, record: ExecutionRecord) -> None:
        """Spool the record (one append) and queue it for the worker. Never blocks on I/O.

        In deferred spool mode the call path only appends the record to the intake queue (no
        encoding, no lock); the spooler thread spools it on its next pass (every
        ``spool_interval_s``). A full intake (the spooler starved) falls back to spooling on
        the caller's thread.
        """
        if self._forked:
            self._start_in_child()
        if self._deferred and not self._closed and len(self._intake) < self.queue_size:
            self._intake.append(record)
            if self._closed:  # shutdown raced us and may have drained already: never silent
                self._drain_intake()
            return
        self._accept(record)

    def _accept(self, record: ExecutionRecord) -> None:
        """Spool the record (when the spool is on) and queue it in memory, or spill it."""
        try:
            line = encode(record) if self._writer is not None else b""
        except Exception:
            with self._lock:
                self._drop("the record could not be serialized to JSON")
            raise  # the decorator's guard logs it (and raises it in strict mode)
        with self._lock:
            if self._closed:
                self._drop("a record was submitted after shutdown()")
                return
            seq, end = -1, 0
            writer = self._writer  # read under the lock: the worker may replace it
            if writer is not None and line:
                try:
                    seq, end = writer.append(line)
                except OSError:
                    self._spool_write_failed()
            self._enqueue_locked(record, seq, end)

    def _enqueue_locked(self, record: ExecutionRecord, seq: int, end: int) -> None:
        """Queue a record that is at (seq, end) in the spool (seq -1: not spooled)."""
        if seq >= 0 and (self._spilling or len(self._mem) >= self._mem_limit):
            # on disk only: the worker reads it back once it has caught up
            if not self._spilling:
                self._spilling = True
                self._kick.set()
            self._spilled += 1
        elif seq < 0 and len(self._mem) >= self.queue_size:
            self._drop("the in-memory queue is full and the spool is off or failing")
            return
        else:
            self._mem.append((seq, end, record))
            if seq < 0:
                self._mem_only += 1
        self._submitted += 1
        if len(self._mem) == self.batch_size:
            self._kick.set()

    def _drop(self, why: str) -> None:
        self._dropped += 1
        self._dropped_unreported += 1
        self._loud.log(logging.ERROR, "drop", "logged-execution: dropped a record: %s "
                       "(%d dropped so far)", why, self._dropped)

    # -- lifecycle --------------------------------------------------------------------------
    def flush(self, timeout_s: float = 5.0) -> bool:
        """True when every record submitted before this call is in the store (or quarantined)."""
        if self._forked:  # a forked child that has not submitted anything yet
            return True
        deadline = time.monotonic() + max(0.0, timeout_s)
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
                    if left <= 0:
                        break
                    self._cv.wait(min(left, 0.5))
                ok = self._done + self._lost >= target
        finally:
            with self._cv:
                self._flushing -= 1
        dropped, self._dropped_unreported = self._dropped_unreported, 0
        return ok and dropped == 0

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Flush within `timeout_s`, then stop. Undelivered records stay in the spool."""
        if self._closed:
            return True
        if self._forked:
            self._closed = True
            return True
        deadline = time.monotonic() + max(0.0, timeout_s)
        # keep a fifth of the budget to stop the worker and release the spool cleanly; a store
        # that is down is not waited for when the records are safe in the spool (loop.py)
        ok = self._flush_for_exit(max(0.0, timeout_s) * 0.8)
        with self._lock:
            self._closed = True
        self._stop.set()
        self._kick.set()
        self._probe.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._spooler is not None:
            self._spooler.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            self._cleanup()
        else:  # stuck in a store call: what is pending stays in the spool; say so now
            self._report_left_in_spool(self._pending() - self._mem_only)
        return ok

    def _cleanup(self) -> None:
        with self._cv:
            if self._cleaned:
                return
            self._cleaned = True
        # records handed over after shutdown's last drain: spooled records are replayed later;
        # after close they are dropped, which is counted and logged (never silent)
        self._drain_intake()
        pending = self._pending()
        mem_only = min(self._mem_only, pending)
        spooled = pending - mem_only
        if self._writer is not None:
            self._writer.close(all_acked=spooled == 0)
        if mem_only:
            why = ("the spool is off" if self.spool_dir is None else
                   f"they were held in memory only: the spool {self.spool_dir} could not be "
                   "written")
            _log.error("logged-execution: %d records were not delivered and are lost (%s)",
                       mem_only, why)
        if self._adopter is not None:
            self._adopter.release()
        try:
            self._store.close()
        except Exception:  # closing a dead connection may fail; nothing is left to lose
            _log.debug("store close failed", exc_info=True)
        if spooled and self._writer is not None:
            self._report_left_in_spool(spooled)

    def stats(self) -> PipelineStats:
        d = self._deliverer
        _, size = spool_usage(self.spool_dir)
        return PipelineStats(
            queue_depth=len(self._mem) + len(self._intake),
            spool_records=max(0, self._pending() - self._mem_only),
            spool_bytes=size,
            submitted=self._submitted,
            delivered=self._done,
            duplicates=d.duplicates,
            retries=self._retries,
            dropped=self._dropped,
            spilled=self._spilled,
            quarantined=d.quarantined,
            batches=d.batches,
            writer_errors=d.writer_errors,
            last_write_latency_ms=d.latency_ms,
            breaker_state=self._breaker.state,
            orphans_replayed=self._adopter.replayed if self._adopter is not None else 0,
            spool_state=("off" if self.spool_dir is None else
                         "ok" if self._writer is not None else "degraded"),
            memory_only=self._mem_only,
            worker_errors=self._worker_errors,
        )
