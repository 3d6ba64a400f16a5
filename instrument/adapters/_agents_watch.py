"""Following a streamed Agents SDK run (``RunResultStreaming``) to its end, in place.

``Runner.run_streamed`` returns while the run goes on in a background task
(``result.run_loop_task``). The record is finished from that task's done-callback, so it is
written whether the caller consumed ``stream_events()`` to the end, stopped halfway, cancelled
the run or let the event loop shut down. Nothing on the result is replaced: the caller keeps
the identical object, and nothing it will read (the event queue, the guardrail queue) is
consumed here.

Failures are reported as the exception the caller's ``stream_events()`` raises: the stored
exception, the task's exception, a tripped input guardrail, or max turns exceeded (the SDK
detects the last two in the consumer, after the task ended normally). A ``weakref.finalize``
covers a task destroyed unfinished (its loop closed without cancelling it); it holds only the
run's usage object, never the result.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from instrument.record import ExecutionResult, TokenUsage

__all__ = ["watch_streamed_run"]

_log = logging.getLogger(__name__)

Done = Callable[[ExecutionResult | BaseException], None]


def watch_streamed_run(result: Any, done: Done, normalize: Callable[[Any], ExecutionResult],
                       usage_of: Callable[[object], TokenUsage | None]) -> bool:
    """Call ``done`` once when the streamed run ends. False when the result has no run task."""
    task = getattr(result, "run_loop_task", None)
    if task is None or not hasattr(task, "add_done_callback"):
        return False
    once = _Once(done)
    usage = getattr(getattr(result, "context_wrapper", None), "usage", None)

    def on_task_done(finished: Any) -> None:
        try:
            outcome = _outcome(result, finished, normalize)
        except Exception as exc:  # a run we cannot read must still produce a record
            _log.warning("could not normalize a streamed agents run", exc_info=True)
            outcome = ExecutionResult(success=True, extras={
                "normalization_error": f"{type(exc).__name__}: {exc}"[:2000]})
        once.fire(outcome)

    if task.done():  # finished before it was returned: its loop may already be closed
        on_task_done(task)
        return True
    weakref.finalize(result, once.fire_lazy, lambda: ExecutionResult(
        success=True, tokens=usage_of(usage),
        extras={"stream_closed_early": True, "run_task_lost": True}))
    task.add_done_callback(on_task_done)
    return True


class _Once:
    """Calls ``done`` at most once, from whichever path gets there first."""

    __slots__ = ("_done", "_fired", "_lock")

    def __init__(self, done: Done) -> None:
        self._done = done
        self._fired = False
        self._lock = threading.Lock()

    def fire(self, outcome: ExecutionResult | BaseException) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
        self._done(outcome)

    def fire_lazy(self, make: Callable[[], ExecutionResult]) -> None:
        with self._lock:
            if self._fired:
                return
        self.fire(make())


def _outcome(result: Any, task: Any, normalize: Callable[[Any], ExecutionResult]
             ) -> ExecutionResult | BaseException:
    """What ended the run, read without consuming anything the caller will read."""
    stored = getattr(result, "_stored_exception", None)
    if isinstance(stored, BaseException):
        return stored
    cancelled = bool(task.cancelled())
    if not cancelled:
        exc = task.exception()
        if exc is not None:
            return exc  # type: ignore[no-any-return]
    tripped = getattr(result, "_triggered_input_guardrail_result", None) or next(
        (r for r in getattr(result, "input_guardrail_results", None) or []
         if getattr(getattr(r, "output", None), "tripwire_triggered", False)), None)
    if tripped is not None:
        from agents.exceptions import InputGuardrailTripwireTriggered

        return InputGuardrailTripwireTriggered(tripped)
    max_turns = getattr(result, "max_turns", None)
    turn = getattr(result, "current_turn", 0)
    if (isinstance(max_turns, int) and isinstance(turn, int) and turn > max_turns
            and not getattr(result, "_max_turns_handled", False)):
        from agents.exceptions import MaxTurnsExceeded

        return MaxTurnsExceeded(f"Max turns ({max_turns}) exceeded")
    normalized = normalize(result)
    cancel_mode = getattr(result, "_cancel_mode", "none")
    if cancelled or cancel_mode not in ("none", None):
        extras = dict(normalized.extras)
        extras["stream_closed_early"] = True
        if isinstance(cancel_mode, str) and cancel_mode != "none":
            extras["cancel_mode"] = cancel_mode
        normalized = normalized.model_copy(update={"extras": extras})
    return normalized
