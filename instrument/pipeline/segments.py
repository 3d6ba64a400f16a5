"""This process's side of the spool: append-only segments written through a memory map.

Durability: the call path copies the record's line into a shared memory map of the active
segment (no system call, no fsync): the page cache holds it the moment the copy ends, so the record
survives the process being killed at any later instant, exactly as after a ``write(2)``. The
map covers a window of the file that is reserved first with ``posix_fallocate``, so a full disk
fails that reservation (and the line goes through ``pwrite(2)`` instead, which reports the
error) rather than faulting on a write into the map. Why not ``write(2)``: a system call
releases the interpreter lock, and on a busy process every release can hand the lock to a
background thread (the OpenTelemetry span processor's, ours), which cost more than the
whole spool append (docs/performance.md). The background worker ``fsync``s the segment once per
batch before writing it to the store, so after power loss at most the records of the last
batch interval are missing. Acknowledgements are not fsynced (losing one re-delivers, and the
store deduplicates).

While a segment is active its file is longer than its data: the reserved window's unwritten
tail is NUL bytes (no JSON line contains a raw NUL). Sealing a segment truncates it to its data;
the segment of a process that died keeps its tail, which readers skip. The directory layout and
the line format are in :mod:`instrument.pipeline.spool`.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from instrument.pipeline.spool import (
    Entry,
    read_entries,
    read_from,
    remove_files,
    segment_path,
    try_lock,
    write_ack,
)

__all__ = ["MAP_WINDOW_BYTES", "SEGMENT_MAX_BYTES", "SEGMENT_RECYCLE_BYTES", "SegmentWriter"]

#: A segment is sealed and a new one started past this size.
SEGMENT_MAX_BYTES = 32 * 1024 * 1024
#: Once everything is acknowledged, an active segment past this size is replaced by a new one
#: (and deleted), so a healthy process keeps little on disk.
SEGMENT_RECYCLE_BYTES = 4 * 1024 * 1024
#: The active segment is written through a memory map of this much of the file at a time
#: (reserved on disk before it is mapped); past it, the next window is reserved and mapped.
#: Each new window costs three system calls, which release the interpreter lock: a large
#: window makes that rare (once per ~1,000 records) and bounds the mapped memory.
MAP_WINDOW_BYTES = 1024 * 1024
#: Sealed segments with unacknowledged records keep a read descriptor open (up to this many),
#: so their records can still be read back if the directory is removed under us.
SEALED_READERS = 64


class SegmentWriter:
    """This process's side of the spool: appends lines and acknowledges delivered prefixes.

    Not thread safe: the pipeline calls :meth:`append` under its submit lock, and the other
    methods from its worker thread (they touch only sealed state or the ack files).

    Appends copy into a memory map of the active segment (see the module docstring); with
    ``mapped=False``, or where a window cannot be reserved or mapped (a full disk, a file size
    limit, a file system without ``fallocate``), they go through ``pwrite(2)`` until the next
    segment, and an error there is raised to the caller as before.
    """

    def __init__(self, directory: Path, *, mapped: bool = True) -> None:
        self.directory = directory
        for _ in range(8):
            owner = f"{os.getpid()}-{secrets.token_hex(4)}"
            try:
                directory.mkdir(parents=True, exist_ok=True)
                lock_fd = try_lock(directory / f"{owner}.lock")
            except FileNotFoundError:  # another process removed the empty directory just now
                continue
            if lock_fd is not None:
                break
        else:  # pragma: no cover - eight random collisions in a row
            raise RuntimeError(f"cannot create a spool owner lock in {directory}")
        self.owner = owner
        self._lock_fd: int | None = lock_fd
        self.mapped = mapped
        self.seq = 0
        self.size = 0
        #: sizes of sealed segments that still hold unacknowledged records
        self.sealed: dict[int, int] = {}
        #: sealed segments not fsynced yet (the worker does it; the call path never fsyncs)
        self._unsynced: list[int] = []
        #: read descriptors of sealed, unacknowledged segments (at most SEALED_READERS)
        self._readers: dict[int, int] = {}
        #: the mapped window of the active segment: file bytes [_base, _limit)
        self._map: mmap.mmap | None = None
        self._base = self._limit = 0
        self._map_ok = mapped
        self._fd: int | None = self._open(0)

    def path(self, seq: int) -> Path:
        return segment_path(self.directory, self.owner, seq)

    def _open(self, seq: int) -> int:
        return os.open(self.path(seq), os.O_RDWR | os.O_CREAT, 0o600)

    def append(self, line: bytes) -> tuple[int, int]:
        """Write one line; returns (segment seq, end offset). Caller serializes calls."""
        if self._fd is None:  # a new segment could not be created last time: try again
            self._fd = self._open(self.seq)
        n = len(line)
        if self.size and self.size + n > SEGMENT_MAX_BYTES:
            self._rotate()
        pos = self.size
        end = pos + n
        m = self._map
        if m is not None and end <= self._limit:  # the call path: one memory copy
            m[pos - self._base:end - self._base] = line
            self.size = end
            return self.seq, end
        if self._put(line) < n:
            # disk full or similar: seal this segment at its real size (a torn tail is skipped
            # by the reader) and start a fresh one, so later offsets stay exact
            with contextlib.suppress(OSError):  # no fresh one yet: the next append retries
                self._rotate()
            raise OSError(errno.ENOSPC, f"spool segment {self.path(self.seq - 1)} is full")
        return self.seq, self.size

    def _put(self, data: bytes) -> int:
        """Write `data` at the end of the active segment, through a (new) window of the map
        when one can be had, else with pwrite. Returns the bytes that reached the file (all,
        unless the disk filled up part way); raises OSError when none did."""
        if self._fd is None:
            self._fd = self._open(self.seq)
        pos = self.size
        end = pos + len(data)
        if self._map_ok and (end > self._limit or self._map is None) and self._remap(end):
            assert self._map is not None
            self._map[pos - self._base:end - self._base] = data
            self.size = end
            return len(data)
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.pwrite(fd, view[written:], pos + written)
        except OSError:
            if not written:
                raise
        self.size += written
        return written

    def _remap(self, end: int) -> bool:
        """Map a window of the active segment from the current end through `end` (at least
        MAP_WINDOW_BYTES), reserving its disk space first. False: no map; use pwrite."""
        fd = self._fd
        assert fd is not None
        self._unmap()
        base = self.size - self.size % mmap.ALLOCATIONGRANULARITY
        length = max(MAP_WINDOW_BYTES, end - base)
        try:
            # no posix_fallocate (macOS): mapping without a reservation could fault on a full
            # disk, so such systems write with pwrite
            reserve = os.posix_fallocate  # AttributeError where the OS has none
            reserve(fd, base, length)
            self._map = mmap.mmap(fd, length, offset=base)
        except (OSError, ValueError, AttributeError):
            # no space, a file size limit, or no fallocate here: this segment is written with
            # pwrite, which reports errors instead of faulting (the next segment tries again)
            self._map_ok = False
            self._map = None
            return False
        self._base, self._limit = base, base + length
        return True

    def _unmap(self) -> None:
        m, self._map = self._map, None
        self._base = self._limit = 0
        if m is not None:
            m.close()

    def append_many(self, lines: list[bytes]) -> list[tuple[int, int]]:
        """Write `lines` in order with one copy per segment; (seq, end) for each line, or
        (-1, 0) for a line that could not be written. Caller serializes calls."""
        out: list[tuple[int, int]] = []
        i, n = 0, len(lines)
        while i < n:
            if self.size and self.size + len(lines[i]) > SEGMENT_MAX_BYTES:
                try:
                    self._rotate()
                except OSError:  # no next segment: the rest stays unwritten (kept in memory)
                    return out + [(-1, 0)] * (n - i)
            j, size = i + 1, self.size + len(lines[i])  # at least one line per segment
            while j < n and size + len(lines[j]) <= SEGMENT_MAX_BYTES:
                size += len(lines[j])
                j += 1
            start = self.size
            try:
                written = self._put(b"".join(lines[i:j]))
            except OSError:
                written = 0
            k, pos = i, start
            while k < j and pos + len(lines[k]) <= start + written:
                pos += len(lines[k])
                out.append((self.seq, pos))
                k += 1
            if k < j:  # the write failed part way: seal at the real size (the torn tail is
                # skipped by readers) and give the rest one more try each, as single appends
                with contextlib.suppress(OSError):  # no next segment: append retries it
                    self._rotate()
                for line in lines[k:]:
                    try:
                        out.append(self.append(line))
                    except OSError:
                        out.append((-1, 0))
                return out
            i = j
        return out

    def _rotate(self) -> None:
        """Seal the active segment and start the next one. When the next one cannot be
        created (no space, the directory removed) this raises OSError and the next append
        tries again."""
        fd = self._seal(keep=len(self._readers) < SEALED_READERS)
        if fd is not None:
            self._readers[self.seq] = fd
        self.sealed[self.seq] = self.size
        self._unsynced.append(self.seq)
        self.seq += 1
        self.size = 0
        self._map_ok = self.mapped
        self._fd = self._open(self.seq)

    def _seal(self, *, keep: bool = False) -> int | None:
        """Unmap the active segment and cut its reserved tail off; close it, or return its
        descriptor when `keep` (to read it back later)."""
        fd, self._fd = self._fd, None
        self._unmap()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.size)
            if keep:
                return fd
            os.close(fd)
        return None

    def recycle(self) -> tuple[int, int] | None:
        """Seal a large, fully acknowledged active segment; caller holds the submit lock and
        then acknowledges the returned (seq, size), which deletes it."""
        if self.size < SEGMENT_RECYCLE_BYTES:
            return None
        seq, size = self.seq, self.size
        self._rotate()
        return seq, size

    def sync(self) -> None:
        """fsync what was appended so far (the worker calls it once per batch). On Linux an
        fsync also writes the pages dirtied through the memory map."""
        while self._unsynced:
            seq = self._unsynced.pop()
            with contextlib.suppress(OSError):
                sfd = os.open(self.path(seq), os.O_RDONLY)
                try:
                    os.fsync(sfd)
                finally:
                    os.close(sfd)
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)

    def ack(self, seq: int, offset: int) -> None:
        """Everything in segment `seq` before `offset` is delivered (or quarantined)."""
        sealed = self.sealed.get(seq)
        if sealed is not None and offset >= sealed:
            del self.sealed[seq]
            self._close_reader(seq)
            remove_files(self.path(seq), self.path(seq).with_suffix(".ack"))
            return
        write_ack(self.path(seq).with_suffix(".ack"), offset)

    def _close_reader(self, seq: int) -> None:
        fd = self._readers.pop(seq, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def reader(self, seq: int) -> BinaryIO | None:
        """An open file on segment `seq` through this writer's own descriptor (it still reads
        after the file was deleted), or ``None``. Call it where the writer cannot rotate
        concurrently (under the submit lock); the caller closes the file."""
        fd = self._fd if seq == self.seq else self._readers.get(seq)
        if fd is None:
            return None
        return os.fdopen(os.dup(fd), "rb")

    def read(self, seq: int, offset: int, limit: int, stop: int,
             f: BinaryIO | None = None) -> tuple[list[Entry], int]:
        """Entries of segment `seq` in [offset, stop): through `f` (see :meth:`reader`) when
        given, else by path."""
        if f is None:
            return read_entries(self.path(seq), seq, offset, limit, stop)
        with f:
            return read_from(f, seq, offset, limit, stop)

    def read_rest(self, seq: int, offset: int) -> list[Entry]:
        """Every entry from (seq, offset) to the end of the active segment, through this
        writer's descriptors where it has them. Caller holds the submit lock."""
        out: list[Entry] = []
        for s in range(seq, self.seq + 1):
            stop = self.size if s == self.seq else self.sealed.get(s, 0)
            start = offset if s == seq else 0
            if start < stop:
                out += self.read(s, start, 1 << 62, stop, self.reader(s))[0]
        return out

    def removed(self) -> bool:
        """True when this writer's files are gone (its directory removed, or its active
        segment or lock file deleted). Caller holds the submit lock."""
        try:
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                return True
            return not (self.directory / f"{self.owner}.lock").exists()
        except OSError:
            return True

    def close(self, *, all_acked: bool) -> None:
        """Stop writing; delete our files when nothing is pending, then release the lock."""
        self._seal()
        if all_acked:
            with contextlib.suppress(OSError):  # read-only or removed: nothing to clean
                for seq in [*self.sealed, self.seq]:
                    remove_files(self.path(seq), self.path(seq).with_suffix(".ack"))
                remove_files(self.directory / f"{self.owner}.lock")
                self.directory.rmdir()  # only succeeds when no other process uses it
            self.sealed.clear()
        for seq in list(self._readers):
            self._close_reader(seq)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def abandon_after_fork(self) -> None:
        """In a forked child: drop the parent's descriptors and map without touching its
        lock or files (the parent keeps writing them)."""
        m, self._map = self._map, None
        if m is not None:
            with contextlib.suppress(OSError, ValueError):
                m.close()  # unmaps the child's copy only
        for fd in (self._fd, self._lock_fd, *self._readers.values()):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing our copy never releases the parent's flock
        self._fd = self._lock_fd = None
        self._readers.clear()
