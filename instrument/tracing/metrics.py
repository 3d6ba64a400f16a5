"""Metrics per execution (GenAI invocation and tool conventions) and the pipeline's health.

Instruments (names in :mod:`instrument.tracing.semconv`), current conventions:

- ``gen_ai.invocation.duration`` histogram, ``s``: every execution, with
  ``gen_ai.operation.name``, ``gen_ai.invocation.is_nested``, the agent or workflow name,
  ``gen_ai.request.model`` when an adapter reported what was asked, ``error.type`` on failures;
- ``gen_ai.invoke_agent.inference_calls`` / ``.tool_calls`` histograms (``invoke_agent``
  only, when the record measured them: ``iterations`` / ``tool_calls``), by agent name;
- ``gen_ai.execute_tool.duration`` histogram, ``s``: each tool call that carries a duration;

with ``gen_ai/previous`` (or ``gen_ai/dup``) the previous ``gen_ai.client.token.usage``
(by ``gen_ai.token.type``) and ``gen_ai.client.operation.duration``. Always:

- ``instrument.executions`` counter by ``instrument.engine`` and ``instrument.status``;
- ``instrument.pipeline.*`` observables read at collection time from the pipeline-stats
  callable the runtime hands down (it reads the *live* pipeline, so the instruments, registered
  once per MeterProvider, follow ``configure()``): ``queue.depth``, ``spool.size`` (records),
  ``spool.usage`` (bytes), ``retries``, ``dropped``, ``quarantined`` (cumulative counters of the
  current pipeline) and ``write.latency`` (s, most recent store write);
- ``instrument.spans.dropped``: spans a full batch-processor queue dropped in this process
  (:mod:`instrument.tracing.drops`).

Bucket boundaries are the conventions' own. Attributes stay low-cardinality: agent, workflow
and tool names, never user, session or execution ids.
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
from instrument.tracing import drops
from instrument.tracing import semconv as sc
from instrument.tracing.fields import asked_model

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

    __slots__ = ("_duration", "_executions", "_inference_calls", "_invocation", "_tokens",
                 "_tool_calls", "_tool_duration", "conventions", "enabled")

    def __init__(self, meter_provider: metrics.MeterProvider,
                 pipeline_stats: PipelineStatsSource | None = None,
                 conventions: sc.Conventions = sc.CURRENT) -> None:
        #: False for an explicit no-op provider (no metrics exporter configured): recording
        #: would build attribute dicts for nothing, on the caller's thread
        self.enabled = not isinstance(meter_provider, metrics.NoOpMeterProvider)
        self.conventions = conventions
        meter = meter_provider.get_meter("logged-execution")
        self._invocation: metrics.Histogram | None = None
        self._inference_calls: metrics.Histogram | None = None
        self._tool_calls: metrics.Histogram | None = None
        self._tool_duration: metrics.Histogram | None = None
        self._tokens: metrics.Histogram | None = None
        self._duration: metrics.Histogram | None = None
        if conventions.current:
            self._invocation = meter.create_histogram(
                sc.METRIC_INVOCATION_DURATION, unit="s",
                description="End-to-end duration of one agent or workflow invocation.",
                explicit_bucket_boundaries_advisory=sc.INVOCATION_DURATION_BUCKETS)
            self._inference_calls = meter.create_histogram(
                sc.METRIC_INFERENCE_CALLS, unit="{inference_call}",
                description="Model calls an agent made during one invocation.",
                explicit_bucket_boundaries_advisory=sc.CALL_COUNT_BUCKETS)
            self._tool_calls = meter.create_histogram(
                sc.METRIC_TOOL_CALLS, unit="{tool_call}",
                description="Tool calls an agent made during one invocation.",
                explicit_bucket_boundaries_advisory=sc.CALL_COUNT_BUCKETS)
            self._tool_duration = meter.create_histogram(
                sc.METRIC_EXECUTE_TOOL_DURATION, unit="s",
                description="Duration of one tool execution.",
                explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)
        if conventions.previous:
            self._tokens = meter.create_histogram(
                sc.PREV_METRIC_TOKEN_USAGE, unit="{token}",
                description="Number of input and output tokens used per execution.",
                explicit_bucket_boundaries_advisory=sc.TOKEN_USAGE_BUCKETS)
            self._duration = meter.create_histogram(
                sc.PREV_METRIC_OPERATION_DURATION, unit="s",
                description="Duration of one agent or workflow execution.",
                explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)
        self._executions = meter.create_counter(
            sc.METRIC_EXECUTIONS, unit="{execution}",
            description="Executions by engine and status.",
        )
        _register_pipeline_observables(meter_provider, meter, pipeline_stats)

    def record(self, record: ExecutionRecord, operation: str, *, nested: bool,
               error_type: str | None) -> None:
        """One execution's points. `error_type` is None for a success."""
        if not self.enabled:
            return
        if self._invocation is not None:
            self._current(self._invocation, record, operation, nested, error_type)
        if self._duration is not None:
            self._previous(self._duration, record, operation, error_type)
        self._executions.add(1, {sc.ENGINE: record.engine, sc.STATUS: record.status})

    def _current(self, invocation: metrics.Histogram, record: ExecutionRecord, operation: str,
                 nested: bool, error_type: str | None) -> None:
        result = record.result
        attrs: dict[str, AttributeValue] = {sc.OPERATION_NAME: operation,
                                            sc.INVOCATION_IS_NESTED: nested}
        agent: dict[str, AttributeValue] = {}
        if record.agent_name is not None:
            agent[sc.AGENT_NAME] = record.agent_name
        if operation == sc.OP_INVOKE_WORKFLOW:
            attrs[sc.WORKFLOW_NAME] = record.name
        else:  # an agent, or the entry-point agent of a turn
            attrs.update(agent)
            if operation == sc.OP_INVOKE_AGENT:  # never on turns and workflows
                request_model = asked_model(result)
                if request_model is not None:
                    attrs[sc.REQUEST_MODEL] = request_model
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
        invocation.record(record.duration_ms / 1000, attrs)
        if operation == sc.OP_INVOKE_AGENT:
            if result.iterations is not None and self._inference_calls is not None:
                self._inference_calls.record(result.iterations, agent)
            if result.tool_calls is not None and self._tool_calls is not None:
                self._tool_calls.record(len(result.tool_calls), agent)
        if result.tool_calls and self._tool_duration is not None:
            for call in result.tool_calls:
                if call.duration_ms is None or call.duration_ms < 0:
                    continue
                tool: dict[str, AttributeValue] = {sc.TOOL_NAME: call.name, **agent}
                if call.success is False or call.error:
                    tool[sc.ERROR_TYPE] = sc.ERROR_OTHER
                self._tool_duration.record(call.duration_ms / 1000, tool)

    def _previous(self, duration: metrics.Histogram, record: ExecutionRecord, operation: str,
                  error_type: str | None) -> None:
        """The v1.41 instruments, exactly as they were."""
        result = record.result
        attrs: dict[str, AttributeValue] = {sc.OPERATION_NAME: operation}
        if result.provider:
            attrs[sc.PROVIDER_NAME] = result.provider
        if result.model:
            attrs[sc.REQUEST_MODEL] = result.model
            attrs[sc.RESPONSE_MODEL] = result.model
        tokens = result.tokens
        if tokens is not None and self._tokens is not None:
            if tokens.input_tokens is not None:
                self._tokens.record(tokens.input_tokens, {**attrs, sc.PREV_TOKEN_TYPE: "input"})
            if tokens.output_tokens is not None:
                self._tokens.record(tokens.output_tokens,
                                    {**attrs, sc.PREV_TOKEN_TYPE: "output"})
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
        duration.record(record.duration_ms / 1000, attrs)


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


def _dropped_spans(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(drops.dropped_spans())]


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
    meter.create_observable_counter(
        sc.METRIC_SPANS_DROPPED, [_dropped_spans], unit="{span}",
        description="Spans a full batch span processor queue dropped in this process (ours "
                    "or the application's provider).")
    meter.create_observable_gauge(
        sc.METRIC_PIPELINE_WRITE_LATENCY,
        [_stat(observed, "last_write_latency_ms", 0.001)],
        unit="s", description="Latency of the most recent store write.")
