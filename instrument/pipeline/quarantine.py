"""Quarantine: records the store refused (and unreadable spool lines), kept with their error.

They are appended to ``quarantine.jsonl`` in the spool directory (fsynced: nothing else keeps
them), listed by :func:`quarantined` and by ``instrument doctor``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instrument.pipeline.spool import Entry

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
        ))
    return out
