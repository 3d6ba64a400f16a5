"""Quarantined records, delivered again once their cause is fixed (`instrument replay
--quarantined`).

The quarantine file is claimed by an atomic rename, so two requeuers never take the same
lines and the live pipeline keeps appending to a fresh file. Records go through the same
:class:`~instrument.pipeline.delivery.Deliverer` as the spool: the store's idempotency makes a
record that already landed a duplicate, and one the store still refuses is quarantined again
with its new error. Lines without a record (damaged spool bytes) and lines that no longer
parse are put back as they are. A claim left behind by a crash is taken up by the next run.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from instrument.pipeline.delivery import Deliverer, Partial
from instrument.pipeline.quarantine import QUARANTINE_FILE
from instrument.pipeline.spool import Entry
from instrument.pricing import Pricer
from instrument.record import ExecutionRecord
from instrument.stores.base import Store
from instrument.writers import Writer

__all__ = ["RequeueReport", "requeue_quarantined"]

_CLAIM = QUARANTINE_FILE + ".requeue-"


@dataclass(frozen=True, slots=True)
class RequeueReport:
    """What one requeue did."""

    #: records the store applied now
    applied: int
    #: records that had landed already (a requeue interrupted before it cleaned up)
    duplicates: int
    #: records the store refused again: back in the quarantine with their new error
    refused: int
    #: lines put back as they were: damaged spool bytes, lines that do not parse, and records
    #: not attempted because the store failed (`error`)
    kept: int
    error: str | None = None


def _claim(directory: Path) -> list[Path]:
    """Rename the quarantine file (and claims left by crashed runs) to claims of our own."""
    mine: list[Path] = []
    for src in [directory / QUARANTINE_FILE, *sorted(directory.glob(_CLAIM + "*"))]:
        dst = directory / f"{_CLAIM}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(src, dst)
        except FileNotFoundError:  # no quarantine, or another requeuer took this claim
            continue
        mine.append(dst)
    return mine


def _put_back(directory: Path, lines: list[bytes]) -> None:
    if not lines:
        return
    fd = os.open(directory / QUARANTINE_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)


def requeue_quarantined(store: Store, *, spool_dir: Path | None, writers: Collection[str],
                        custom_writers: Sequence[Writer] = (), batch_size: int = 500,
                        pricer: Pricer | None = None) -> RequeueReport:
    """Deliver the quarantined records of `spool_dir` again (the caller opens the store).
    Records quarantined by a pipeline that priced them keep their cost; `pricer` prices the
    others."""
    if spool_dir is None or not spool_dir.is_dir():
        return RequeueReport(0, 0, 0, 0)
    deliverer = Deliverer(store, writers, custom_writers, spool_dir, pricer)
    kept: list[bytes] = []
    entries: list[tuple[Entry, bytes]] = []
    claims = _claim(spool_dir)
    for claim in claims:
        for line in claim.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                record = ExecutionRecord.model_validate(json.loads(line)["record"])
            except Exception:  # no record (damaged bytes) or unreadable: keep the line as is
                kept.append(line)
                continue
            entries.append((Entry(0, len(entries), record), line))
    error: str | None = None
    done = 0
    for start in range(0, len(entries), batch_size):
        batch = entries[start:start + batch_size]
        try:
            deliverer.deliver([e for e, _ in batch], lambda _: None)
            done = start + len(batch)
        except Partial as p:
            done = start + p.done
            error = f"{type(p.cause).__name__}: {p.cause}"
            break
    kept += [line for _, line in entries[done:]]
    _put_back(spool_dir, kept)
    for claim in claims:  # everything in them is delivered, quarantined again or put back
        claim.unlink()
    return RequeueReport(deliverer.applied, deliverer.duplicates, deliverer.quarantined,
                         len(kept), error)
