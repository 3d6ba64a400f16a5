"""The delivery pipeline against a real SQLite-file store with real faults (locks, schema)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from instrument.config import resolve_settings, spool_dir_for
from instrument.pipeline import quarantined, replay
from instrument.pipeline import segments as segments_mod
from instrument.pipeline.spool import backlog
from tests.delivery.faultstore import FileStore, rows
from tests.delivery.helpers import file_pipeline, locked, make_record

_pipeline = file_pipeline


def test_delivers_every_record_once_and_cleans_the_spool(db: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    p = _pipeline(db, spool)
    recs = [make_record() for _ in range(1000)]
    for r in recs:
        p.submit(r)
    assert p.flush(10)
    s = p.stats()
    assert s.delivered == 1000
    assert s.spool_records == 0
    assert s.batches >= 10
    assert p.shutdown(5)
    ids, counters = rows(db)
    assert sorted(ids) == sorted(str(r.execution_id) for r in recs)
    assert counters == {"agent-1": 1000}
    assert list(spool.glob("*.seg")) == []
    assert list(spool.glob("*.lock")) == []


def test_store_down_never_blocks_then_everything_lands(db: str, tmp_path: Path) -> None:
    p = _pipeline(db, tmp_path / "spool", queue_size=200)
    recs = [make_record() for _ in range(3000)]
    with locked(db):
        t0 = time.perf_counter()
        for r in recs:
            p.submit(r)
        per_call = (time.perf_counter() - t0) / len(recs)
        t1 = time.monotonic()
        assert p.flush(0.3) is False
        assert time.monotonic() - t1 < 2.0  # the bound holds with a dead store
        s = p.stats()
        assert s.queue_depth <= 200
        assert s.spilled >= 2500
        assert s.retries >= 1
        assert s.spool_records == 3000
    assert per_call < 0.002  # generous: a blocked call would take the lock timeout or more
    assert p.flush(15)
    assert p.shutdown(5)
    ids, counters = rows(db)
    assert len(ids) == 3000
    assert set(ids) == {str(r.execution_id) for r in recs}
    assert counters == {"agent-1": 3000}


def test_poison_record_is_quarantined_and_the_rest_of_its_batch_lands(
        db: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    p = _pipeline(db, spool, batch_size=64)
    recs = [make_record() for _ in range(63)]
    poison = make_record(agent_id="poison-1")
    recs.insert(17, poison)
    with locked(db):  # make sure all 64 end up in one batch
        for r in recs:
            p.submit(r)
        time.sleep(0.1)
    assert p.flush(10)
    s = p.stats()
    assert s.quarantined == 1
    assert s.delivered == 64
    p.shutdown(5)
    ids, _ = rows(db)
    assert len(ids) == 63
    assert str(poison.execution_id) not in ids
    q = quarantined(spool)
    assert [x.execution_id for x in q] == [str(poison.execution_id)]
    assert "CHECK constraint" in q[0].error
    assert q[0].error_type == "RecordRejected"
    assert q[0].record is not None
    assert q[0].record["agent_id"] == "poison-1"


def test_schema_mismatch_keeps_records_until_migrated(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    db = str(tmp_path / "fresh.db")
    p = _pipeline(db, tmp_path / "spool")
    for _ in range(10):
        p.submit(make_record())
    assert p.flush(0.5) is False
    assert "instrument migrate" in caplog.text
    assert p.stats().spool_records == 10
    FileStore(db).migrate()
    assert p.flush(5)  # flush forces a probe despite the slow schema retry
    p.shutdown(2)
    assert len(rows(db)[0]) == 10


def test_unacknowledged_records_are_replayed_by_the_next_process(db: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    p = _pipeline(db, spool)
    recs = [make_record() for _ in range(500)]
    with locked(db):
        for r in recs:
            p.submit(r)
        assert p.shutdown(0.3) is False  # bounded; records stay on disk
    p._thread.join(5)  # the worker releases the spool right after (on a loaded machine: later)
    assert list(spool.glob("*.seg"))
    seen: list[tuple[int, int]] = []
    report = replay(FileStore(db), spool_dir=spool, writers=["executions"],
                    progress=lambda done, total: seen.append((done, total)))
    assert report.applied == 500
    assert report.remaining == 0
    assert report.error is None
    assert seen[-1] == (500, 500)
    assert sorted(rows(db)[0]) == sorted(str(r.execution_id) for r in recs)
    assert list(spool.glob("*.seg")) == []
    again = replay(FileStore(db), spool_dir=spool, writers=["executions"])
    assert again.applied == 0
    assert again.processes == 0


def test_a_new_pipeline_adopts_leftovers_automatically(db: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    old = _pipeline(db, spool)
    with locked(db):
        for _ in range(300):
            old.submit(make_record())
        old.shutdown(0.2)
    old._thread.join(5)
    new = _pipeline(db, spool, orphan_scan_s=0.05)
    deadline = time.monotonic() + 10
    while len(rows(db)[0]) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(rows(db)[0]) == 300
    assert new.stats().orphans_replayed == 300
    new.shutdown(2)
    assert rows(db)[1] == {"agent-1": 300}


def test_spool_off_drops_are_counted_and_reported(db: str) -> None:
    p = _pipeline(db, None, queue_size=50)
    with locked(db):
        for _ in range(200):
            p.submit(make_record())
        s = p.stats()
        assert s.dropped >= 100
        assert s.queue_depth <= 50
    assert p.flush(5) is False  # drops since the last flush make it say so
    p.shutdown(2)


def test_spool_dir_defaults() -> None:
    assert spool_dir_for(None, "sqlite:////tmp/x/app.db", None) == Path("/tmp/x/app.db.spool")
    assert spool_dir_for(None, "sqlite://:memory:", None) is None
    assert spool_dir_for(None, "sqlite:///:memory:", None) is None
    assert spool_dir_for("off", "sqlite:////tmp/a.db", None) is None
    assert spool_dir_for("~/q", "sqlite:////tmp/a.db", None) == Path("~/q").expanduser()
    pg = spool_dir_for(None, "postgresql://u:pw@h/db", None)
    assert pg is not None
    assert ".cache/logged-execution/spool" in str(pg)
    assert pg == spool_dir_for(None, "postgresql://u:other@h/db", None)  # keyed by masked URL
    assert pg != spool_dir_for(None, "postgresql://u:pw@h/db2", None)
    a, b = (spool_dir_for(None, "supabase", f"https://{name}.supabase.co") for name in "ab")
    assert a != b  # two projects never share a queue


def test_spool_dir_comes_from_the_settings_the_runtime_resolves() -> None:
    s = resolve_settings(database_url="sqlite:////tmp/x/app.db", environ={
        "INSTRUMENT_SPOOL_DIR": "/tmp/elsewhere"})
    assert spool_dir_for(s.spool_dir, s.database_url, s.supabase_url) == Path("/tmp/elsewhere")


def test_backlog_counts_unacknowledged_records(db: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    assert backlog(spool) == 0
    assert backlog(None) == 0
    p = _pipeline(db, spool)
    with locked(db):
        for _ in range(120):
            p.submit(make_record())
        assert backlog(spool) == 120
        p.shutdown(0.2)
    p._thread.join(5)
    assert backlog(spool) == 120
    replay(FileStore(db), spool_dir=spool, writers=["executions"])
    assert backlog(spool) == 0


def test_spilled_records_are_read_back_across_segment_rotation(
        db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments_mod, "SEGMENT_MAX_BYTES", 4000)  # ~4 records per segment
    spool = tmp_path / "spool"
    p = _pipeline(db, spool, queue_size=10, batch_size=7)
    recs = [make_record() for _ in range(300)]
    with locked(db):
        for r in recs:
            p.submit(r)
        assert len(list(spool.glob("*.seg"))) > 50
        assert p.stats().queue_depth <= 10
    assert p.flush(20)
    assert len(list(spool.glob("*.seg"))) <= 2  # acknowledged sealed segments are deleted
    for _ in range(50):  # back to the in-memory path after catching up
        p.submit(make_record())
    assert p.flush(10)
    p.shutdown(5)
    ids, counters = rows(db)
    assert len(ids) == 350
    assert {str(r.execution_id) for r in recs} <= set(ids)
    assert counters == {"agent-1": 350}


def test_a_healthy_process_keeps_little_on_disk(
        db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments_mod, "SEGMENT_RECYCLE_BYTES", 20_000)
    monkeypatch.setattr(segments_mod, "MAP_WINDOW_BYTES", 16_384)  # the reserved window, scaled
    spool = tmp_path / "spool"
    p = _pipeline(db, spool)
    for _ in range(20):
        for _ in range(50):
            p.submit(make_record())
        assert p.flush(10)
    assert p.stats().spool_bytes < 100_000  # ~1 MB was written through the spool
    assert len(list(spool.glob("*.seg"))) == 1
    p.shutdown(5)
    assert len(rows(db)[0]) == 1000


def test_batches_by_size_and_by_age(db: str, tmp_path: Path) -> None:
    p = _pipeline(db, tmp_path / "spool", flush_interval_s=2.0, batch_size=100)
    for _ in range(10):
        p.submit(make_record())
    time.sleep(0.1)
    assert p.stats().batches == 0  # a partial batch waits for its age...
    assert p.flush(5)  # ...unless someone flushes
    assert p.stats().batches == 1
    for _ in range(250):
        p.submit(make_record())
    deadline = time.monotonic() + 1.5
    while len(rows(db)[0]) < 210 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(rows(db)[0]) >= 210  # full batches go right away, well before the 2 s age
    assert p.flush(5)
    p.shutdown(5)
    assert len(rows(db)[0]) == 260
