"""Fork safety: a forked child gets a fresh, lazily started pipeline; the parent's is untouched.

``os.register_at_fork`` hooks hold every live pipeline's submit lock across ``fork()`` (so the
child never inherits a half-written spool append), then, in the child, make each pipeline forget
its parent's thread, queue, spool files and connections. Nothing is created in the child until
its first ``submit()``: a child that execs right away, or never records anything, leaves no
trace.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

from instrument.pipeline.orphans import Adopter
from instrument.pipeline.segments import SegmentWriter
from instrument.stores.base import Store

__all__ = ["ForkSafety", "track"]

_log = logging.getLogger(__name__)

#: Objects a forked child inherited (store connections, fds): kept alive, never closed, so the
#: child never tears down its parent's sockets.
_ABANDONED: list[object] = []
_LIVE: weakref.WeakSet[ForkSafety] = weakref.WeakSet()
_FORK_HELD: list[ForkSafety] = []
#: serializes the lazy start of forked children's pipelines (replaced in every child)
_START_LOCK: list[threading.Lock] = [threading.Lock()]


class _InitState(Protocol):
    def __call__(self, store: Store, *, start: bool = True) -> None: ...


class ForkSafety:
    """The fork side of :class:`~instrument.pipeline.worker.DeliveryPipeline` (a mixin).

    The pipeline owns the state below and ``_init_state``, which (re)builds it.
    """

    _store: Store
    _store_factory: Callable[[], Store] | None
    _lock: threading.Lock  # the submit lock, held across fork()
    _writer: SegmentWriter | None
    _adopter: Adopter | None
    _closed: bool
    #: a forked child's copy, not started yet: the first submit() starts it
    _forked: bool
    _init_state: _InitState
    shutdown: Callable[[float], bool]

    def _after_fork_in_child(self) -> None:
        """Forget the parent's thread, queue, files and connections; start again lazily."""
        _ABANDONED.append(self._store)
        for held in (self._writer, self._adopter):
            if held is not None:
                held.abandon_after_fork()
        self._init_state(self._store, start=False)
        if self._closed:
            return
        self._forked = True
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            # multiprocessing children leave through os._exit (no atexit) and clear the
            # finalizer registry after this hook runs; its after-fork callbacks run later
            mp_util.register_after_fork(self, ForkSafety._flush_at_mp_exit)

    def _start_in_child(self) -> None:
        with _START_LOCK[0]:
            if not self._forked:
                return
            store = self._store_factory() if self._store_factory is not None else self._store
            self._init_state(store)
            self._forked = False

    def _flush_at_mp_exit(self) -> None:
        from multiprocessing import util  # only multiprocessing children get here

        util.Finalize(self, self.shutdown, args=(5.0,), exitpriority=50)


def track(pipeline: ForkSafety) -> None:
    """Include `pipeline` in the fork hooks (held weakly: a dropped pipeline leaves them)."""
    _LIVE.add(pipeline)


def _before_fork() -> None:
    _FORK_HELD[:] = list(_LIVE)
    for p in _FORK_HELD:
        p._lock.acquire()


def _after_fork_in_parent() -> None:
    for p in _FORK_HELD:
        p._lock.release()
    _FORK_HELD.clear()


def _after_fork_in_child() -> None:
    _START_LOCK[0] = threading.Lock()
    held, _FORK_HELD[:] = list(_FORK_HELD), []
    for p in held:
        try:
            p._after_fork_in_child()
        except Exception:  # a child without a pipeline still runs the user's code
            _log.exception("logged-execution: could not restart delivery in a forked child")


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
