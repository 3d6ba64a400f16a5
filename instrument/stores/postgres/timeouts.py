"""Bounding every wait on PostgreSQL: libpq's socket options and a client-side deadline.

Three bounds, each configurable (docs/configuration.md):

* **connect** (``connect_timeout``): opening a connection, TLS and login included;
* **statement** (``SET LOCAL statement_timeout`` inside the batch's transaction, so nothing of
  it outlives the transaction on a pooled or PgBouncer connection): the server cancels a batch
  that runs too long, e.g. one waiting for a lock;
* **network**: TCP keepalives and ``tcp_user_timeout`` let the kernel drop a connection whose
  peer stopped acknowledging, and :class:`Deadline` drops one that stops *answering*: a silent
  partition behind a proxy or a NAT still acknowledges every packet, so no socket option sees
  it. The deadline is the statement timeout plus the network timeout; past it the socket is
  shut down, the blocked call fails at once, and the pool discards the connection.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["Deadline", "libpq_options"]


def libpq_options(url_params: Mapping[str, object], *, connect_timeout_s: float,
                  network_timeout_s: float) -> dict[str, Any]:
    """libpq connection options for the timeouts; a value the URL sets itself wins."""
    network = max(1.0, network_timeout_s)
    options: dict[str, Any] = {
        # libpq counts whole seconds (and treats 1 as 2)
        "connect_timeout": max(2, round(connect_timeout_s + 0.49)),
        "keepalives": 1,
        # idle + interval * count is about the network timeout
        "keepalives_idle": max(1, round(network / 2)),
        "keepalives_interval": max(1, round(network / 6)),
        "keepalives_count": 3,
        # unacknowledged data older than this closes the connection (Linux)
        "tcp_user_timeout": int(network * 1000),
    }
    return {k: v for k, v in options.items() if k not in url_params}


class Deadline:
    """Shuts a connection's socket down if the work in the ``with`` block outlasts `seconds`.

    The socket is shut down, not closed: the file descriptor stays libpq's, the blocked
    ``recv``/``poll`` returns at once, psycopg raises ``OperationalError`` and marks the
    connection broken, and the pool replaces it. :attr:`expired` says whether it fired.
    Arming costs a heap push (one watchdog thread serves every deadline of the process).
    """

    __slots__ = ("_conn", "_lock", "_seconds", "expired")

    def __init__(self, conn: psycopg.Connection[Any], seconds: float | None) -> None:
        self._conn: psycopg.Connection[Any] | None = conn
        self._seconds = seconds
        self._lock = threading.Lock()
        self.expired = False

    def __enter__(self) -> Deadline:
        if self._seconds is not None:
            _WATCHDOG.arm(time.monotonic() + self._seconds, self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:  # after this, fire() can no longer touch the connection
            self._conn = None

    def fire(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            self.expired = True
            # broad: a connection already closed or broken (any error) has nothing left to drop
            with contextlib.suppress(Exception), \
                    socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread firing due deadlines in time order (a Timer thread per batch costs
    about as much as a small batch). Disarmed deadlines are skipped when they come due."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the thread does not survive a fork

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, at: float, deadline: Deadline) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="instrument-pg-deadlines")
                self._thread.start()
            heapq.heappush(self._heap, (at, next(self._seq), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        cond, heap = self._cond, self._heap
        while True:
            with cond:
                while not heap or heap[0][0] > time.monotonic():
                    cond.wait(heap[0][0] - time.monotonic() if heap else None)
                due = heapq.heappop(heap)[2]
            due.fire()


_WATCHDOG = _Watchdog()
