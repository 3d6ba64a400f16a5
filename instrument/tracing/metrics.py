"""Metrics per execution (GenAI client conventions) and the pipeline's health as observables.

Instruments (names in :mod:`instrument.tracing.semconv`):

- ``gen_ai.client.token.usage`` histogram, ``{token}``, one point per measured token type
  (``gen_ai.token.type`` = ``input`` / ``output``), the conventions' bucket boundaries;
- ``gen_ai.client.operation.duration`` histogram, ``s``, with ``error.type`` on failures;
- ``instrument.executions`` counter by ``instrument.engine`` and ``instrument.status``;
- ``instrument.pipeline.*`` observables read at collection time from the pipeline-stats
  callable the runtime hands down (it reads the *live* pipeline, so the instruments, registered
  once per MeterProvider, follow ``configure()``): ``queue.depth``, ``spool.size`` (records),
  ``spool.usage`` (bytes), ``retries``, ``dropped``, ``quarantined`` (cumulative counters of the
  current pipeline) and ``write.latency`` (s, most recent store write).

Attributes stay low-cardinality: no agent, user or execution ids on metrics.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.util.types import AttributeValue

from instrument.record import ExecutionRecord
from instrument.tracing import semconv as sc

__all__ = ["ExecutionMetrics", "PipelineHealth", "PipelineStatsSource"]

_log = logging.getLogger(__name__)


class PipelineHealth(Protocol):
    """The delivery-health fields the observables read (``pipeline.worker.PipelineStats``)."""

    @property
    def queue_depth(self) -> int: ...
    @property
    def spool_records(self) -> int: ...
    @property
    def spool_bytes(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def quarantined(self) -> int: ...
    @property
    def last_write_latency_ms(self) -> float | None: ...


#: Called at each collection: the live pipeline's health, or None when there is none.
PipelineStatsSource = Callable[[], PipelineHealth | None]


class _Observed:
    """The pipeline-health instruments of one MeterProvider and the source they read."""

    __slots__ = ("source",)

    def __init__(self, source: PipelineStatsSource | None) -> None:
        self.source = source

    def read(self) -> PipelineHealth | None:
        source = self.source
        return None if source is None else source()


# Observable instruments are registered once per MeterProvider; a later runtime on the same
# provider hands its source to the registered callbacks instead of registering them again.
_observed: weakref.WeakKeyDictionary[metrics.MeterProvider, _Observed] = (
    weakref.WeakKeyDictionary())
_observed_lock = threading.Lock()


class ExecutionMetrics:
    """The synchronous instruments, created once per runtime from one meter."""

    __slots__ = ("_duration", "_executions", "_tokens", "enabled")

    def __init__(self, meter_provider: metrics.MeterProvider,
                 pipeline_stats: PipelineStatsSource | None = None) -> None:
        #: False for an explicit no-op provider (no metrics exporter configured): recording
        #: would build attribute dicts for nothing, on the caller's thread
        self.enabled = not isinstance(meter_provider, metrics.NoOpMeterProvider)
        meter = meter_provider.get_meter("logged-execution")
        self._tokens = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE, unit="{token}",
            description="Number of input and output tokens used per execution.",
            explicit_bucket_boundaries_advisory=sc.TOKEN_USAGE_BUCKETS,
        )
        self._duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION, unit="s",
            description="Duration of one agent or workflow execution.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self._executions = meter.create_counter(
            sc.METRIC_EXECUTIONS, unit="{execution}",
            description="Executions by engine and status.",
        )
        _register_pipeline_observables(meter_provider, meter, pipeline_stats)

    def record(self, record: ExecutionRecord, operation: str) -> None:
        if not self.enabled:
            return
        result = record.result
        attrs: dict[str, AttributeValue] = {sc.OPERATION_NAME: operation}
        if result.provider:
            attrs[sc.PROVIDER_NAME] = result.provider
        if result.model:
            attrs[sc.REQUEST_MODEL] = result.model
            attrs[sc.RESPONSE_MODEL] = result.model
        tokens = result.tokens
        if tokens is not None:
            if tokens.input_tokens is not None:
                self._tokens.record(tokens.input_tokens, {**attrs, sc.TOKEN_TYPE: "input"})
            if tokens.output_tokens is not None:
                self._tokens.record(tokens.output_tokens, {**attrs, sc.TOKEN_TYPE: "output"})
        if not result.success:
            attrs[sc.ERROR_TYPE] = result.error.type if result.error else sc.ERROR_OTHER
        self._duration.record(record.duration_ms / 1000, attrs)
        self._executions.add(1, {sc.ENGINE: record.engine, sc.STATUS: record.status})


def _stat(observed: _Observed, name: str, scale: float = 1.0
          ) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """A callback observing one numeric field of the pipeline's stats (times `scale`)."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        try:
            stats = observed.read()
            value = None if stats is None else getattr(stats, name, None)
        except Exception:  # a broken stats() must not break metric collection
            _log.debug("pipeline stats() failed", exc_info=True)
            return []
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [Observation(value if scale == 1.0 else value * scale)]
        return []

    return callback


def _register_pipeline_observables(provider: metrics.MeterProvider, meter: metrics.Meter,
                                   source: PipelineStatsSource | None) -> None:
    """Register the observables once per provider; a later non-None `source` replaces the
    one they read (each runtime's source reads the live pipeline, so any of them will do)."""
    with _observed_lock:
        try:
            known = _observed.get(provider)
        except TypeError:  # not weakly referenceable: register with every runtime instead
            _log.debug("meter provider %r is not weakly referenceable", provider)
            known = None
        if known is not None:
            if source is not None:
                known.source = source
            return
        observed = _Observed(source)
        with contextlib.suppress(TypeError):  # not weakly referenceable (logged above)
            _observed[provider] = observed
    meter.create_observable_gauge(
        sc.METRIC_PIPELINE_QUEUE_DEPTH, [_stat(observed, "queue_depth")], unit="{record}",
        description="Records waiting in memory for delivery.")
    meter.create_observable_gauge(
        sc.METRIC_PIPELINE_SPOOL_SIZE, [_stat(observed, "spool_records")],
        unit="{record}", description="Records waiting in the durable spool.")
    meter.create_observable_gauge(
        sc.METRIC_PIPELINE_SPOOL_USAGE, [_stat(observed, "spool_bytes")], unit="By",
        description="Disk space used by the durable spool.")
    meter.create_observable_counter(
        sc.METRIC_PIPELINE_RETRIES, [_stat(observed, "retries")], unit="{retry}",
        description="Store write attempts retried after a transient failure.")
    meter.create_observable_counter(
        sc.METRIC_PIPELINE_DROPPED, [_stat(observed, "dropped")], unit="{record}",
        description="Records dropped (queue and spool full).")
    meter.create_observable_counter(
        sc.METRIC_PIPELINE_QUARANTINED, [_stat(observed, "quarantined")], unit="{record}",
        description="Records the store rejected, set aside for inspection.")
    meter.create_observable_gauge(
        sc.METRIC_PIPELINE_WRITE_LATENCY,
        [_stat(observed, "last_write_latency_ms", 0.001)],
        unit="s", description="Latency of the most recent store write.")
