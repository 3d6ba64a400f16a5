"""Record/context -> OpenTelemetry spans and metrics, following the GenAI conventions.

The decorator calls :meth:`Tracing.start` before the executor runs (identity and the
sampling-relevant attributes are known then) and :meth:`Tracing.finish` with the finished
record; both calls are guarded by the caller. The span is the conventions'
``gen_ai.invocation.internal`` type (kind INTERNAL), and its operation (:func:`operation`):

- ``invoke_workflow {gen_ai.workflow.name}`` for the ``orchestrator`` engine;
- ``handle_conversation_turn {gen_ai.agent.name}`` for a framework runner's entry point
  (:data:`TURN_ENGINES`: one ``Runner.run`` of the OpenAI Agents SDK, one ADK ``Runner`` run),
  where the framework steers the control flow and hands off between agents, unless it runs
  inside another execution of ours (the conventions never put a turn inside a turn, and the
  outer execution's operation is not known before it ends): then it is ``invoke_agent``;
- else ``invoke_agent {gen_ai.agent.name}`` (``invoke_agent`` when the application named no
  agent).

When the engine is auto-detected from the result, the operation and name are settled when the
execution ends. Tool calls that carry timings become ``execute_tool {gen_ai.tool.name}``
children with their real start and end times. Which names are emitted (current, previous, or
both) is :class:`~instrument.tracing.semconv.Conventions`. Span ending and metric recording
never do I/O: exporters run in the SDK's background threads.
"""

from __future__ import annotations

import contextlib
import traceback
import weakref
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util.types import AttributeValue

from instrument.context import ExecutionContext, current_execution
from instrument.record import ExecutionRecord, ExecutionResult, ToolCall, exception_text
from instrument.redact import Redactor
from instrument.tracing import drops
from instrument.tracing import semconv as sc
from instrument.tracing.content import ContentEncoder
from instrument.tracing.fields import asked_model, put_record_fields
from instrument.tracing.metrics import ExecutionMetrics, PipelineStatsSource
from instrument.tracing.otel_env import OtelConfig
from instrument.tracing.providers import Telemetry, build_telemetry, metrics_provider_for

__all__ = ["TURN_ENGINES", "WORKFLOW_ENGINES", "Tracing", "operation"]

#: Engines whose executions are workflows: the application defines the control flow.
WORKFLOW_ENGINES: frozenset[str] = frozenset({"orchestrator"})
#: Engines whose results come from a framework runner's entry point, where the framework
#: steers the control flow (handoffs between agents): the conventions'
#: ``handle_conversation_turn``. Other framework engines (LangGraph, CrewAI, LlamaIndex...)
#: cannot tell a swarm or a hierarchical crew from a single agent by their result.
TURN_ENGINES: frozenset[str] = frozenset({"openai_agents", "google_adk"})
#: characters kept from each end of a long stack trace (a huge exception message is in it)
_STACK_KEEP = 16_384
_SCOPE = "logged-execution"
#: the exception a budget check raises for a refused execution (instrument.BudgetExceeded)
_REFUSED_ERROR = "BudgetExceeded"


def operation(engine: str | None, *, nested: bool = False,
              conventions: sc.Conventions = sc.CURRENT) -> str:
    """``gen_ai.operation.name`` of an execution of `engine` (None: not known yet)."""
    if engine in WORKFLOW_ENGINES:
        return sc.OP_INVOKE_WORKFLOW
    if engine in TURN_ENGINES and not nested and conventions.current:
        return sc.OP_HANDLE_CONVERSATION_TURN
    return sc.OP_INVOKE_AGENT


