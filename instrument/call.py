"""One call in flight: its identity and span (the pre-step), and its single finish (the
record, the span's end, the non-blocking submit). Everything here runs guarded."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from instrument import budget_check, runtime
from instrument.adapters import registry
from instrument.adapters.protocol import Adapter, StreamedItems
from instrument.context import _AMBIENT, _CURRENT, ExecutionContext
from instrument.errors import BudgetExceeded
from instrument.guard import internal_error
from instrument.labels import merge_metadata, merge_tags
from instrument.plan import PREBUILT, Plan, unrecognized
from instrument.record import (
    MAX_MESSAGE_CHARS,
    MAX_RESPONSE_CHARS,
    SCHEMA_VERSION,
    ErrorInfo,
    ExecutionRecord,
    ExecutionResult,
    bounded_key,
    bounded_text,
    construct,
    exception_text,
    failed_result,
    unmeasured_result,
)

__all__ = ["CLOSED", "RAISED", "RETURNED", "Call", "begin"]

RETURNED, RAISED, CLOSED = "returned", "raised", "closed"
_getrandbits = random.getrandbits  # reseeded after fork by the random module itself


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version nibble and variant bits
_V4_SET = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant
_UUID, _SAFE_UNKNOWN, _setattr = uuid.UUID, uuid.SafeUUID.unknown, object.__setattr__


def _new_execution_id() -> uuid.UUID:
    """A random (version 4) UUID without a syscall per call (uuid4() reads os.urandom).

    Equal to ``uuid.UUID(int=..., version=4)`` but without its argument parsing, which is
    most of the cost on the call path (a test pins the equivalence).
    """
    u = _UUID.__new__(_UUID)
    _setattr(u, "int", (_getrandbits(128) & _V4_CLEAR) | _V4_SET)
    _setattr(u, "is_safe", _SAFE_UNKNOWN)
    return u


class Call:
    """The state of one execution between its pre-step and its single finish."""

    __slots__ = ("ctx", "done", "labels", "plan", "rt", "span", "span_ctx", "t0", "wall0")

    def __init__(
        self, plan: Plan, rt: runtime.Runtime, instance: Any, args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.plan = plan
        self.rt = rt
        self.done = False
        values: list[str | None] = (
            [None, None, None, None, None, None, None] if plan.no_fields
            else [f(instance, args, kwargs, plan) for f in plan.fields])
        #: (tags, metadata, resumed execution id): None when the call has none of them
        labels: tuple[Any, Any, Any] | None = (
            None if plan.no_labels
            else (plan.labels[0](instance, args, kwargs, plan),
                  plan.labels[1](instance, args, kwargs, plan),
                  plan.labels[2](instance, args, kwargs, plan)))
        amb = _AMBIENT.get()
        if amb is not None:
            values[0] = values[0] if values[0] is not None else amb.agent_id
            values[1] = values[1] if values[1] is not None else amb.user_id
            values[2] = values[2] if values[2] is not None else amb.agent_name
            values[3] = values[3] if values[3] is not None else amb.session_id
            values[4] = values[4] if values[4] is not None else amb.execution_type
            values[5] = values[5] if values[5] is not None else amb.tenant_id
            values[6] = values[6] if values[6] is not None else amb.owner_id
            if amb.tags is not None or amb.metadata is not None:
                tags, metadata, resumes = labels or (None, None, None)
                labels = (merge_tags(amb.tags, tags),  # the decorator's tags are added,
                          merge_metadata(amb.metadata, metadata, self._warn),  # its keys win
                          resumes)
        self.labels = labels
        parent = _CURRENT.get()  # started inside another execution: its child
        if parent is not None:  # on behalf of the same user, tenant and conversation
            values[1] = values[1] if values[1] is not None else parent.user_id
            values[3] = values[3] if values[3] is not None else parent.session_id
            values[5] = values[5] if values[5] is not None else parent.tenant_id
        agent_name = values[2]
        name = plan.name or agent_name or plan.qualname
        execution_id = _new_execution_id()
        self.span: trace.Span | None = None
        self.span_ctx: otel_context.Context | None = None
        tracing = rt.tracing
        ctx = ExecutionContext(execution_id, name, plan.engine, values[0], values[1], agent_name,
                               values[3], values[4] or "manual", None, None, values[5],
                               values[6], parent.execution_id if parent is not None else None)
        if tracing is not None:
            try:
                span = tracing.start(ctx)
                sc = span.get_span_context()
                if sc.is_valid:  # ctx is not visible to anyone yet: fill in its ids
                    _setattr(ctx, "trace_id", format(sc.trace_id, "032x"))
                    _setattr(ctx, "span_id", format(sc.span_id, "016x"))
                self.span = span
                self.span_ctx = trace.set_span_in_context(span)
            except Exception as exc:  # telemetry must not break the host; see guard
                internal_error("span start failed", exc)
        self.ctx = ctx
        self.wall0 = time.time_ns()
        self.t0 = time.perf_counter_ns()

    def _warn(self, message: str) -> None:
        warned = self.plan.warned
        if "metadata:merge" not in warned:
            warned.add("metadata:merge")
            internal_error(f"@logged_execution on {self.plan.qualname}: {message} (warned once "
                           "per function)", strict_raise=False)

    def refuse(self, refusal: BudgetExceeded) -> None:
        """A budget refused the run: record it (status ``refused``) and end its span, as any
        finish does; the executor never runs."""
        if self.done:
            return
        self.done = True
        try:
            error = construct(ErrorInfo, {"type": "BudgetExceeded",
                                          "message": bounded_text(exception_text(refusal),
                                                                  MAX_MESSAGE_CHARS)})
            result = unmeasured_result(False, error=error).model_copy(update={"refused": True})
            self._emit(None, result, refusal, 0.0)
        except Exception as err:  # never break the host; strict mode re-raises
            internal_error("recording a refused execution failed", err)

    # Context is attached only while executor code runs, never across a yield.
    def enter(self) -> tuple[Any, Any]:
        tok = _CURRENT.set(self.ctx)
        otok = otel_context.attach(self.span_ctx) if self.span_ctx is not None else None
        return tok, otok

    def exit(self, tokens: tuple[Any, Any]) -> None:
        tok, otok = tokens
        if otok is not None:
            otel_context.detach(otok)
        _CURRENT.reset(tok)

    def finish(self, outcome: object, exc: BaseException | None, how: str) -> None:
        """Build the record, end the span, submit. Runs once; guarded."""
        if self.done:
            return
        self.done = True
        duration_ms = (time.perf_counter_ns() - self.t0) / 1e6
        try:
            if exc is None and how != CLOSED:
                adapter, result = self._normalize(outcome)
                watch = getattr(adapter, "watch", None)
                if (watch is not None and adapter is not None
                        and type(outcome) is not StreamedItems):
                    self.done = False
                    if watch(outcome, self._deferred(adapter)):
                        return
                    self.done = True
            elif exc is None:  # a stream closed or abandoned by its consumer
                adapter, result = self._normalize(outcome)
                extras = dict(result.extras)
                extras["stream_closed_early"] = True
                result = result.model_copy(update={"extras": extras})
            else:
                adapter, result = self._failed(exc)
            self._emit(adapter, result, exc, duration_ms)
        except Exception as err:  # never break the host; strict mode re-raises
            internal_error("building the execution record failed", err)

    def _failed(self, exc: BaseException, known: Adapter | None = None
                ) -> tuple[Adapter | None, ExecutionResult]:
        """The record of an executor that raised: what its engine measured before failing
        (an adapter's optional ``normalize_error``), else nothing but the error itself."""
        # Cut first, then mask what is kept: a 50 MB message costs a slice, not a scan.
        message = bounded_text(exception_text(exc), MAX_MESSAGE_CHARS)
        error = construct(ErrorInfo, {"type": bounded_key(type(exc).__name__),
                                      "message": self.rt.redactor.text(message)})
        plan = self.plan
        known = known or plan.adapter
        candidates = (known,) if known is not None else registry.error_adapters()
        for adapter in candidates:
            recover = getattr(adapter, "normalize_error", None)
            if recover is None:
                continue
            try:
                partial = recover(exc)
            except Exception as err:  # recovery is best effort; the failure is recorded anyway
                internal_error(f"adapter {adapter.name!r} could not read the failed run",
                               err, strict_raise=False)
                continue
            if partial is not None:
                return adapter, partial.model_copy(
                    update={"success": False, "error": error, "response": None})
        return known, failed_result(error.type, error.message)

    def _deferred(self, adapter: Adapter) -> Callable[[ExecutionResult | BaseException], None]:
        def done(outcome: ExecutionResult | BaseException) -> None:
            if self.done:
                return
            self.done = True
            duration_ms = (time.perf_counter_ns() - self.t0) / 1e6
            try:
                if isinstance(outcome, BaseException):
                    found, result = self._failed(outcome, adapter)
                    self._emit(found, result, outcome, duration_ms)
                else:
                    self._emit(adapter, outcome, None, duration_ms)
            except Exception as err:  # never break the host; strict mode re-raises
                internal_error("building a deferred execution record failed", err)

        return done

    def _normalize(self, outcome: object) -> tuple[Adapter | None, ExecutionResult]:
        plan = self.plan
        adapter = plan.adapter
        try:
            if adapter is None:
                adapter = plan.detect(outcome)
                if adapter is None:
                    return None, unrecognized(plan, outcome)
            return adapter, adapter.normalize(outcome)
        except Exception as err:  # a misbehaving result must not break the host
            internal_error(
                f"adapter {getattr(adapter, 'name', None)!r} could not normalize the result "
                f"of {plan.qualname}",
                err,
                strict_raise=False,
            )
            message = self.rt.redactor.text(
                bounded_text(f"{type(err).__name__}: {exception_text(err)}", 2000))
            return adapter, unmeasured_result(True, extras={"normalization_error": message})

    def _emit(
        self, adapter: Adapter | None, result: ExecutionResult, exc: BaseException | None,
        duration_ms: float,
    ) -> None:
        rt = self.rt
        plan = self.plan
        # Content (response text, tool arguments) policy for this call: the decorator's
        # capture_content= overrides the configured per-sink policy for its executor.
        capture = plan.capture_content
        to_spans = rt.settings.content_to_spans if capture is None else capture
        to_db = rt.settings.content_to_db if capture is None else capture
        update: dict[str, Any] = {}  # one copy of the result at most, and none when clean
        redactor = rt.redactor
        if result.response is not None:
            if not (to_spans or to_db):
                update["response"] = None
            else:  # masked once, here, for every sink: the span, the spool, stores, writers
                response = redactor.text(bounded_text(result.response, MAX_RESPONSE_CHARS))
                if response is not result.response:  # both steps return their input when clean
                    update["response"] = response
        if result.input is not None:  # the prompt: the same policy and masking as the answer
            if not (to_spans or to_db):
                update["input"] = None
            else:
                text = redactor.text(bounded_text(result.input, MAX_RESPONSE_CHARS))
                if text is not result.input:
                    update["input"] = text
        if result.extras and id(result) not in PREBUILT:  # tool arguments live here too
            extras = redactor.json(result.extras)
            if extras is not result.extras:  # the redactor returns its input when clean
                update["extras"] = extras
        if result.error is not None and exc is None:
            error = result.error
            message = redactor.text(bounded_text(error.message, MAX_MESSAGE_CHARS))
            error_type = bounded_key(error.type)
            if message is not error.message or error_type is not error.type:
                update["error"] = construct(ErrorInfo, {"type": error_type, "message": message})
        if result.tool_calls and any(c.error for c in result.tool_calls):  # persisted too
            update["tool_calls"] = [
                c.model_copy(update={
                    "error": redactor.text(bounded_text(c.error, MAX_MESSAGE_CHARS))})
                if c.error else c
                for c in result.tool_calls]
        if update:
            result = result.model_copy(update=update)
        ctx = self.ctx
        started = datetime.fromtimestamp(self.wall0 / 1e9, UTC)
        labels = self.labels
        tags = metadata = resumes = None
        if labels is not None:
            tags, metadata, resumes = labels
            if metadata is not None:  # the caller's data: secrets masked like extras
                metadata = redactor.json(metadata)
        record = construct(ExecutionRecord, {
            "schema_version": SCHEMA_VERSION,
            "execution_id": ctx.execution_id,
            "agent_id": ctx.agent_id,
            "user_id": ctx.user_id,
            "agent_name": ctx.agent_name,
            "session_id": ctx.session_id,
            "tenant_id": ctx.tenant_id,
            "owner_id": ctx.owner_id,
            "parent_execution_id": ctx.parent_execution_id,
            "resumes_execution_id": resumes,
            "tags": tags,
            "metadata": metadata,
            "execution_type": ctx.execution_type,
            "engine": adapter.name if adapter is not None else (plan.engine or "unknown"),
            "name": ctx.name,
            "started_at": started,
            "completed_at": started + timedelta(milliseconds=duration_ms),
            "duration_ms": duration_ms,
            "trace_id": ctx.trace_id,
            "span_id": ctx.span_id,
            "result": result,
            "writers": plan.writers,
        })
        span = self.span
        if span is not None and rt.tracing is not None:
            try:
                rt.tracing.finish(span, record, exc, content=capture,
                                  started_engine=plan.engine)
            except Exception as err:  # telemetry must not break the host
                internal_error("span finish failed", err)
        if not to_db and (result.response is not None or result.input is not None):
            # The span may show the text; the spool, the stores and custom writers must not.
            record = construct(ExecutionRecord, {
                **record.__dict__,
                "result": result.model_copy(update={"response": None, "input": None})})
        rt.pipeline.submit(record)
        if budget_check.ACTIVE:  # this process's own spend counts at once
            budget_check.count(rt, record)


def begin(plan: Plan, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> Call | None:
    """The guarded pre-step. `None` means: run the executor untraced (disabled or broken)."""
    try:
        rt = runtime.current()
        if rt.settings.disabled:
            return None
        if not plan.writers_checked:
            plan.check_writers(rt.settings.writers, rt.settings.custom_writers)
    except Exception as err:  # a broken configuration must never stop the executor running
        runtime.note_unrecorded()  # flush() reports it as the configuration error it is
        internal_error("preparing the execution failed", err)
        return None
    try:
        call = Call(plan, rt, instance, args, kwargs)
    except Exception as err:  # our own bug: the executor still runs, unrecorded, and we say so
        internal_error(f"preparing the record of a call to {plan.qualname} failed; that call "
                       "is not recorded", err)
        return None
    if plan.budgets is None:
        return call
    try:
        refusal = budget_check.check(rt, plan.budgets, call.ctx, plan.warned)
    except Exception as err:  # a bug in the check must not stop the run; strict mode raises
        internal_error(f"checking the budget of a call to {plan.qualname} failed; the run "
                       "goes ahead unchecked", err)
        return call
    if refusal is None:
        return call
    call.refuse(refusal)
    raise refusal  # the caller asked for the limit: the executor does not run
