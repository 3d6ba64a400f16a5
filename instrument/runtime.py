"""The live runtime (settings, pipeline, tracing, redactor), swapped atomically by configure().

The decorator reads one module global per call; `configure()` builds a complete new runtime and
publishes it with a single assignment, then flushes and closes the old one.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from instrument import guard
from instrument.config import Settings, resolve_settings, spool_dir_for
from instrument.errors import ConfigurationError
from instrument.pipeline import DeliveryPipeline, NullPipeline, Pipeline, PipelineStats
from instrument.pricing import Pricer
from instrument.redact import Redactor
from instrument.stores import Store, UnusableStore, open_store, url_problem
from instrument.tracing.otel_env import resolve_otel
from instrument.tracing.spans import Tracing
from instrument.writers import Writer

__all__ = [
    "Runtime", "build", "configure", "current", "flush", "install", "note_unrecorded", "peek",
    "pipeline_stats", "pricer_for", "reset", "shutdown", "swap",
]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    settings: Settings
    pipeline: Pipeline
    tracing: Tracing | None
    redactor: Redactor
    #: prices records in the pipeline's worker; budgets add a listener to count spend
    pricer: Pricer | None = None

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


def pricer_for(settings: Settings) -> Pricer:
    """The pricer `settings` ask for: their price table, then genai-prices' bundled data.
    Raises :class:`ConfigurationError` on a bad table (the model and key to fix)."""
    return Pricer(settings.prices, db_table=settings.prices_table)


def build(settings: Settings, *, defer_bad_url: bool = False) -> Runtime:
    """The runtime `settings` describe. `defer_bad_url` (the first decorated call's lazy
    configuration): a database URL no store accepts does not raise into the host; the records
    are spooled and every delivery attempt says what to fix (outside strict mode)."""
    redactor = Redactor(settings.redact_patterns)
    if settings.disabled:
        return Runtime(settings, NullPipeline(), None, redactor)
    pricer = pricer_for(settings)  # before the store opens: a bad table leaves nothing open
    open_configured = functools.partial(
        open_store, settings.database_url, keep_content=True,
        supabase_url=settings.supabase_url, supabase_key=settings.supabase_key,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_s=settings.statement_timeout_s,
        network_timeout_s=settings.network_timeout_s)
    factory: Callable[[], Store] = open_configured
    try:
        store = open_configured()
    except ConfigurationError as exc:
        if not defer_bad_url or settings.strict or url_problem(settings.database_url) is None:
            raise
        factory = functools.partial(UnusableStore, settings.database_url, str(exc))
        store = factory()
    pipeline = DeliveryPipeline(
        store, writers=settings.writers, custom_writers=settings.custom_writers,
        batch_size=settings.batch_size, flush_interval_s=settings.flush_interval_s,
        queue_size=settings.queue_size, spool_mode=settings.spool_mode,
        spool_dir=spool_dir_for(settings.spool_dir, settings.database_url, settings.supabase_url),
        store_factory=factory,  # a forked child opens its own store
        pricer=pricer)
    tracing = Tracing.from_config(
        resolve_otel(settings.environ, traces=settings.traces, service_name=settings.service_name),
        content_to_spans=settings.content_to_spans, redactor=redactor,
        pipeline_stats=pipeline_stats)
    return Runtime(settings, pipeline, tracing, redactor, pricer)


def install(new: Runtime, timeout_s: float = 5.0) -> Runtime | None:
    """Publish `new` and retire the previous runtime (flushed, then closed)."""
    global _runtime, _last_settings
    with _lock:
        old, _runtime = _runtime, new
        _last_settings = new.settings
        guard.set_strict(new.settings.strict)
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
            built = build(_last_settings or resolve_settings(), defer_bad_url=True)
            globals()["_runtime"] = built
            guard.set_strict(built.settings.strict)
        return _runtime  # type: ignore[return-value]


def note_unrecorded() -> None:
    """A decorated call ran unrecorded because no runtime could be built (see flush())."""
    global _unrecorded
    _unrecorded += 1


def peek() -> Runtime | None:
    return _runtime


def pipeline_stats() -> PipelineStats | None:
    """The live pipeline's health (None: no runtime, or a pipeline without stats). The tracing
    observables call this at each collection, so they follow configure()'s new pipelines."""
    rt = _runtime
    read: Callable[[], PipelineStats] | None = (
        getattr(rt.pipeline, "stats", None) if rt is not None else None)
    return None if read is None else read()


def swap(new: Runtime | None) -> Runtime | None:
    """Publish `new` without closing the previous runtime (testing.capture uses this)."""
    global _runtime
    with _lock:
        old, _runtime = _runtime, new
        guard.set_strict(None if new is None else new.settings.strict)
    return old


def configure(
    database_url: str | None = None,
    writers: Sequence[str | Writer] | None = None,
    service_name: str | None = None,
    traces: str | None = None,
    capture_content: bool | str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    strict: bool | None = None,
    **advanced: Any,
) -> Settings:
    """Configure (or reconfigure) the SDK. The previous pipeline is flushed and closed.

    Every argument left ``None`` comes from its environment variable, then its default (see
    docs/configuration.md). Advanced keywords: ``redact_patterns``, ``batch_size``,
    ``flush_interval_s``, ``queue_size``, ``spool_mode``, ``connect_timeout_s``,
    ``statement_timeout_s``, ``network_timeout_s``, ``prices`` (your price table: a mapping
    or a JSON file's path, see docs/accounting.md). Raises :class:`ConfigurationError`
    on a bad value.
    """
    settings = resolve_settings(
        database_url=database_url, writers=writers, service_name=service_name, traces=traces,
        capture_content=capture_content, spool_dir=spool_dir, strict=strict, **advanced,
    )
    install(build(settings))
    return settings


def flush(timeout_s: float = 5.0) -> bool:
    """Block until everything submitted so far is durably written, or `timeout_s` passes."""
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
    """Flush, then stop the pipeline and the SDK's own exporters, within `timeout_s`."""
    global _runtime
    with _lock:
        rt, _runtime = _runtime, None
        guard.set_strict(None)
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
