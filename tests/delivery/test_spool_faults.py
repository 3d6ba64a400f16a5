"""A spool that cannot be written, and a worker that never dies (issue 14, item 2).

Real faults only: a full tmpfs (ENOSPC in the acknowledgement, the segment and the replay), a
spool directory removed while records wait in it, a read-only mount, an unreadable segment.
Every test counts rows: each record whose submit returned is in the store exactly once, or it
is counted as lost and the exit message says so.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from instrument.pipeline import ReplayReport, replay
from instrument.pipeline.segments import SegmentWriter
from instrument.pipeline.spool import backlog, encode
from tests.delivery.faultstore import FileStore, rows
from tests.delivery.helpers import file_pipeline, locked, make_record
from tests.delivery.smallfs import fill, remount, tmpfs, wait_for


def _ids(recs: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(str(r.execution_id) for r in recs)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="instrument")
    return caplog


def test_a_full_disk_while_acknowledging_never_stops_delivery(
        db: str, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    with tmpfs(tmp_path / "fs", "4m") as fs:
        spool = fs / "spool"
        p = file_pipeline(db, spool)
        recs = [make_record() for _ in range(3000)]
        with locked(db):  # nothing is delivered (or acknowledged) before the disk is full
            p.submit(recs[0])  # reserves the segment's first window (1 MiB) on disk
            filler = fill(fs)
            for r in recs[1:]:  # about half fit the reserved window; the rest fail to spool
                p.submit(r)
        assert p.flush(60)  # the first acknowledgement creates the ack file: ENOSPC
        s = p.stats()
        assert (s.delivered, s.dropped, s.worker_errors, s.memory_only) == (3000, 0, 0, 0)
        assert "cannot acknowledge delivered records" in logs.text  # ENOSPC in the ack write
        assert "spool write failed" in logs.text
        assert sorted(rows(db)[0]) == _ids(recs)  # each exactly once
        filler.unlink()  # space again: the spool works as before
        more = [make_record() for _ in range(200)]
        for r in more:
            p.submit(r)
        assert p.flush(30)
        assert p.shutdown(10)
        assert sorted(rows(db)[0]) == _ids(recs + more)
        assert list(spool.glob("*.seg")) == []


def test_replay_on_a_full_disk_delivers_everything_in_one_run(db: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "4m") as fs:
        spool = fs / "spool"
        w = SegmentWriter(spool, mapped=False)
        recs = [make_record() for _ in range(1200)]
        for r in recs:
            w.append(encode(r))
        w.close(all_acked=False)  # its process is gone: an orphan for replay
        fill(fs)
        store = FileStore(db)
        try:
            report = replay(store, spool_dir=spool, writers=("executions",), batch_size=500)
        finally:
            store.close()
        assert report == ReplayReport(applied=1200, duplicates=0, quarantined=0, remaining=0,
                                      processes=1, skipped_live=0)
        assert sorted(rows(db)[0]) == _ids(recs)
        assert list(spool.glob("*.seg")) == []


def _outage_backlog(p: object, n: int) -> list:  # type: ignore[type-arg]
    """With the store locked: 10 records in flight, 10 queued in memory, 10 on disk only."""
    from instrument.pipeline import DeliveryPipeline

    assert isinstance(p, DeliveryPipeline)
    recs = [make_record() for _ in range(n)]
    for r in recs[:10]:
        p.submit(r)  # the 10th kicks the worker: it takes all ten and fails
    wait_for(lambda: p.stats().retries >= 1)
    for r in recs[10:]:
        p.submit(r)  # while failing, one batch stays in memory; the rest spills to disk
    s = p.stats()
    assert (s.spool_records, s.spilled, s.memory_only) == (n, n - 20, 0)
    return recs


def test_a_spool_removed_while_records_wait_is_recreated_with_all_of_them(
        db: str, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "spool"
    p = file_pipeline(db, spool, batch_size=10, queue_size=100, flush_interval_s=5,
                      spool_retry_s=0.05)
    with locked(db):
        recs = _outage_backlog(p, 30)
        shutil.rmtree(spool)  # every file goes, while the worker retries the store
        wait_for(lambda: "is usable again" in logs.text)
        s = p.stats()
        assert (s.spool_state, s.spool_records, s.memory_only, s.dropped) == ("ok", 30, 0, 0)
        assert backlog(spool) == 30  # really on disk again, in the new spool
        assert not p.shutdown(1)
    assert "30 records not yet written to" in logs.text
    assert "are lost" not in logs.text
    store = FileStore(db)
    try:
        report = replay(store, spool_dir=spool, writers=("executions",))
    finally:
        store.close()
    assert (report.applied, report.quarantined, report.remaining) == (30, 0, 0)
    assert sorted(rows(db)[0]) == _ids(recs)


def test_a_spool_that_cannot_be_recreated_is_never_reported_as_holding_records(
        db: str, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "parent" / "spool"
    p = file_pipeline(db, spool, batch_size=10, queue_size=10, flush_interval_s=5,
                      spool_retry_s=0.05)
    with locked(db):
        _outage_backlog(p, 30)
        shutil.rmtree(tmp_path / "parent")
        (tmp_path / "parent").write_text("a file where the spool's parent was")
        wait_for(lambda: p.stats().spool_state == "degraded")
        s = p.stats()
        # memory holds at most queue_size (10) plus the batch in flight (10); the 10 that were
        # on disk only and did not fit are counted as lost, and flush() says so
        assert (s.spool_records, s.memory_only, s.dropped) == (0, 20, 10)
        assert not p.flush(0.5)
        assert not p.shutdown(1)
    assert "lost 10 records: the spool" in logs.text
    assert "20 records were not delivered and are lost (they were held in memory only" in (
        logs.text)
    assert "stay in the spool" not in logs.text


def test_a_read_only_spool_is_used_once_it_becomes_writable(
        db: str, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    with tmpfs(tmp_path / "fs", "4m", read_only=True) as fs:
        spool = fs / "spool"
        p = file_pipeline(db, spool, spool_retry_s=0.05)
        assert p.stats().spool_state == "degraded"
        recs = [make_record() for _ in range(20)]
        with locked(db):
            for r in recs:
                p.submit(r)
            s = p.stats()
            assert (s.spool_records, s.memory_only) == (0, 20)
            remount(fs, "rw")
            wait_for(lambda: p.stats().spool_state == "ok")
            s = p.stats()
            assert (s.spool_records, s.memory_only) == (20, 0)
            assert backlog(spool) == 20
        assert p.flush(30)
        assert p.shutdown(5)
        assert sorted(rows(db)[0]) == _ids(recs)
        assert list(spool.glob("*.seg")) == []


def test_the_worker_survives_a_failing_cycle_and_logs_it_once(
        db: str, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    # a finished process's "segment" that cannot be read (EISDIR stands for any read error):
    # adopting it fails in every scan
    (spool / "123-deadbeef.000000.seg").mkdir()
    p = file_pipeline(db, spool, orphan_scan_s=0.05)
    recs = [make_record() for _ in range(50)]
    for r in recs:
        p.submit(r)
    assert p.flush(30)
    wait_for(lambda: p.stats().worker_errors >= 3)
    more = [make_record() for _ in range(50)]
    for r in more:
        p.submit(r)
    assert p.flush(30)
    assert p.shutdown(5)
    assert sorted(rows(db)[0]) == _ids(recs + more)
    failed = [r for r in logs.records if "a delivery cycle failed" in r.getMessage()]
    assert len(failed) == 1  # rate limited
    assert "IsADirectoryError" in failed[0].getMessage()
