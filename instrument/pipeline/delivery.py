"""Applying spooled entries to a store: pricing, bisecting refused records, custom writers,
replay.

:class:`Deliverer` prices each entry's record once (:class:`~instrument.pricing.Pricer`: this is
the one place where records leave the spool for the stores, so the live worker, adopted
orphans, replay and requeue all price the same way), writes a list of spool entries through the
store (one transaction per chunk), bisects a batch the store refuses until the poison record is
found and quarantined, then runs the custom writers; :func:`replay` delivers what finished
processes left in a spool (`instrument replay`). The live pipeline
(:mod:`instrument.pipeline.worker`) drives a Deliverer from its worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from instrument.errors import RecordRejected, SchemaMismatch
from instrument.pipeline.orphans import Orphan, find_orphans
from instrument.pipeline.quarantine import quarantine
from instrument.pipeline.retry import Backoff
from instrument.pipeline.spool import Entry
from instrument.pricing import Pricer
from instrument.record import ExecutionRecord
from instrument.stores.base import Store
from instrument.stores.lookups import price_rows
from instrument.writers import Writer

__all__ = ["Deliverer", "Partial", "ReplayReport", "replay"]

_log = logging.getLogger(__name__)

#: attempts per custom writer and batch before its failure is logged and skipped
WRITER_ATTEMPTS = 5


class Partial(Exception):
    """A batch failed after its first `done` entries were delivered."""

    def __init__(self, done: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.done = done
        self.cause = cause


class Deliverer:
    """Applies entries to the store with bisection of refused records, then custom writers."""

    def __init__(self, store: Store, writers: Collection[str], custom: Sequence[Writer],
                 spool_dir: Path | None, pricer: Pricer | None = None) -> None:
        """`pricer` ``None``: records keep the cost they carry (none, unless an adapter set
        one)."""
        self.store = store
        self.pricer = pricer
        self.writers = tuple(writers)
        self.custom = tuple(custom)
        self.spool_dir = spool_dir
        self.applied = self.duplicates = self.quarantined = self.batches = 0
        self.writer_errors = 0
        #: damaged spool bytes quarantined (a subset of `quarantined`)
        self.damaged = 0
        self.latency_ms: float | None = None

    def deliver(self, entries: list[Entry], on_done: Callable[[list[Entry]], None],
                stop: threading.Event | None = None) -> None:
        """Deliver all `entries` in order; raises :class:`Partial` on a non-record failure."""
        if self.pricer is not None:
            self._load_prices(self.pricer)
            self._price(entries, self.pricer)
        done = 0
        todo = [(0, len(entries))]
        while todo:
            lo, hi = todo.pop()
            chunk = entries[lo:hi]
            records = [e.record for e in chunk if e.record is not None]
            if records:
                t0 = time.perf_counter()
                try:
                    result = self.store.apply(records, self.writers)
                except RecordRejected as exc:
                    if len(records) > 1:
                        mid = (lo + hi) // 2
                        todo += [(mid, hi), (lo, mid)]
                        continue
                    self._quarantine_or_retry(chunk, exc, done)
                    if self.pricer is not None:  # never in the store: settled all the same
                        self.pricer.settled(records)
                    done = hi
                    on_done(entries[lo:hi])
                    continue
                except BaseException as exc:  # transient or schema: the caller retries
                    raise Partial(done, exc) from exc
                self.latency_ms = (time.perf_counter() - t0) * 1000
                self.batches += 1
                self.applied += result.applied
                self.duplicates += result.duplicates
                if self.pricer is not None:  # committed: a store query from now on sees them
                    self.pricer.settled(records)
                self._custom(records, stop)
            self._quarantine_or_retry([e for e in chunk if e.record is None], None, done)
            done = hi
            on_done(chunk)

    def _load_prices(self, pricer: Pricer) -> None:
        """(Re)read the price table in the user's database when it is due (every few minutes,
        in this worker thread): a failed read keeps the last table and is retried later."""
        now = time.monotonic()
        if not pricer.db_due(now):
            return
        try:
            rows = price_rows(self.store, pricer.db_table or "")
        except Exception as exc:  # a missing table, a dead store: priced without it meanwhile
            pricer.db_failed(exc, now)
            return
        pricer.load_rows(rows, now)

    @staticmethod
    def _price(entries: list[Entry], pricer: Pricer) -> None:
        """Price each record once, before any store or writer sees it: a retried entry keeps
        its priced record (and its listeners are not called again). Never raises."""
        for e in entries:
            if not e.priced and e.record is not None:
                e.record = pricer.apply(e.record)
                e.priced = True

    def _quarantine_or_retry(self, chunk: list[Entry], exc: RecordRejected | None,
                             done: int) -> None:
        """Quarantine `chunk`; a quarantine file that cannot be written (full disk, removed
        directory) fails the batch after its first `done` entries, so it is retried."""
        try:
            self._quarantine(chunk, exc)
        except OSError as err:
            raise Partial(done, err) from err

    def _quarantine(self, chunk: list[Entry], exc: RecordRejected | None) -> None:
        for e in chunk:
            kind = type(exc).__name__ if exc is not None else "UnreadableSpoolEntry"
            why = str(exc) if exc is not None else e.error
            quarantine(self.spool_dir, e, kind, why, self.store.display_url)
            self.quarantined += 1
            if e.damaged is not None:
                self.damaged += 1
            _log.error(
                "logged-execution: quarantined execution %s (%s: %s); the rest of its batch "
                "continues. List them with `instrument doctor` or "
                "instrument.pipeline.quarantined(spool_dir).",
                e.record.execution_id if e.record is not None else "<unreadable>", kind, why,
            )

    def _custom(self, records: list[ExecutionRecord], stop: threading.Event | None) -> None:
        backoff = Backoff(base_s=0.05, cap_s=1.0)
        for w in self.custom:
            mine = [r for r in records if r.writers is None or w.name in r.writers]
            if not mine:
                continue
            for attempt in range(WRITER_ATTEMPTS):
                try:
                    w.write(mine)
                    break
                except Exception:  # a user writer's failure: retried, then logged and skipped
                    _log.warning("writer %r failed (attempt %d of %d)", w.name, attempt + 1,
                                 WRITER_ATTEMPTS, exc_info=True)
                    if stop is not None and stop.wait(backoff.delay(attempt)):
                        break
            else:
                self.writer_errors += 1
                _log.error("writer %r gave up on %d records after %d attempts", w.name,
                           len(mine), WRITER_ATTEMPTS)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What :func:`replay` did."""

    applied: int
    duplicates: int
    quarantined: int
    #: records still on disk (store unreachable, or owned by a live process)
    remaining: int
    processes: int
    skipped_live: int
    error: str | None = None
    #: of `quarantined`: damaged stretches of spool segments (NUL bytes, a zeroed page, a torn
    #: line) kept byte for byte in the quarantine file; reading went on after each
    damaged: int = 0


