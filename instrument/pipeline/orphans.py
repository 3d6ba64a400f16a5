"""Finished processes' spooled records: adopted under their owner's lock and replayed in order.

An owner whose lock file nobody holds is gone (crash, ``kill -9``, timeout at exit). Taking its
lock *adopts* it: exactly one process (a live pipeline's worker, through :class:`Adopter`, or
:func:`instrument.pipeline.replay`) replays its segments from their acknowledged offsets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from instrument.pipeline.spool import (
    LOCK_RE,
    SEG_RE,
    Entry,
    count_lines,
    read_ack,
    read_entries,
    remove_files,
    segment_path,
    try_lock,
    write_ack,
)

__all__ = ["Adopter", "Orphan", "find_orphans"]

_log = logging.getLogger(__name__)


class Orphan:
    """The segments of a dead owner, adopted under its lock and replayed in order."""

    def __init__(self, directory: Path, owner: str, lock_fd: int) -> None:
        self.directory = directory
        self.owner = owner
        self._lock_fd: int | None = lock_fd
        self.segments = sorted(
            int(m["seq"]) for p in directory.glob(f"{owner}.*.seg")
            if (m := SEG_RE.match(p.name)) is not None
        )
        self.offsets = {s: read_ack(self._path(s).with_suffix(".ack")) for s in self.segments}
        self._ack_failed = False

    def _path(self, seq: int) -> Path:
        return segment_path(self.directory, self.owner, seq)

    def pending(self) -> int:
        """Records not yet acknowledged (counts lines; for progress reporting)."""
        n = 0
        for s in self.segments:
            with contextlib.suppress(FileNotFoundError):
                n += count_lines(self._path(s), self.offsets[s])
        return n

    def next_batch(self, limit: int) -> list[Entry]:
        while self.segments:
            seq = self.segments[0]
            entries, _ = read_entries(self._path(seq), seq, self.offsets[seq], limit)
            if entries:
                return entries
            self.segments.pop(0)
            with contextlib.suppress(OSError):  # read-only: a later replay finds it empty
                remove_files(self._path(seq), self._path(seq).with_suffix(".ack"))
        return []

    def ack(self, seq: int, offset: int) -> None:
        """Entries of segment `seq` before `offset` are delivered (or quarantined).

        The offset is kept in memory first: an ack file that cannot be written (a full disk)
        only means these records are delivered again, which the store ignores, if this
        replay stops before the segment is done (then its files are deleted)."""
        self.offsets[seq] = offset
        try:
            write_ack(self._path(seq).with_suffix(".ack"), offset)
        except OSError as exc:
            if not self._ack_failed:
                self._ack_failed = True
                _log.warning("logged-execution: cannot write the acknowledgement %s (%s); "
                             "delivery goes on, and records delivered since the last "
                             "acknowledgement are re-sent (and ignored by the store) if this "
                             "replay stops early. Free space in the spool directory.",
                             self._path(seq).with_suffix(".ack"), exc)

    @property
    def done(self) -> bool:
        return not self.segments

    def release(self) -> None:
        """Drop the lock; once fully replayed, delete the owner's files first."""
        if self._lock_fd is None:
            return
        if self.done:
            with contextlib.suppress(OSError):  # read-only: only empty leftovers remain
                for p in self.directory.glob(f"{self.owner}.*.ack"):
                    remove_files(p)
                remove_files(self.directory / f"{self.owner}.lock")
        os.close(self._lock_fd)
        self._lock_fd = None

    def abandon_after_fork(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def find_orphans(directory: Path, *, exclude: str | None = None) -> Iterator[Orphan]:
    """Adopt, one at a time, every owner in `directory` whose process is gone.

    The caller must :meth:`Orphan.release` each one it receives (also when it stops early).
    """
    if not directory.is_dir():
        return
    owners: set[str] = set()
    for p in directory.iterdir():
        m = SEG_RE.match(p.name) or LOCK_RE.match(p.name)
        if m is not None and m["owner"] != exclude:
            owners.add(m["owner"])
    for owner in sorted(owners):
        fd = try_lock(directory / f"{owner}.lock")
        if fd is None:
            continue  # alive (or being replayed by someone else)
        yield Orphan(directory, owner, fd)


class Adopter:
    """A live pipeline's adoption of finished owners in its spool directory, one at a time.

    Used from the worker thread only: it looks for a finished owner at most every `scan_s`
    (and right after finishing one), and hands out its records batch by batch.
    """

    def __init__(self, directory: Path, *, exclude: str, scan_s: float) -> None:
        self.directory = directory
        self.exclude = exclude
        self.scan_s = scan_s
        #: records of adopted owners delivered (or quarantined) so far
        self.replayed = 0
        self._orphan: Orphan | None = None
        self._next_scan = 0.0

    def next_batch(self, limit: int) -> list[Entry]:
        """The adopted owner's next records; ``[]`` when there is none right now."""
        if self._orphan is None:
            now = time.monotonic()
            if now < self._next_scan:
                return []
            self._next_scan = now + self.scan_s
            self._orphan = next(find_orphans(self.directory, exclude=self.exclude), None)
            if self._orphan is None:
                return []
            _log.info("logged-execution: replaying spooled records of a finished process (%s)",
                      self._orphan.owner)
        try:
            entries = self._orphan.next_batch(limit)
        except OSError:  # an unreadable segment: let go, try again at the next scan
            self.release()
            raise
        if not entries:  # replayed to the end: look for the next one right away
            self._orphan.release()
            self._orphan = None
            self._next_scan = 0.0
        return entries

    def ack(self, entries: list[Entry]) -> None:
        """`entries` (the last batch handed out) are delivered or quarantined."""
        assert self._orphan is not None
        last = entries[-1]
        self._orphan.ack(last.seq, last.end)
        self.replayed += len(entries)

    def release(self) -> None:
        """Let go of the owner being replayed (its unacknowledged rest stays for the next)."""
        if self._orphan is not None:
            self._orphan.release()
            self._orphan = None

    def abandon_after_fork(self) -> None:
        """In a forked child: drop the copy of the parent's lock without releasing it."""
        if self._orphan is not None:
            self._orphan.abandon_after_fork()
