"""Submit -> spool -> batch -> store + writers, off the call path. See docs/reliability.md.

``submit`` is O(1) and never does network I/O: it appends the record's JSON line to this
process's spool segment (a copy into its memory map, no system call, no fsync; see
:mod:`instrument.pipeline.spool`) and, while the in-memory queue has room, hands the record
object to the background worker. In deferred spool mode it only appends the
record to a lock-free intake queue that a spooler thread writes to the spool every 10 ms. When
the queue is full the record is only on disk ("spilled") and the worker reads it back later, so
memory stays bounded and nothing blocks. The worker batches by size and age, writes each
batch through the store in one transaction, then through the custom writers, and acknowledges
it in the spool.

Failures: transient ones (StoreUnavailable, anything unknown) are retried with exponential
backoff and jitter behind a circuit breaker; RecordRejected bisects the batch and quarantines
only the refused record(s); SchemaMismatch keeps everything on disk, says to run ``instrument
migrate`` (rate limited) and retries slowly. A process's leftovers (crash, kill -9, timeout at
exit) are replayed by the next process that starts on the same spool, or by :func:`replay`.
Applying entries to the store (bisecting, quarantine, custom writers) and :func:`replay` live
in :mod:`instrument.pipeline.delivery`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from instrument.errors import SchemaMismatch
from instrument.pipeline.delivery import Deliverer, Partial, ReplayReport, replay
from instrument.pipeline.retry import Backoff, CircuitBreaker
from instrument.pipeline.spool import (
    Entry,
    Orphan,
    QuarantinedRecord,
    SegmentWriter,
    encode,
    find_orphans,
    quarantined,
    resolve_spool_dir,
    spool_usage,
)
from instrument.record import ExecutionRecord
from instrument.stores.base import Store
from instrument.writers import Writer

if TYPE_CHECKING:
    from instrument.config import Settings

__all__ = [
    "DeliveryPipeline",
    "NullPipeline",
    "Pipeline",
    "PipelineStats",
    "QuarantinedRecord",
    "ReplayReport",
    "build_pipeline",
    "quarantined",
    "replay",
]

_log = logging.getLogger(__name__)

#: deferred spool mode: how often the spooler writes what was handed over (plus however long
#: it waits for the interpreter lock; see docs/reliability.md)
DEFERRED_SPOOL_INTERVAL_S = 0.01
_SCHEMA_RETRY_S = 30.0
_LOUD_EVERY_S = 60.0


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
        return PipelineStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, "closed", 0)


class _Loud:
    """Rate-limited logging per message key."""

    def __init__(self, every_s: float = _LOUD_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def log(self, level: int, key: str, msg: str, *args: object, exc: bool = False) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.every_s:
            return
        self._last[key] = now
        _log.log(level, msg, *args, exc_info=exc)


class _Stopped(Exception):
    """The pipeline is shutting down while a batch is still undelivered (it stays spooled)."""


#: Objects a forked child inherited (store connections, fds): kept alive, never closed, so the
#: child never tears down its parent's sockets.
_ABANDONED: list[object] = []
_LIVE: weakref.WeakSet[DeliveryPipeline] = weakref.WeakSet()
_FORK_HELD: list[DeliveryPipeline] = []
#: serializes the lazy start of forked children's pipelines (replaced in every child)
_START_LOCK: list[threading.Lock] = [threading.Lock()]


class DeliveryPipeline:
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
    ) -> None:
        self.writers = tuple(writers)
        self.custom_writers = tuple(custom_writers)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.queue_size = queue_size
        self.spool_dir = spool_dir
        self.orphan_scan_s = orphan_scan_s
        self.spool_mode = spool_mode
        self.spool_interval_s = spool_interval_s
        self._store_factory = store_factory
        self._backoff = backoff or Backoff()
        self._closed = False
        #: a forked child's copy, not started yet: the first submit() starts it
        self._forked = False
        self._init_state(store)
        _LIVE.add(self)

    # -- state (also rebuilt in a forked child) -------------------------------------------
    def _init_state(self, store: Store, *, start: bool = True) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._mem: deque[tuple[int, int, ExecutionRecord]] = deque()
        #: deferred spool mode: records the call path handed over, not spooled yet (appended
        #: without a lock; the spooler thread, or flush(), moves them on in order)
        self._intake: deque[ExecutionRecord] = deque()
        self._intake_lock = threading.Lock()  # one drainer at a time
        self._deferred = False
        self._spooler: threading.Thread | None = None
        self._spilling = False
        #: records kept in memory before spilling: `queue_size`, or one batch while the store
        #: is failing (no point holding an outage's backlog in RAM when it is on disk anyway)
        self._mem_limit = self.queue_size
        self._read_pos = (0, 0)
        self._submitted = self._done = 0
        self._dropped = self._dropped_unreported = self._spilled = 0
        self._retries = self._orphans_replayed = 0
        self._flushing = 0
        self._cv = threading.Condition()
        self._kick = threading.Event()
        self._probe = threading.Event()
        self._stop = threading.Event()
        self._cleaned = False
        self._loud = _Loud()
        self._breaker = CircuitBreaker(backoff=self._backoff)
        self._orphan: Orphan | None = None
        self._writer: SegmentWriter | None = None
        self._deliverer = Deliverer(store, self.writers, self.custom_writers, self.spool_dir)
        if not start:
            return
        if self.spool_dir is not None:
            try:
                self._writer = SegmentWriter(self.spool_dir)
            except OSError:
                _log.warning("logged-execution: cannot use spool directory %s; records are kept "
                             "in memory only (bounded, drops counted)", self.spool_dir,
                             exc_info=True)
        self._thread = threading.Thread(target=self._run, name="instrument-pipeline",
                                        daemon=True)
        self._thread.start()
        if self._writer is not None and self.spool_mode == "deferred":
            self._deferred = True
            self._spooler = threading.Thread(target=self._spool_loop, name="instrument-spooler",
                                             daemon=True)
            self._spooler.start()

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
        writer = self._writer
        try:
            line = encode(record) if writer is not None else b""
        except Exception:
            with self._lock:
                self._drop("the record could not be serialized to JSON")
            raise  # the decorator's guard logs it (and raises it in strict mode)
        with self._lock:
            if self._closed:
                self._drop("a record was submitted after shutdown()")
                return
            seq, end = -1, 0
            if writer is not None:
                try:
                    seq, end = writer.append(line)
                except OSError:
                    self._spool_write_failed()
            self._enqueue_locked(record, seq, end)

    def _spool_write_failed(self) -> None:
        self._loud.log(logging.ERROR, "spool-write", "logged-execution: spool write failed; "
                       "keeping records in memory", exc=True)

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
                while self._done < target and self._thread.is_alive():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(min(left, 0.5))
                ok = self._done >= target
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
        # keep a fifth of the budget to stop the worker and release the spool cleanly
        ok = self.flush(max(0.0, timeout_s) * 0.8)
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
        return ok

    def _cleanup(self) -> None:
        with self._cv:
            if self._cleaned:
                return
            self._cleaned = True
        # records handed over after shutdown's last drain: spooled records are replayed later;
        # after close they are dropped, which is counted and logged (never silent)
        self._drain_intake()
        pending = self._submitted - self._done
        if self._writer is not None:
            self._writer.close(all_acked=pending == 0)
        elif pending:
            _log.error("logged-execution: %d records were not delivered and are lost (the "
                       "spool is off)", pending)
        if self._orphan is not None:
            self._orphan.release()
            self._orphan = None
        try:
            self._store.close()
        except Exception:  # closing a dead connection may fail; nothing is left to lose
            _log.debug("store close failed", exc_info=True)
        if pending and self._writer is not None:
            _log.warning("logged-execution: %d records not yet written to %s stay in the spool "
                         "%s and are replayed on the next start (or `instrument replay`)",
                         pending, self._store.display_url, self.spool_dir)

    def stats(self) -> PipelineStats:
        d = self._deliverer
        _, size = spool_usage(self.spool_dir)
        return PipelineStats(
            queue_depth=len(self._mem) + len(self._intake),
            spool_records=self._submitted - self._done if self._writer is not None else 0,
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
            orphans_replayed=self._orphans_replayed,
        )

    # -- deferred spooling -----------------------------------------------------------------
    def _spool_loop(self) -> None:
        """Deferred mode: move handed-over records to the spool every `spool_interval_s`."""
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
        writer = self._writer
        assert writer is not None  # deferred mode needs the spool
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
                positions = writer.append_many(lines)
                if any(seq < 0 for seq, _ in positions):
                    self._spool_write_failed()
                for record, (seq, end) in zip(records, positions, strict=True):
                    self._enqueue_locked(record, seq, end)

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        next_scan = 0.0
        next_log = time.monotonic() + 60.0
        busy = False
        try:
            while True:
                if not busy:  # let a partial batch fill up for one interval (or until kicked)
                    self._kick.wait(self.flush_interval_s)
                    self._kick.clear()
                busy = False
                while batch := self._take():
                    self._deliver(batch, self._ack_own)
                    if not self._more_ready():
                        break
                if self._stop.is_set():
                    break
                if self._writer is not None and self.spool_dir is not None:
                    now = time.monotonic()
                    if self._orphan is None and now >= next_scan:
                        next_scan = now + self.orphan_scan_s
                        self._orphan = next(
                            find_orphans(self.spool_dir, exclude=self._writer.owner), None)
                        if self._orphan is not None:
                            _log.info("logged-execution: replaying spooled records of a finished "
                                      "process (%s)", self._orphan.owner)
                    if self._orphan is not None:
                        entries = self._orphan.next_batch(self.batch_size)
                        if entries:
                            self._deliver(entries, self._ack_orphan)
                            busy = True
                        else:
                            self._orphan.release()
                            self._orphan = None
                            next_scan = 0.0
                if time.monotonic() >= next_log:
                    next_log = time.monotonic() + 60.0
                    self._log_stats()
        except _Stopped:
            pass
        except Exception:  # a bug in the worker must not kill delivery silently
            _log.exception("logged-execution: the delivery worker crashed; records stay spooled")
        finally:
            if self._closed:
                self._cleanup()

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
            # read outside the lock: submitters never wait for our disk reads
            entries, new_off = w.read(seq, off, self.batch_size, stop)
            if not entries and new_off >= off and seq < w.seq:
                self._read_pos = (seq + 1, 0)  # a torn tail of a sealed segment: skip it
                continue
            self._read_pos = (seq, new_off)
            return entries
        return [Entry(s, e, r) for s, e, r in items]

    def _ack_own(self, entries: list[Entry]) -> None:
        ends: dict[int, int] = {}
        n = 0
        for e in entries:
            n += 1
            if e.seq >= 0:
                ends[e.seq] = max(ends.get(e.seq, 0), e.end)
        w = self._writer
        if w is not None:
            for seq, end in ends.items():
                w.ack(seq, end)
        if w is not None and self._done + n == self._submitted:
            # caught up: start a fresh segment instead of growing this one, and delete the
            # old one *before* waking flush(), so a flushed pipeline has nothing stale on disk
            with self._lock:
                sealed = w.recycle() if self._done + n == self._submitted else None
            if sealed is not None:
                w.ack(*sealed)
        with self._cv:  # only this worker thread writes _done
            self._done += n
            self._cv.notify_all()

    def _ack_orphan(self, entries: list[Entry]) -> None:
        assert self._orphan is not None
        last = entries[-1]
        self._orphan.ack(last.seq, last.end)
        self._orphans_replayed += len(entries)

    def _deliver(self, entries: list[Entry], ack: Callable[[list[Entry]], None]) -> None:
        if self._writer is not None:
            self._writer.sync()
        while entries:
            self._wait_for_breaker()
            try:
                self._deliverer.deliver(entries, ack, self._stop)
            except Partial as p:
                entries = entries[p.done:]
                self._retries += 1
                if self._writer is not None:
                    self._mem_limit = min(self.queue_size, self.batch_size)
                if isinstance(p.cause, SchemaMismatch):
                    delay = self._breaker.failure(min_delay_s=_SCHEMA_RETRY_S)
                    self._loud.log(logging.ERROR, "schema", "logged-execution: %s: %s. Run "
                                   "`instrument migrate` against it; %d records wait in the "
                                   "spool %s (next try in %.0fs)", self._store.display_url,
                                   p.cause, self._submitted - self._done, self.spool_dir, delay)
                else:
                    delay = self._breaker.failure()
                    self._loud.log(logging.WARNING, "transient", "logged-execution: writing to "
                                   "%s failed (%s: %s); retrying in %.1fs; %d records wait in "
                                   "the spool", self._store.display_url, type(p.cause).__name__,
                                   p.cause, delay, self._submitted - self._done)
                self._loud.log(logging.INFO, "stats", "logged-execution delivery: %s",
                               self.stats().as_dict())
                continue
            self._breaker.success()
            self._mem_limit = self.queue_size
            return

    def _wait_for_breaker(self) -> None:
        while not self._breaker.allow():
            if self._stop.is_set():
                raise _Stopped
            if self._probe.is_set() and self._flushing:
                self._probe.clear()
                self._breaker.force_probe()
                continue
            wait = self._breaker.wait_s()
            if self._flushing:
                wait = min(wait, 0.5)
            self._probe.wait(wait)
            if self._probe.is_set() and not self._flushing and not self._stop.is_set():
                self._probe.clear()

    # -- fork -------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        """Forget the parent's thread, queue, files and connections; start again lazily.

        Nothing is created here (no files, no thread, no connection): a child that execs right
        away, or never records anything, leaves no trace. The first submit() starts it.
        """
        _ABANDONED.append(self._store)
        for held in (self._writer, self._orphan):
            if held is not None:
                held.abandon_after_fork()
        self._init_state(self._store, start=False)
        if self._closed:
            return
        self._forked = True
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            # multiprocessing children leave through os._exit (no atexit) and clear the
            # finalizer registry after this hook runs; its after-fork callbacks run later
            mp_util.register_after_fork(self, DeliveryPipeline._flush_at_mp_exit)

    def _start_in_child(self) -> None:
        with _START_LOCK[0]:
            if not self._forked:
                return
            store = self._store_factory() if self._store_factory is not None else self._store
            self._init_state(store)
            self._forked = False

    def _flush_at_mp_exit(self) -> None:
        from multiprocessing import util

        util.Finalize(self, self.shutdown, args=(5.0,), exitpriority=50)


def _before_fork() -> None:
    _FORK_HELD[:] = list(_LIVE)
    for p in _FORK_HELD:
        p._lock.acquire()


def _after_fork_in_parent() -> None:
    for p in _FORK_HELD:
        p._lock.release()
    _FORK_HELD.clear()


def _after_fork_in_child() -> None:
    _START_LOCK[0] = threading.Lock()
    held, _FORK_HELD[:] = list(_FORK_HELD), []
    for p in held:
        try:
            p._after_fork_in_child()
        except Exception:  # a child without a pipeline still runs the user's code
            _log.exception("logged-execution: could not restart delivery in a forked child")


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def build_pipeline(settings: Settings, store: Store) -> DeliveryPipeline:
    """The pipeline `runtime.build()` installs for these settings."""
    from instrument.stores import open_store

    return DeliveryPipeline(
        store,
        writers=settings.writers,
        custom_writers=settings.custom_writers,
        batch_size=settings.batch_size,
        flush_interval_s=settings.flush_interval_s,
        queue_size=settings.queue_size,
        spool_dir=resolve_spool_dir(settings),
        spool_mode=settings.spool_mode,
        store_factory=lambda: open_store(settings.database_url, settings),
    )
