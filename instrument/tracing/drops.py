"""Spans the OpenTelemetry SDK dropped, counted, whoever's provider dropped them.

A ``BatchSpanProcessor`` drops a span when its queue is full (the collector is slower than the
application, or down) and says so only in a log line, itself de-duplicated to one per 20 s.
Our own provider is sized not to drop (:mod:`instrument.tracing.providers`), but the
application's provider is the application's: we never add processors to it or reach into
them. What we can do without touching it is read what it says. :func:`install` puts a
counting filter first on the SDK's batch-processor logger (before the SDK's own
de-duplicating filter, so it sees every drop); it never suppresses anything. The count is
process-wide (every batch span processor: ours and the application's) and is reported as the
``instrument.spans.dropped`` counter, by :func:`dropped_spans`, and in a warning at most once a
minute that says what to do.

Limits: a drop is seen only while the SDK logger's ``WARNING`` level is enabled (an
application that silences ``opentelemetry`` warnings hides its drops from us too), and only
for the SDK versions whose message is listed in :data:`_MESSAGES`.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from instrument.ratelimit import RateLimiter, held_back

__all__ = ["dropped_spans", "install"]

_log = logging.getLogger(__name__)

#: (logger, message format) of a dropped span, per SDK version.
_MESSAGES: Final = (
    ("opentelemetry.sdk._shared_internal", "Queue full, dropping %s."),  # 1.33 and later
    ("opentelemetry.sdk.trace.export", "Queue is full, likely spans will be dropped."),
)

_lock = threading.Lock()
_dropped = 0
_installed = False
_limiter = RateLimiter(60.0)


class _CountDrops(logging.Filter):
    """Counts the SDK's "queue full" records of spans; lets every record through."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.message and (not record.args or record.args == ("Span",)):
            _count()
        return True


def _count() -> None:
    global _dropped
    with _lock:
        _dropped += 1
        total = _dropped
    held = _limiter.admit("dropped")
    if held is not None:
        _log.warning(
            "logged-execution: an OpenTelemetry batch span processor dropped spans because its "
            "queue was full (%d so far in this process); the database records are complete. "
            "The collector is slower than the application or unreachable: raise "
            "OTEL_BSP_MAX_QUEUE_SIZE (and OTEL_BSP_MAX_EXPORT_BATCH_SIZE) of the provider "
            "that exports them, or check the collector.%s", total, held_back(held))


def install() -> None:
    """Start counting (idempotent; the Tracing of every runtime calls it)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    for name, message in _MESSAGES:
        logger = logging.getLogger(name)
        # first: the SDK's own DuplicateFilter rejects repeats, and a rejected record is not
        # shown to the filters after it
        logger.filters.insert(0, _CountDrops(message))


def dropped_spans() -> int:
    """Spans dropped by a full batch-processor queue in this process since it started."""
    return _dropped
