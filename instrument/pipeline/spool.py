"""The durable spool's on-disk format: undelivered records on local disk, per-process segments.

Layout of a spool directory (one directory per store; see
:func:`instrument.config.spool_dir_for`)::

    <owner>.lock            flock()ed for the owner's lifetime; free lock = dead owner
    <owner>.<seq>.seg       JSON lines: {"schema_version": N, "record": {...}}
    <owner>.<seq>.ack       byte offset up to which the segment is acknowledged
    quarantine.jsonl        records the store refused, with their error

``<owner>`` is ``<pid>-<random>``: every process (and every forked child) writes its own
segments (:mod:`instrument.pipeline.segments`), so appends never interleave across processes. A
process that finds an owner whose lock it can take (the owner died: ``kill -9``, ``os._exit``, a
crash) *adopts* it (:mod:`instrument.pipeline.orphans`): it holds that lock while it replays the
segments from their acknowledged offsets, so two processes never replay the same record. Only
the window between a store commit and its acknowledgement can deliver a record twice (crash in
between); the store's idempotency by execution_id absorbs that one.

This module holds what every side shares: encoding and decoding lines, reading entries back,
the ack files and owner locks, and the spool's size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson as _orjson
from pydantic import BaseModel

from instrument.record import SCHEMA_VERSION, ExecutionRecord

__all__ = [
    "LOCK_RE",
    "SEG_RE",
    "Entry",
    "backlog",
    "count_lines",
    "encode",
    "read_ack",
    "read_entries",
    "read_from",
    "remove_files",
    "segment_path",
    "spool_usage",
    "try_lock",
    "write_ack",
]

SEG_RE = re.compile(r"^(?P<owner>\d+-[0-9a-f]+)\.(?P<seq>\d+)\.seg$")
LOCK_RE = re.compile(r"^(?P<owner>\d+-[0-9a-f]+)\.lock$")


def segment_path(directory: Path, owner: str, seq: int) -> Path:
    """Segment `seq` of `owner` (its ack file is the same path with the suffix ``.ack``)."""
    return directory / f"{owner}.{seq:06d}.seg"


def _fields(obj: object) -> dict[str, Any]:
    if isinstance(obj, BaseModel):
        return obj.__dict__  # our records: plain fields, already validated
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode(record: ExecutionRecord) -> bytes:
    """One spool line: the record's JSON and its schema version.

    orjson (about 2.5x faster than pydantic's serializer here, and on the call path in the
    default write-through mode) with pydantic as the fallback for anything orjson refuses
    (a huge int, a non-string key); both decode to the same record (tested). Text that has no
    UTF-8 form (a lone surrogate in a record built around the decorator's cleaning) is written
    as a JSON escape by the standard library, so the record is kept as it is and the store,
    not the spool, decides about it.
    """
    try:
        return _orjson.dumps({"schema_version": record.schema_version, "record": record},
                             default=_fields, option=_orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        try:
            body = record.model_dump_json().encode()
        except ValueError:  # PydanticSerializationError: text that cannot be UTF-8 encoded
            body = json.dumps(record.model_dump(mode="json"), separators=(",", ":")).encode()
        return b'{"schema_version":%d,"record":%s}\n' % (record.schema_version, body)


@dataclass(slots=True)
class Entry:
    """One spooled record read back (``record`` is ``None`` for an unreadable line).

    ``damaged`` holds the exact bytes of a damaged stretch of a segment (NUL bytes, a zeroed
    page, a torn line) that the reader skipped to resync at the next line; they go to the
    quarantine as they are.
    """

    seq: int
    end: int
    record: ExecutionRecord | None
    raw: str = ""
    error: str = ""
    damaged: bytes | None = None
    #: ``record`` went through the pricer (once per entry, however often it is retried)
    priced: bool = False


#: how every spool line starts (``encode``): where the reader resyncs inside a damaged line
_LINE_START = b'{"schema_version":'


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
        return Entry(seq, end, None, text, f"unreadable spool entry: {exc}", damaged=line)


def _decode_line(seq: int, start: int, data: bytes) -> list[Entry]:
    """The entries of one line: `data` is the segment's bytes [start, start + len(data)).

    A line that does not decode is damage (NUL bytes, a zeroed page, the torn head of a line
    followed by the next one): the last whole record in it, if any, is still read (resync at
    a line start), and the bytes before it are one damaged entry.
    """
    end = start + len(data)
    line = data[:-1] if data.endswith(b"\n") else data
    entry = _decode(seq, end, line)
    if entry.damaged is None:
        return [entry]
    entry.damaged = data  # the bytes as they are on disk
    k = line.find(_LINE_START, 1)
    while k > 0:
        tail = _decode(seq, end, line[k:])
        if tail.record is not None:
            head = _decode(seq, start + k, line[:k].strip(b"\0"))  # a zeroed newline
            if head.record is None:
                head = _decode(seq, start + k, line[:k])
            return [head, tail]
        k = line.find(_LINE_START, k + 1)
    return [entry]


def read_entries(path: Path, seq: int, offset: int, limit: int, stop: int | None = None
                 ) -> tuple[list[Entry], int]:
    """Up to `limit` entries from byte `offset` (not past `stop`); returns (entries, new offset).

    A trailing line without a newline is returned as unreadable only when `stop` is ``None``
    (the segment's writer is dead); otherwise it is still being written and is left alone.
    """
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return [], offset
    with f:
        return read_from(f, seq, offset, limit, stop)


def read_from(f: BinaryIO, seq: int, offset: int, limit: int, stop: int | None = None
              ) -> tuple[list[Entry], int]:
    """:func:`read_entries` from an open segment file.

    Damage never stops the reader: a line that does not decode (NUL bytes in it, a zeroed
    page, a torn line) becomes an unreadable entry carrying its bytes, and reading goes on at
    the next line. Only a dead writer's NUL tail (NUL bytes from some point to the end of the
    file, no newline after them) ends the data.
    """
    entries: list[Entry] = []
    f.seek(offset)
    pos = offset
    while len(entries) < limit:
        if stop is not None and pos >= stop:
            break
        line = f.readline() if stop is None else f.readline(stop - pos)
        if not line:
            break
        if not line.endswith(b"\n"):
            if stop is not None:
                break  # still being written
            nul = line.find(b"\0")
            if nul >= 0 and not line[nul:].strip(b"\0"):
                # the unwritten tail of a dead writer's window; a line torn by the crash
                # may precede it
                if nul:
                    entries += _decode_line(seq, pos, line[:nul])
                    pos += nul
                break
        entries += _decode_line(seq, pos, line)
        pos += len(line)
    return entries, pos


def count_lines(path: Path, offset: int) -> int:
    """Complete lines in `path` after byte `offset` (a torn line or NUL tail is not one)."""
    n = 0
    with path.open("rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def read_ack(path: Path) -> int:
    """The acknowledged offset an ack file holds (0 when there is none)."""
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_ack(path: Path, offset: int) -> None:
    """Record an acknowledged offset (rewritten in place; not fsynced: losing one re-delivers)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"%020d\n" % offset, 0)
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
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


def remove_files(*paths: Path) -> None:
    """Delete `paths`, ignoring those already gone."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


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


def backlog(spool_dir: Path | None) -> int:
    """Records waiting in the spool directory (every owner, live or finished)."""
    if spool_dir is None or not spool_dir.is_dir():
        return 0
    n = 0
    for p in spool_dir.glob("*.seg"):
        with contextlib.suppress(FileNotFoundError):
            n += count_lines(p, read_ack(p.with_suffix(".ack")))
    return n
