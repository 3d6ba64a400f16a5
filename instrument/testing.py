"""Test helpers for users' own suites: capture records in memory and check writer parity."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from instrument import runtime
from instrument.config import Settings, resolve_settings
from instrument.record import ExecutionRecord
from instrument.redact import Redactor
from instrument.tracing.spans import Tracing
from instrument.writers import BUILTIN_WRITERS, Writer

__all__ = ["Captured", "assert_parity", "capture"]

_log = logging.getLogger(__name__)


@dataclass
class Captured:
    """What a :func:`capture` block saw."""

    #: Every record, in submission order.
    records: list[ExecutionRecord] = field(default_factory=list)
    #: writer name -> the records that writer received (built-in and custom writers).
    writes: dict[str, list[ExecutionRecord]] = field(default_factory=dict)
    #: (writer name, exception) for every writer failure; the host call never sees them.
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    #: writer names enabled for records that do not choose their own subset.
    enabled: tuple[str, ...] = BUILTIN_WRITERS

    def for_agent(self, agent_id: str) -> list[ExecutionRecord]:
        return [r for r in self.records if r.agent_id == agent_id]


class _MemoryPipeline:
    """Delivers synchronously to in-memory writer logs, so tests can assert right away."""

    def __init__(self, captured: Captured, custom: Sequence[Writer]) -> None:
        self.captured = captured
        self.custom = tuple(custom)
        self._lock = threading.Lock()

    def submit(self, record: ExecutionRecord) -> None:
        cap = self.captured
        with self._lock:
            cap.records.append(record)
            targets = record.writers if record.writers is not None else cap.enabled
            for name in targets:
                if name in BUILTIN_WRITERS and name in cap.enabled:
                    cap.writes.setdefault(name, []).append(record)
        for w in self.custom:
            if record.writers is not None and w.name not in record.writers:
                continue
            try:
                w.write([record])
            except Exception as exc:  # a failing writer is recorded, never raised to the host
                _log.warning("writer %r failed inside capture()", w.name, exc_info=True)
                cap.errors.append((w.name, exc))
                continue
            with self._lock:
                cap.writes.setdefault(w.name, []).append(record)

    def flush(self, timeout_s: float = 5.0) -> bool:
        return True

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        return True


@contextmanager
def capture(
    *,
    writers: Sequence[str | Writer] | None = None,
    capture_content: bool | str | None = None,
    strict: bool | None = None,
    tracing: Tracing | None = None,
) -> Iterator[Captured]:
    """Swap in an in-memory pipeline for the duration of the block.

    Decorated calls inside the block record into the yielded :class:`Captured` instead of the
    configured database; the previous pipeline is restored (not closed) afterwards.
    """
    base = resolve_settings(writers=writers, capture_content=capture_content, strict=strict)
    settings: Settings = replace(base, database_url="memory://")
    captured = Captured(enabled=settings.writers)
    previous = runtime.peek()
    rt = runtime.Runtime(
        settings=settings,
        pipeline=_MemoryPipeline(captured, settings.custom_writers),
        tracing=tracing if tracing is not None else Tracing(pipeline_stats=runtime.pipeline_stats),
        redactor=Redactor(settings.redact_patterns),
    )
    runtime.swap(rt)
    try:
        yield captured
    finally:
        runtime.swap(previous)


def assert_parity(captured: Captured) -> None:
    """Fail unless every record reached every writer enabled for it exactly once."""
    problems: list[str] = []
    custom = {n for n in captured.writes if n not in BUILTIN_WRITERS}
    for record in captured.records:
        enabled = set(record.writers if record.writers is not None else captured.enabled)
        enabled = (enabled & set(captured.enabled)) | (enabled & custom if record.writers
                                                        is not None else custom)
        for name in sorted(enabled):
            n = sum(1 for r in captured.writes.get(name, ()) if r.execution_id ==
                    record.execution_id)
            if n != 1:
                problems.append(f"{record.execution_id} ({record.engine}, {record.status}) "
                                f"reached writer {name!r} {n} times")
    for name, exc in captured.errors:
        problems.append(f"writer {name!r} failed: {type(exc).__name__}: {exc}")
    if problems:
        raise AssertionError("writer parity broken:\n  " + "\n  ".join(problems))
