"""The live runtime (settings, pipeline, tracing, redactor), swapped atomically by configure().

The decorator reads one module global per call; `configure()` builds a complete new runtime and
publishes it with a single assignment, then flushes and closes the old one.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass

from instrument.config import Settings, resolve_settings
from instrument.pipeline.worker import NullPipeline, Pipeline, build_pipeline
from instrument.redact import Redactor
from instrument.stores import open_store
from instrument.tracing.spans import Tracing

__all__ = ["Runtime", "current", "flush", "install", "note_unrecorded", "reset", "shutdown"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    settings: Settings
    pipeline: Pipeline
    tracing: Tracing | None
    redactor: Redactor

    def flush(self, timeout_s: float) -> bool:
        return self.pipeline.flush(timeout_s)

    def shutdown(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        ok = self.pipeline.shutdown(timeout_s)
        if self.tracing is not None:
            ok = self.tracing.shutdown(max(0.0, deadline - time.monotonic())) and ok
        return ok


_runtime: Runtime | None = None
_lock = threading.Lock()
#: what configure() last installed: a call after shutdown() rebuilds *this*, not the env default
_last_settings: Settings | None = None
#: decorated calls that could not be recorded (the configuration is broken); the next flush()
#: reports them by returning False
_unrecorded = 0


def build(settings: Settings) -> Runtime:
    redactor = Redactor(settings.redact_patterns)
    if settings.disabled:
        return Runtime(settings, NullPipeline(), None, redactor)
    store = open_store(settings.database_url, settings)
    pipeline = build_pipeline(settings, store)
    return Runtime(settings, pipeline, Tracing.from_settings(settings, redactor), redactor)


def install(new: Runtime, timeout_s: float = 5.0) -> Runtime | None:
    """Publish `new` and retire the previous runtime (flushed, then closed)."""
    global _runtime, _last_settings
    with _lock:
        old, _runtime = _runtime, new
        _last_settings = new.settings
    if old is not None:
        old.shutdown(timeout_s)
    return old


def current() -> Runtime:
    """The live runtime; the first decorated call configures one from the environment."""
    rt = _runtime
    if rt is not None:
        return rt
    with _lock:
        if _runtime is None:
            globals()["_runtime"] = build(_last_settings or resolve_settings())
        return _runtime  # type: ignore[return-value]


def note_unrecorded() -> None:
    """A decorated call ran unrecorded because no runtime could be built (see flush())."""
    global _unrecorded
    _unrecorded += 1


def peek() -> Runtime | None:
    return _runtime


def swap(new: Runtime | None) -> Runtime | None:
    """Publish `new` without closing the previous runtime (testing.capture uses this)."""
    global _runtime
    with _lock:
        old, _runtime = _runtime, new
    return old


def flush(timeout_s: float = 5.0) -> bool:
    global _unrecorded
    rt = _runtime
    ok = True if rt is None else rt.flush(timeout_s)
    if _unrecorded:
        _log.error("logged-execution: %d decorated call(s) since the last flush ran unrecorded "
                   "because the configuration is invalid (see the error logged for the first "
                   "one); fix the setting it names", _unrecorded)
        _unrecorded = 0
        return False
    return ok


def shutdown(timeout_s: float = 5.0) -> bool:
    global _runtime
    with _lock:
        rt, _runtime = _runtime, None
    return True if rt is None else rt.shutdown(timeout_s)


def reset(timeout_s: float = 5.0) -> bool:
    """Shut down and forget the configuration too (tests use this between cases)."""
    global _last_settings, _unrecorded
    ok = shutdown(timeout_s)
    _last_settings = None
    _unrecorded = 0
    return ok


@atexit.register
def _at_exit() -> None:
    try:
        shutdown(5.0)
    except Exception:  # interpreter teardown: never raise from atexit
        _log.debug("shutdown at exit failed", exc_info=True)
