"""The durable spool: undelivered records on local disk, per-process append-only segments.

Layout of a spool directory (one directory per store; see :func:`resolve_spool_dir`)::

    <owner>.lock            flock()ed for the owner's lifetime; free lock = dead owner
    <owner>.<seq>.seg       JSON lines: {"schema_version": N, "record": {...}}
    <owner>.<seq>.ack       byte offset up to which the segment is acknowledged
    quarantine.jsonl        records the store refused, with their error

``<owner>`` is ``<pid>-<random>``: every process (and every forked child) writes its own
segments, so appends never interleave across processes. A process that finds an owner whose lock
it can take (the owner died: ``kill -9``, ``os._exit``, a crash) *adopts* it: it holds that lock
while it replays the segments from their acknowledged offsets, so two processes never replay the
same record. Only the window between a store commit and its acknowledgement can deliver a record
twice (crash in between); the store's idempotency by execution_id absorbs that one.

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
the segment of a process that died keeps its tail, which readers skip.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson as _orjson
from pydantic import BaseModel

from instrument.record import SCHEMA_VERSION, ExecutionRecord
from instrument.stores import mask_url

if TYPE_CHECKING:
    from instrument.config import Settings

__all__ = [
    "Entry",
    "Orphan",
    "QuarantinedRecord",
    "SegmentWriter",
    "backlog",
    "encode",
    "find_orphans",
    "quarantined",
    "resolve_spool_dir",
    "spool_usage",
]

_log = logging.getLogger(__name__)

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
QUARANTINE_FILE = "quarantine.jsonl"
_SEG_RE = re.compile(r"^(?P<owner>\d+-[0-9a-f]+)\.(?P<seq>\d+)\.seg$")
_LOCK_RE = re.compile(r"^(?P<owner>\d+-[0-9a-f]+)\.lock$")


def resolve_spool_dir(settings: Settings) -> Path | None:
    """The spool directory for these settings, or ``None`` when the spool is off.

    Explicit ``spool_dir`` (argument or INSTRUMENT_SPOOL_DIR) wins; ``off`` disables it. The
    default is ``<db file>.spool`` next to a SQLite database, and for network stores
    ``~/.cache/logged-execution/spool/<hash of the masked URL>`` (one queue per database, so
    records are never replayed into another database). An in-memory SQLite database has none.
    """
    raw = settings.spool_dir
    if raw is not None:
        if raw.strip().lower() in ("off", "none", "false", "0", "disabled"):
            return None
        return Path(raw).expanduser()
    url = settings.database_url
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path == ":memory:":
            return None
        return Path(path + ".spool")
    if url.startswith("sqlite://"):
        return None
    identity = mask_url(url)
    if url == "supabase" or url.startswith("supabase://"):
        identity += "|" + (settings.supabase_url or "")  # one queue per Supabase project
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path("~/.cache/logged-execution/spool").expanduser() / digest


def _fields(obj: object) -> dict[str, Any]:
    if isinstance(obj, BaseModel):
        return obj.__dict__  # our records: plain fields, already validated
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode(record: ExecutionRecord) -> bytes:
    """One spool line: the record's JSON and its schema version.

    orjson (about 2.5x faster than pydantic's serializer here, and on the call path in the
    default write-through mode) with pydantic as the fallback for anything orjson refuses
    (a huge int, a non-string key); both decode to the same record (tested).
    """
    try:
        return _orjson.dumps({"schema_version": record.schema_version, "record": record},
                             default=_fields, option=_orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        body = record.model_dump_json()
        return b'{"schema_version":%d,"record":%s}\n' % (record.schema_version, body.encode())


@dataclass(slots=True)
class Entry:
    """One spooled record read back (``record`` is ``None`` for an unreadable line)."""

    seq: int
    end: int
    record: ExecutionRecord | None
    raw: str = ""
    error: str = ""


def _decode(seq: int, end: int, line: bytes) -> Entry:
    text = line.decode("utf-8", "replace")
    try:
        obj = json.loads(line)
        version = obj.get("schema_version")
        if version != SCHEMA_VERSION:
            return Entry(seq, end, None, text,
                         f"spooled schema_version {version!r}; this SDK reads {SCHEMA_VERSION}")
        return Entry(seq, end, ExecutionRecord.model_validate(obj["record"]))
    except Exception as exc:  # a torn or corrupted line is quarantined, never fatal
        return Entry(seq, end, None, text, f"unreadable spool entry: {exc}")


def read_entries(path: Path, seq: int, offset: int, limit: int, stop: int | None = None
                 ) -> tuple[list[Entry], int]:
    """Up to `limit` entries from byte `offset` (not past `stop`); returns (entries, new offset).

    A trailing line without a newline is returned as unreadable only when `stop` is ``None``
    (the segment's writer is dead); otherwise it is still being written and is left alone.
    """
    entries: list[Entry] = []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return entries, offset
    with f:
        f.seek(offset)
        pos = offset
        while len(entries) < limit:
            if stop is not None and pos >= stop:
                break
            line = f.readline() if stop is None else f.readline(stop - pos)
            if not line:
                break
            if not line.endswith(b"\n") and stop is not None:
                break
            if stop is None and b"\0" in line:  # the unwritten tail of a dead writer's window
                line = line[:line.index(b"\0")]
                if not line:
                    break
                entries.append(_decode(seq, pos + len(line), line))  # torn by the crash
                pos += len(line)
                break
            pos += len(line)
            entries.append(_decode(seq, pos, line.rstrip(b"\n")))
    return entries, pos


def _count_lines(path: Path, offset: int) -> int:
    """Complete lines in `path` after byte `offset` (a torn line or NUL tail is not one)."""
    n = 0
    with path.open("rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def _read_ack(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_ack(path: Path, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"%020d\n" % offset, 0)
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or ``None`` when someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


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
                lock_fd = _try_lock(directory / f"{owner}.lock")
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
        #: the mapped window of the active segment: file bytes [_base, _limit)
        self._map: mmap.mmap | None = None
        self._base = self._limit = 0
        self._map_ok = mapped
        self._fd: int | None = self._open(0)

    def path(self, seq: int) -> Path:
        return self.directory / f"{self.owner}.{seq:06d}.seg"

    def _open(self, seq: int) -> int:
        return os.open(self.path(seq), os.O_RDWR | os.O_CREAT, 0o600)

    def append(self, line: bytes) -> tuple[int, int]:
        """Write one line; returns (segment seq, end offset). Caller serializes calls."""
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
            self._rotate()
            raise OSError(errno.ENOSPC, f"spool segment {self.path(self.seq - 1)} is full")
        return self.seq, self.size

    def _put(self, data: bytes) -> int:
        """Write `data` at the end of the active segment, through a (new) window of the map
        when one can be had, else with pwrite. Returns the bytes that reached the file (all,
        unless the disk filled up part way); raises OSError when none did."""
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
                self._rotate()
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
        assert self._fd is not None
        self._seal()
        self.sealed[self.seq] = self.size
        self._unsynced.append(self.seq)
        self.seq += 1
        self.size = 0
        self._map_ok = self.mapped
        self._fd = self._open(self.seq)

    def _seal(self) -> None:
        """Unmap the active segment, cut its reserved tail off, and close it."""
        fd, self._fd = self._fd, None
        self._unmap()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.size)
            os.close(fd)

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
            _remove(self.path(seq), self.path(seq).with_suffix(".ack"))
            return
        _write_ack(self.path(seq).with_suffix(".ack"), offset)

    def read(self, seq: int, offset: int, limit: int, stop: int) -> tuple[list[Entry], int]:
        return read_entries(self.path(seq), seq, offset, limit, stop)

    def close(self, *, all_acked: bool) -> None:
        """Stop writing; delete our files when nothing is pending, then release the lock."""
        self._seal()
        if all_acked:
            for seq in [*self.sealed, self.seq]:
                _remove(self.path(seq), self.path(seq).with_suffix(".ack"))
            self.sealed.clear()
            _remove(self.directory / f"{self.owner}.lock")
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only succeeds when no other process uses it
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
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing our copy never releases the parent's flock
        self._fd = self._lock_fd = None


def _remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


class Orphan:
    """The segments of a dead owner, adopted under its lock and replayed in order."""

    def __init__(self, directory: Path, owner: str, lock_fd: int) -> None:
        self.directory = directory
        self.owner = owner
        self._lock_fd: int | None = lock_fd
        self.segments = sorted(
            int(m["seq"]) for p in directory.glob(f"{owner}.*.seg")
            if (m := _SEG_RE.match(p.name)) is not None
        )
        self.offsets = {s: _read_ack(self._path(s).with_suffix(".ack")) for s in self.segments}

    def _path(self, seq: int) -> Path:
        return self.directory / f"{self.owner}.{seq:06d}.seg"

    def pending(self) -> int:
        """Records not yet acknowledged (counts lines; for progress reporting)."""
        n = 0
        for s in self.segments:
            with contextlib.suppress(FileNotFoundError):
                n += _count_lines(self._path(s), self.offsets[s])
        return n

    def next_batch(self, limit: int) -> list[Entry]:
        while self.segments:
            seq = self.segments[0]
            entries, _ = read_entries(self._path(seq), seq, self.offsets[seq], limit)
            if entries:
                return entries
            self.segments.pop(0)
            _remove(self._path(seq), self._path(seq).with_suffix(".ack"))
        return []

    def ack(self, seq: int, offset: int) -> None:
        self.offsets[seq] = offset
        _write_ack(self._path(seq).with_suffix(".ack"), offset)

    @property
    def done(self) -> bool:
        return not self.segments

    def release(self) -> None:
        """Drop the lock; once fully replayed, delete the owner's files first."""
        if self._lock_fd is None:
            return
        if self.done:
            for p in self.directory.glob(f"{self.owner}.*.ack"):
                _remove(p)
            _remove(self.directory / f"{self.owner}.lock")
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
        m = _SEG_RE.match(p.name) or _LOCK_RE.match(p.name)
        if m is not None and m["owner"] != exclude:
            owners.add(m["owner"])
    for owner in sorted(owners):
        fd = _try_lock(directory / f"{owner}.lock")
        if fd is None:
            continue  # alive (or being replayed by someone else)
        yield Orphan(directory, owner, fd)


def spool_usage(directory: Path | None) -> tuple[int, int]:
    """(segment files, bytes on disk) of every owner in the spool directory (an active
    segment counts with its reserved window, at most MAP_WINDOW_BYTES past its data)."""
    if directory is None or not directory.is_dir():
        return 0, 0
    files = size = 0
    for p in directory.glob("*.seg"):
        with contextlib.suppress(FileNotFoundError):
            size += p.stat().st_size
            files += 1
    return files, size


def backlog(settings: Settings) -> int:
    """Records waiting in this configuration's spool (every owner, live or finished)."""
    directory = resolve_spool_dir(settings)
    if directory is None or not directory.is_dir():
        return 0
    n = 0
    for p in directory.glob("*.seg"):
        with contextlib.suppress(FileNotFoundError):
            n += _count_lines(p, _read_ack(p.with_suffix(".ack")))
    return n


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record the store refused (or a spool line that could not be read), with why."""

    execution_id: str | None
    error_type: str
    error: str
    quarantined_at: float
    store: str
    record: dict[str, Any] | None
    raw: str | None = None


def quarantine(directory: Path | None, entry: Entry, error_type: str, error: str,
               store: str) -> None:
    """Append one refused entry to ``quarantine.jsonl`` (or log it when the spool is off)."""
    rec = entry.record
    item = {
        "execution_id": str(rec.execution_id) if rec is not None else None,
        "error_type": error_type,
        "error": error,
        "quarantined_at": time.time(),
        "store": store,
        "record": rec.to_json_dict() if rec is not None else None,
        "raw": entry.raw or None,
    }
    line = json.dumps(item, separators=(",", ":")).encode() + b"\n"
    if directory is None:
        _log.error("quarantined record (spool off, kept only in this log): %s", line.decode())
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / QUARANTINE_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantined(settings: Settings) -> list[QuarantinedRecord]:
    """Every quarantined record of this configuration's spool, oldest first."""
    directory = resolve_spool_dir(settings)
    if directory is None:
        return []
    out: list[QuarantinedRecord] = []
    try:
        lines = (directory / QUARANTINE_FILE).read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        out.append(QuarantinedRecord(
            execution_id=obj.get("execution_id"), error_type=obj.get("error_type", ""),
            error=obj.get("error", ""), quarantined_at=obj.get("quarantined_at", 0.0),
            store=obj.get("store", ""), record=obj.get("record"), raw=obj.get("raw"),
        ))
    return out
