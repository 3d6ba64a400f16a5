"""The spool's memory-mapped appends: no system call per record, the same files and offsets as
the pwrite path once sealed, a dead writer's NUL tail skipped, and a full disk still reported."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instrument.pipeline import segments as segments_mod
from instrument.pipeline import spool as spool_mod
from instrument.pipeline.orphans import find_orphans
from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import read_entries
from tests.delivery.helpers import filling_disk, make_record

ROOT = Path(__file__).resolve().parents[2]


def _lines(n: int) -> list[bytes]:
    return [spool_mod.encode(make_record()) for _ in range(n)]


def _no_syscalls(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> int:
        raise AssertionError("the call path made a system call")

    for name in ("write", "pwrite", "posix_fallocate", "ftruncate", "fsync"):
        monkeypatch.setattr(segments_mod.os, name, refuse)


def test_appends_within_a_window_make_no_system_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = SegmentWriter(tmp_path / "s")
    lines = _lines(50)
    w.append(lines[0])  # reserves and maps the first window
    with monkeypatch.context() as m:
        _no_syscalls(m)
        positions = [w.append(line) for line in lines[1:]]
    assert positions[-1] == (0, sum(map(len, lines)))
    entries, _ = w.read(0, 0, 100, w.size)
    assert [e.record for e in entries] == [spool_mod._decode(0, 0, x[:-1]).record for x in lines]
    w.close(all_acked=False)


def test_mapped_and_pwrite_segments_are_byte_identical_once_sealed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments_mod, "SEGMENT_MAX_BYTES", 20_000)
    monkeypatch.setattr(segments_mod, "MAP_WINDOW_BYTES", 4096)  # many windows per segment
    lines = _lines(200)
    mapped, plain = SegmentWriter(tmp_path / "m"), SegmentWriter(tmp_path / "p", mapped=False)
    got = [mapped.append(x) for x in lines]
    assert got == [plain.append(x) for x in lines]
    assert len({seq for seq, _ in got}) > 5
    live = mapped.seq
    assert mapped.path(live).stat().st_size > mapped.size  # the reserved window, while active
    mapped.close(all_acked=False)
    plain.close(all_acked=False)
    for seq in range(live + 1):
        assert mapped.path(seq).read_bytes() == plain.path(seq).read_bytes()


def test_a_full_disk_falls_back_to_pwrite_and_then_reports_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    w = SegmentWriter(tmp_path / "s")
    lines = _lines(5)
    monkeypatch.setattr(segments_mod.os, "posix_fallocate", no_space)
    assert w.append(lines[0]) == (0, len(lines[0]))  # no window: written with pwrite
    monkeypatch.setattr(segments_mod.os, "pwrite", no_space)
    with pytest.raises(OSError, match="No space"):
        w.append(lines[1])  # the pipeline keeps such a record in memory (test_outage)
    monkeypatch.undo()
    assert w.append(lines[2]) == (0, len(lines[0]) + len(lines[2]))
    entries, _ = w.read(0, 0, 10, w.size)
    assert [e.record is not None for e in entries] == [True, True]
    w.close(all_acked=False)


def test_a_dead_writers_tail_is_skipped_and_its_torn_line_quarantined(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    # a process that maps its segment, writes 30 lines and half of a 31st, then dies (kill -9
    # in the middle of the copy): its file keeps the reserved window's NUL tail
    code = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import encode
from tests.delivery.helpers import filling_disk, make_record
w = SegmentWriter(Path({str(spool)!r}))
for _ in range(30):
    w.append(encode(make_record()))
line = encode(make_record())
w._map[w.size - w._base:w.size - w._base + 40] = line[:40]
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    (seg,) = spool.glob("*.seg")
    data = seg.read_bytes()
    assert data.endswith(b"\0" * 1000)  # the tail the dead writer never truncated
    assert spool_mod.backlog(spool) == 30
    orphan = next(find_orphans(spool))
    assert orphan.pending() == 30
    entries = orphan.next_batch(1000)
    assert [e.record is not None for e in entries] == [True] * 30 + [False]
    assert "unreadable spool entry" in entries[-1].error
    assert "\0" not in entries[-1].raw
    orphan.ack(entries[-1].seq, entries[-1].end)
    assert orphan.next_batch(1000) == []  # nothing after the torn line: the tail is not data
    orphan.release()
    assert not seg.exists()  # fully replayed: the dead owner's files are gone


def test_reading_a_dead_segment_stops_at_its_tail(tmp_path: Path) -> None:
    seg = tmp_path / "x.seg"
    lines = _lines(3)
    seg.write_bytes(b"".join(lines) + b"\0" * 5000)
    entries, end = read_entries(seg, 0, 0, 1000)
    assert [e.record is not None for e in entries] == [True] * 3
    assert end == sum(map(len, lines))


def test_a_forked_child_leaves_the_parents_map_alone(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path / "s")
    lines = _lines(10)
    for x in lines[:5]:
        w.append(x)
    pid = os.fork()
    if pid == 0:  # the child: forget the parent's writer, as the pipeline's fork hook does
        code = 0
        try:
            w.abandon_after_fork()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for x in lines[5:]:
        w.append(x)  # the parent's window is still mapped and writable
    entries, _ = w.read(0, 0, 100, w.size)
    assert len(entries) == 10
    assert all(e.record is not None for e in entries)
    w.close(all_acked=False)


def test_a_line_torn_by_a_full_disk_seals_its_segment_at_the_real_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = SegmentWriter(tmp_path / "s", mapped=False)
    lines = _lines(3)
    # the second line: a short write of 10 bytes, then the disk is full
    monkeypatch.setattr(segments_mod.os, "pwrite", filling_disk(short_at=2, keep=10))
    assert w.append(lines[0]) == (0, len(lines[0]))
    with pytest.raises(OSError, match="full"):
        w.append(lines[1])
    assert w.append(lines[2]) == (1, len(lines[2]))  # a fresh segment, exact offsets
    monkeypatch.undo()
    assert w.sealed == {0: len(lines[0]) + 10}
    assert w.path(0).stat().st_size == len(lines[0]) + 10  # no padding past the torn bytes
    entries, _ = w.read(0, 0, 10, w.sealed[0])
    assert [e.record is not None for e in entries] == [True]  # the torn tail is not a record
    entries, _ = w.read(1, 0, 10, w.size)
    assert [e.record is not None for e in entries] == [True]
    w.close(all_acked=False)


def test_without_posix_fallocate_the_segment_is_written_with_pwrite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(segments_mod.os, "posix_fallocate")  # as on macOS
    w = SegmentWriter(tmp_path / "s")
    lines = _lines(20)
    positions = [w.append(x) for x in lines]
    assert positions[-1] == (0, sum(map(len, lines)))
    assert w._map is None
    assert w.path(0).stat().st_size == w.size  # nothing reserved, nothing mapped
    entries, _ = w.read(0, 0, 100, w.size)
    assert len(entries) == 20
    assert all(e.record is not None for e in entries)
    w.close(all_acked=False)
