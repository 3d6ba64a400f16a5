"""Spool reading resyncs past damage (issue 14, item 6).

A real segment of 100 records is damaged on disk the ways disks and crashes do it (a zeroed
page, NUL bytes inserted in a line, a torn line that runs into the next one, a dead writer's
NUL tail), then replayed. An independent oracle says which records are intact (their bytes
untouched) and which bytes are damage: every intact record lands exactly once, every damaged
stretch is in the quarantine byte for byte, and the report's numbers are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from instrument.pipeline import ReplayReport, quarantined, replay
from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import encode
from instrument.record import ExecutionRecord
from tests.delivery.faultstore import FileStore, rows
from tests.delivery.helpers import make_record

PAGE = 4096


def _segment(spool: Path, n: int) -> tuple[Path, list[ExecutionRecord], list[bytes]]:
    """A finished process's segment of `n` records (lines in order)."""
    w = SegmentWriter(spool, mapped=False)
    recs = [make_record(agent_id=f"agent-{i}") for i in range(n)]
    lines = [encode(r) for r in recs]
    for line in lines:
        w.append(line)
    path = w.path(0)
    w.close(all_acked=False)
    return path, recs, lines


def _damage(lines: list[bytes]) -> tuple[bytes, set[int]]:
    """The segment's bytes damaged three ways, and the indexes of the lines left intact."""
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    data = bytearray(b"".join(lines))
    hit: set[int] = set()

    def touch(lo: int, hi: int) -> None:  # original bytes [lo, hi) are damaged
        hit.update(i for i in range(len(lines)) if starts[i] < hi and lo < starts[i + 1])

    # 1. a zeroed page (page 8: the middle of the first third)
    zero = 8 * PAGE
    touch(zero, zero + PAGE)
    # 2. a torn line: line 60 loses its second half and its newline (runs into line 61)
    cut_lo, cut_hi = starts[60] + len(lines[60]) // 2, starts[61]
    touch(cut_lo, cut_hi)
    # 3. NUL bytes inserted in the middle of line 80
    ins = starts[80] + 100
    touch(ins, ins + 1)
    data[zero:zero + PAGE] = bytes(PAGE)
    out = bytes(data[:cut_lo]) + bytes(data[cut_hi:ins]) + b"\0" * 7 + bytes(data[ins:])
    # 4. a dead writer's reserved window: a NUL tail the reader must not take for data
    return out + bytes(3000), set(range(len(lines))) - hit


def _expected_damage(damaged: bytes, intact: list[bytes]) -> list[bytes]:
    """The damaged stretches, as the oracle sees them: every line of the damaged file that is
    not an intact record (minus an intact record at its end, which the reader resyncs to)."""
    whole = set(intact)
    out = []
    body = damaged.rstrip(b"\0")
    for line in body.splitlines(keepends=True):
        if line in whole:
            continue
        tail = next((x for x in intact if line.endswith(x) and len(line) > len(x)), None)
        out.append(line[:-len(tail)] if tail is not None else line)
    return out


@pytest.mark.parametrize("batch_size", [500, 7])
def test_replay_resyncs_past_damage_and_quarantines_its_bytes(
        db: str, tmp_path: Path, batch_size: int) -> None:
    spool = tmp_path / "spool"
    seg, recs, lines = _segment(spool, 100)
    damaged, intact = _damage(lines)
    seg.write_bytes(damaged)
    expected = _expected_damage(damaged, [lines[i] for i in sorted(intact)])
    # the damage is what we meant: a page spans several records, the torn line leaves the
    # next one whole, the inserted NULs hit one record
    assert {60, 80} & intact == set()
    assert 61 in intact
    assert len(expected) == 3
    assert 100 - len(intact) >= 2 + 2

    store = FileStore(db)
    try:
        report = replay(store, spool_dir=spool, writers=("executions",),
                        batch_size=batch_size)
    finally:
        store.close()

    assert report == ReplayReport(applied=len(intact), duplicates=0, quarantined=3,
                                  remaining=0, processes=1, skipped_live=0, damaged=3)
    ids, _ = rows(db)
    assert sorted(ids) == sorted(str(recs[i].execution_id) for i in intact)  # each once
    q = quarantined(spool)
    assert [x.damaged for x in q] == expected  # the damaged bytes, exactly
    assert all(x.error_type == "UnreadableSpoolEntry" and x.segment == 0 for x in q)
    assert [damaged[x.offset:x.offset + len(x.damaged)] for x in q  # type: ignore[operator]
            ] == expected  # and where they were
    assert not seg.exists()  # deleted only once everything in it was read


def test_one_nul_byte_no_longer_deletes_the_records_after_it(db: str, tmp_path: Path) -> None:
    """The issue's case: one NUL byte in record 50 of 100."""
    spool = tmp_path / "spool"
    seg, recs, lines = _segment(spool, 100)
    at = sum(map(len, lines[:49])) + 200
    data = seg.read_bytes()
    seg.write_bytes(data[:at] + b"\0" + data[at + 1:])
    store = FileStore(db)
    try:
        report = replay(store, spool_dir=spool, writers=("executions",), batch_size=500)
    finally:
        store.close()
    assert (report.applied, report.quarantined, report.damaged, report.remaining) == (
        99, 1, 1, 0)
    assert sorted(rows(db)[0]) == sorted(
        str(r.execution_id) for i, r in enumerate(recs) if i != 49)
    (q,) = quarantined(spool)
    assert q.damaged == lines[49][:200] + b"\0" + lines[49][201:]