def replay(
    store: Store,
    *,
    spool_dir: Path | None,
    writers: Collection[str],
    custom_writers: Sequence[Writer] = (),
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
    max_attempts: int = 3,
    pricer: Pricer | None = None,
) -> ReplayReport:
    """Deliver every record finished processes left in `spool_dir` (`instrument replay`).

    Segments of live processes are left to them. Safe to run while other processes replay:
    each finished process's spool is adopted under its lock by exactly one replayer. The
    caller opens and closes `store`; `progress(done, total)` follows each delivered batch.
    Records are priced with `pricer` as the live pipeline would (build it from the settings
    with :func:`instrument.runtime.pricer_for`); ``None`` leaves them unpriced.
    """
    directory = spool_dir
    if directory is None or not directory.is_dir():
        return ReplayReport(0, 0, 0, 0, 0, 0)
    deliverer = Deliverer(store, writers, custom_writers, directory, pricer)
    orphans = list(find_orphans(directory))
    owners = {p.name.split(".", 1)[0] for p in directory.glob("*.seg")}
    skipped = len(owners - {o.owner for o in orphans})
    total = sum(o.pending() for o in orphans)
    done = 0
    error: str | None = None
    backoff = Backoff(base_s=0.2, cap_s=5.0)

    def ack_for(o: Orphan) -> Callable[[list[Entry]], None]:
        def ack(entries: list[Entry]) -> None:
            nonlocal done
            o.ack(entries[-1].seq, entries[-1].end)
            done += len(entries)
            if progress is not None:
                progress(done, total)
        return ack

    try:
        for o in orphans:
            attempts = 0
            while (entries := o.next_batch(batch_size)) and error is None:
                try:
                    deliverer.deliver(entries, ack_for(o))
                    attempts = 0
                except Partial as p:
                    attempts += 1
                    if attempts >= max_attempts or isinstance(p.cause, SchemaMismatch):
                        error = f"{type(p.cause).__name__}: {p.cause}"
                    else:
                        time.sleep(backoff.delay(attempts))
            if error is not None:
                break
    finally:
        for o in orphans:
            o.release()
    # what is really left on disk (damage can make the line count read at the start differ
    # from the entries read)
    remaining = sum(o.pending() for o in orphans if not o.done)
    return ReplayReport(deliverer.applied, deliverer.duplicates, deliverer.quarantined,
                        remaining, len(orphans), skipped, error, deliverer.damaged)