class Tracing:
    """Builds one span (plus tool children) and one set of metric points per execution.

    ``Tracing()`` uses the global tracer provider (handy with ``instrument.testing.capture``)
    and records metrics only on a meter provider it is given (or on the global one after
    :func:`~instrument.tracing.providers.use_app_meter_provider`); tests pass an SDK
    ``TracerProvider`` with an ``InMemorySpanExporter`` and a ``MeterProvider`` with an
    ``InMemoryMetricReader``. :meth:`from_config` is what
    ``configure()`` uses. `pipeline_stats` feeds the pipeline-health observables (see
    :mod:`instrument.tracing.metrics`); without it they observe nothing. `conventions` chooses
    the current GenAI names, the previous ones, or both (``OTEL_SEMCONV_STABILITY_OPT_IN``).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        content_to_spans: bool = False,
        redactor: Redactor | None = None,
        attribute_value_limit: int | None = None,
        telemetry: Telemetry | None = None,
        record_spans: bool = True,
        pipeline_stats: PipelineStatsSource | None = None,
        conventions: sc.Conventions = sc.CURRENT,
    ) -> None:
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_SCOPE)
        #: False when nothing could ever see our spans (our own provider, no exporter): spans
        #: are then non-recording but keep real ids, so rows, current_execution() and
        #: propagation still carry a trace id, at a fraction of the cost.
        self.record_spans = record_spans
        self.conventions = conventions
        self.metrics = ExecutionMetrics(metrics_provider_for(meter_provider),
                                        pipeline_stats, conventions)
        drops.install()
        self.redactor = redactor or Redactor()
        #: the encoder, for records whose content may go on spans; `content` is the default
        #: policy, which a decorator's `capture_content=` overrides per call (see finish)
        self._encoder = ContentEncoder(self.redactor, attribute_value_limit)
        self.content: ContentEncoder | None = self._encoder if content_to_spans else None
        self.telemetry = telemetry
        #: spans started inside another execution of ours (gen_ai.invocation.is_nested), until
        #: finish() reads it for the metric; weak, so a call that never finishes leaks nothing
        self._nested: weakref.WeakKeyDictionary[Span, bool] = weakref.WeakKeyDictionary()

    @classmethod
    def from_config(cls, config: OtelConfig, *, content_to_spans: bool, redactor: Redactor,
                    pipeline_stats: PipelineStatsSource | None) -> Tracing | None:
        """Providers from the application or from `config` (``OTEL_*``, see
        :func:`~instrument.tracing.otel_env.resolve_otel`); None when OTEL_SDK_DISABLED."""
        telemetry = build_telemetry(config)
        if telemetry is None:
            return None
        return cls(
            telemetry.tracer_provider,
            telemetry.meter_provider or metrics.NoOpMeterProvider(),
            content_to_spans=content_to_spans,
            redactor=redactor,
            attribute_value_limit=config.attribute_value_limit,
            telemetry=telemetry,
            record_spans=telemetry.owned_tracer_provider is None or bool(config.traces.kinds),
            pipeline_stats=pipeline_stats,
            conventions=config.conventions,
        )

    # -- the two calls the decorator makes ----------------------------------------------------

    def start(self, ctx: ExecutionContext) -> Span:
        # Our context variable still holds the caller's execution here (the new one is entered
        # after start): set means this execution runs inside another one of ours.
        nested = current_execution() is not None
        span = self._start(ctx, nested)
        if nested:
            # a foreign span type that cannot be weakly referenced counts as not nested
            with contextlib.suppress(TypeError):
                self._nested[span] = True
        return span

    def _start(self, ctx: ExecutionContext, nested: bool) -> Span:
        if not self.record_spans:
            return _unrecorded_span()
        conv = self.conventions
        op = operation(ctx.engine, nested=nested, conventions=conv)
        attrs: dict[str, AttributeValue] = {
            sc.OPERATION_NAME: op,
            sc.EXECUTION_ID: str(ctx.execution_id),
            sc.EXECUTION_TYPE: ctx.execution_type,
        }
        if conv.current:
            attrs[sc.INVOCATION_IS_NESTED] = nested
            attrs[sc.NAME] = ctx.name
        if op == sc.OP_INVOKE_WORKFLOW:
            attrs[sc.WORKFLOW_NAME] = ctx.name
        if ctx.engine is not None:
            attrs[sc.ENGINE] = ctx.engine
        if ctx.agent_id is not None:
            if conv.current:
                attrs[sc.AGENT_ID] = ctx.agent_id
            if conv.previous:
                attrs[sc.PREV_AGENT_ID] = ctx.agent_id
        if ctx.agent_name is not None:
            attrs[sc.AGENT_NAME] = ctx.agent_name
        if ctx.session_id is not None:  # the application's own id, never one we make up
            attrs[sc.CONVERSATION_ID] = ctx.session_id
        if ctx.user_id is not None:
            attrs[sc.USER_ID] = ctx.user_id
        # Known before the executor runs once the decorator resolves them (samplers may use
        # them); read softly: an ExecutionContext without these fields has none to give.
        for key, field in _STARTED_IDENTITY:
            value = getattr(ctx, field, None)
            if value is not None:
                attrs[key] = value if isinstance(value, str) else str(value)
        return self.tracer.start_span(self._span_name(op, ctx.name, ctx.agent_name),
                                      kind=SpanKind.INTERNAL, attributes=attrs)

    def _span_name(self, op: str, name: str, agent_name: str | None) -> str:
        """``{op} {workflow.name}``, else ``{op} {agent.name}`` (the entry-point agent of a
        turn), else ``{op}``; the previous names alone fall back to the operation name
        (function qualname) for agents too."""
        if op == sc.OP_INVOKE_WORKFLOW:
            return f"{op} {name}"
        if agent_name is not None:
            return f"{op} {agent_name}"
        return op if self.conventions.current else f"{op} {name}"

    def finish(self, span: Span, record: ExecutionRecord, exc: BaseException | None, *,
               content: bool | None = None, started_engine: str | None = None) -> None:
        """End `span` with what `record` measured. `content` overrides the configured span
        content policy for this call (a decorator's ``capture_content=``); `started_engine`
        is the engine of the context :meth:`start` was given (its attribute is not set twice)."""
        encoder = self.content if content is None else (self._encoder if content else None)
        conv = self.conventions
        result = record.result
        error_type = _error_type(result, exc)
        nested = self._nested.pop(span, False) if self._nested else False
        op = operation(record.engine, nested=nested, conventions=conv)
        self.metrics.record(record, op, nested=nested, error_type=error_type)
        if not span.is_recording():
            span.end()
            return
        attrs = self._attributes(record, op, known_engine=started_engine, encoder=encoder)
        put_record_fields(attrs, record, getattr(span, "attributes", None))
        if op != operation(started_engine, nested=nested, conventions=conv):
            # the engine was auto-detected: the operation and the name follow it
            span.update_name(self._span_name(op, record.name, record.agent_name))
            attrs[sc.OPERATION_NAME] = op
            if op == sc.OP_INVOKE_WORKFLOW:
                attrs[sc.WORKFLOW_NAME] = record.name
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
            # The record's message is cut and masked already (once, by the decorator).
            message = (result.error.message if result.error is not None
                       else self.redactor.text(exception_text(exc)[:1024]) if exc is not None
                       else "")
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"[:1024]))
            if exc is not None:
                self._exception_events(span, exc, message)
        if len(attrs) <= 3:  # cheaper one by one: the SDK validates a dict as a whole first
            for key, value in attrs.items():
                span.set_attribute(key, value)
        else:
            span.set_attributes(attrs)
        self._tool_spans(span, record, encoder)
        span.end()

    def shutdown(self, timeout_s: float) -> bool:
        """Stop the exporters we own within `timeout_s`; the application's are left alone."""
        return True if self.telemetry is None else self.telemetry.shutdown(timeout_s)

    def force_flush(self, timeout_s: float) -> bool:
        return True if self.telemetry is None else self.telemetry.force_flush(timeout_s)

    # -- helpers ------------------------------------------------------------------------------

    def _attributes(self, record: ExecutionRecord, op: str, *, known_engine: str | None = None,
                    encoder: ContentEncoder | None = None) -> dict[str, AttributeValue]:
        """The attributes known only at the end (those set at start are not set again: every
        attribute costs a validation pass in the SDK, on the caller's thread)."""
        conv = self.conventions
        result = record.result
        extras = result.extras
        attrs: dict[str, AttributeValue] = {sc.STATUS: record.status}
        if record.engine != known_engine:
            attrs[sc.ENGINE] = record.engine
        if result.provider is not None:
            attrs[sc.PROVIDER_NAME] = result.provider
        model = result.model
        request_model = asked_model(result)
        # request = what was asked, response = what answered: each only when known, never one
        # standing in for the other. The conventions keep gen_ai.request.model off workflows
        # and turns (a turn may hand off between agents with different models).
        if request_model is not None and (op == sc.OP_INVOKE_AGENT or not conv.current):
            attrs[sc.REQUEST_MODEL] = request_model
        elif model is not None and not conv.current:
            attrs[sc.REQUEST_MODEL] = model  # the previous behaviour
        if model is not None:
            attrs[sc.RESPONSE_MODEL] = model
        tokens = result.tokens
        if tokens is not None:
            _put(attrs, sc.USAGE_INPUT_TOKENS, tokens.input_tokens)
            _put(attrs, sc.USAGE_OUTPUT_TOKENS, tokens.output_tokens)
            if conv.current:  # the breakdown belongs on inference spans: ours, namespaced
                _put(attrs, sc.USAGE_CACHE_READ_INPUT_TOKENS, tokens.cached_input_tokens)
                _put(attrs, sc.USAGE_CACHE_WRITE_INPUT_TOKENS, tokens.cache_write_input_tokens)
                _put(attrs, sc.USAGE_REASONING_OUTPUT_TOKENS, tokens.reasoning_tokens)
            if conv.previous:
                _put(attrs, sc.PREV_USAGE_CACHE_READ_INPUT_TOKENS, tokens.cached_input_tokens)
                _put(attrs, sc.PREV_USAGE_CACHE_CREATION_INPUT_TOKENS,
                     tokens.cache_write_input_tokens)
                _put(attrs, sc.PREV_USAGE_REASONING_OUTPUT_TOKENS, tokens.reasoning_tokens)
        if result.iterations is not None:
            attrs[sc.ITERATIONS] = result.iterations
        if result.steps is not None:
            _put(attrs, sc.STEPS_COMPLETED, result.steps.completed)
            _put(attrs, sc.STEPS_FAILED, result.steps.failed)
            _put(attrs, sc.STEPS_SKIPPED, result.steps.skipped)
        if result.tool_calls is not None:
            attrs[sc.TOOL_CALL_COUNT] = len(result.tool_calls)
        if extras:
            score = extras.get("intensity_score", extras.get("ais_score"))
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                attrs[sc.INTENSITY_SCORE] = float(score)
        if encoder is not None:
            _put(attrs, sc.INPUT_MESSAGES, encoder.input_messages(result))
            _put(attrs, sc.OUTPUT_MESSAGES, encoder.output_messages(result))
            untimed = [c for c in result.tool_calls or () if _window(c) is None]
            _put(attrs, sc.TOOL_ARGUMENTS_UNTIMED, encoder.tool_arguments_list(result, untimed))
        return attrs

    def _exception_events(self, span: Span, exc: BaseException, message: str) -> None:
        """Like ``span.record_exception`` but with the message and stack trace redacted: the
        conventions' ``gen_ai.client.operation.exception`` and/or the previous ``exception``.

        `message` is the record's (cut and masked once, by the decorator). The stack trace
        holds the message again: only its first and last :data:`_STACK_KEEP` characters are
        kept, and masked.
        """
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if len(stack) > 2 * _STACK_KEEP:
            stack = (f"{stack[:_STACK_KEEP]}\u2026[truncated {len(stack) - 2 * _STACK_KEEP} "
                     f"chars]{stack[-_STACK_KEEP:]}")
        cls = type(exc)
        attrs: dict[str, AttributeValue] = {
            sc.EXCEPTION_TYPE: f"{cls.__module__}.{cls.__qualname__}"
            if cls.__module__ != "builtins" else cls.__qualname__,
            sc.EXCEPTION_MESSAGE: message,
            sc.EXCEPTION_STACKTRACE: self.redactor.text(stack),
        }
        if self.conventions.current:
            span.add_event(sc.EVENT_EXCEPTION, attrs)
        if self.conventions.previous:
            span.add_event(sc.PREV_EVENT_EXCEPTION, {**attrs, sc.PREV_EXCEPTION_ESCAPED: True})

    def _tool_spans(self, parent: Span, record: ExecutionRecord,
                    encoder: ContentEncoder | None) -> None:
        calls = record.result.tool_calls
        if not calls:
            return
        parent_ctx = trace.set_span_in_context(parent)
        conv = self.conventions
        for call in calls:
            window = _window(call)
            if window is None:
                continue
            start_ns, end_ns = window
            attrs: dict[str, AttributeValue] = {
                sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL,
                sc.TOOL_NAME: call.name,
                sc.EXECUTION_ID: str(record.execution_id),
            }
            if conv.previous:  # assumed before; the record does not say which type a tool is
                attrs[sc.TOOL_TYPE] = "function"
            if conv.current:
                _put(attrs, sc.AGENT_NAME, record.agent_name)
                _put(attrs, sc.CONVERSATION_ID, record.session_id)
            _put(attrs, sc.TOOL_CALL_ID, call.call_id)
            _put(attrs, sc.TOOL_PLUGIN, call.plugin)
            _put(attrs, sc.TOOL_ACTION, call.action)
            _put(attrs, sc.TOOL_ITEMS_RETURNED, call.items_returned)
            if encoder is not None:
                _put(attrs, sc.TOOL_CALL_ARGUMENTS, encoder.tool_arguments(record.result, call))
            child = self.tracer.start_span(
                f"{sc.OP_EXECUTE_TOOL} {call.name}", context=parent_ctx, kind=SpanKind.INTERNAL,
                attributes=attrs, start_time=start_ns,
            )
            if call.success is False or call.error:
                child.set_attribute(sc.ERROR_TYPE, sc.ERROR_OTHER)
                child.set_status(Status(StatusCode.ERROR, self.redactor.text(call.error or "")))
            child.end(end_time=end_ns)


def _error_type(result: ExecutionResult, exc: BaseException | None) -> str | None:
    """``error.type`` of a failed or refused execution (None for a success, and for a paused
    one, which is waiting, not failing): the exception's class name, else the engine's error
    code, else ``BudgetExceeded`` for a refusal, else ``_OTHER``."""
    if exc is not None:
        return type(exc).__qualname__ or sc.ERROR_OTHER
    if result.refused:
        return result.error.type if result.error is not None else _REFUSED_ERROR
    if result.success:
        return None
    return (result.error.type or sc.ERROR_OTHER) if result.error is not None else sc.ERROR_OTHER


_ids = RandomIdGenerator()
#: (attribute, ExecutionContext field) set at start when the context carries them
_STARTED_IDENTITY = ((sc.TENANT_ID, "tenant_id"), (sc.OWNER_ID, "owner_id"),
                     (sc.PARENT_EXECUTION_ID, "parent_execution_id"))


def _unrecorded_span() -> Span:
    """A non-recording span with fresh ids, continuing the caller's trace when there is one."""
    parent = trace.get_current_span().get_span_context()
    if parent.is_valid:
        return NonRecordingSpan(SpanContext(parent.trace_id, _ids.generate_span_id(), False,
                                            parent.trace_flags, parent.trace_state))
    return NonRecordingSpan(SpanContext(_ids.generate_trace_id(), _ids.generate_span_id(), False,
                                        TraceFlags(TraceFlags.SAMPLED)))


def _window(call: ToolCall) -> tuple[int, int] | None:
    """(start, end) in ns since the epoch, when the tool call carries its timings."""
    if call.started_at is None or call.duration_ms is None or call.duration_ms < 0:
        return None
    start: datetime = call.started_at
    end = start + timedelta(milliseconds=call.duration_ms)
    return _ns(start), _ns(end)


def _ns(moment: datetime) -> int:
    # Integer arithmetic: float timestamps lose microseconds at today's epoch values.
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo) if moment.tzinfo else (
        moment - datetime(1970, 1, 1))
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _put(attrs: dict[str, AttributeValue], key: str, value: Any) -> None:
    if value is not None:
        attrs[key] = value

