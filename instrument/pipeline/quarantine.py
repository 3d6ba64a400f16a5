"""Quarantine: records the store refused (and unreadable spool lines), kept with their error.

They are appended to ``quarantine.jsonl`` in the spool directory (fsynced: nothing else keeps
them), listed by :func:`quarantined` and by ``instrument doctor``. A damaged stretch of a spool
segment (NUL bytes, a zeroed page, a torn line) is kept byte for byte (``damaged_base64``) with
where it was (``segment``, ``offset``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instrument.pipeline.spool import Entry
from instrument.record import ExecutionRecord

__all__ = ["QUARANTINE_FILE", "QuarantinedRecord", "quarantine", "quarantined"]

_log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.jsonl"


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
    #: the exact bytes of a damaged stretch of a spool segment (``None`` for a refused record)
    damaged: bytes | None = None
    #: where the damaged bytes were: the segment's sequence number and byte offset
    segment: int | None = None
    offset: int | None = None


def _record_json(rec: ExecutionRecord) -> dict[str, Any]:
    """The record as JSON for the quarantine file, even when it cannot be encoded as UTF-8.

    A record that bypassed the door's cleaning (a lone surrogate in a hand-built result) fails
    ``to_json_dict``; quarantining it must not fail too, or the batch would never be handled.
    ``json.dumps`` escapes such characters (``\\udc80``), so the line stays valid JSON.
    """
    try:
        return rec.to_json_dict()
    except Exception:  # deliberately broad: any encoding failure falls back to Python's view
        return rec.model_dump(mode="json")


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
        "record": _record_json(rec) if rec is not None else None,
        "raw": entry.raw or None,
    }
    if entry.damaged is not None:
        item["damaged_base64"] = base64.b64encode(entry.damaged).decode("ascii")
        item["segment"] = entry.seq
        item["offset"] = entry.end - len(entry.damaged)
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


def quarantined(spool_dir: Path | None) -> list[QuarantinedRecord]:
    """Every quarantined record in the spool directory, oldest first."""
    if spool_dir is None:
        return []
    out: list[QuarantinedRecord] = []
    try:
        lines = (spool_dir / QUARANTINE_FILE).read_text().splitlines()
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
            damaged=(base64.b64decode(obj["damaged_base64"]) if "damaged_base64" in obj
                     else None),
            segment=obj.get("segment"), offset=obj.get("offset"),
        ))
    return out
