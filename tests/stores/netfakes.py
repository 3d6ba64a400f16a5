"""Loopback network stand-ins: a TCP proxy to simulate outages, a server that refuses logins."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `stop()` drops the listener and every connection.

    `partition()` is a silent network partition: every connection stays open, new ones are
    accepted, and nothing is forwarded either way (no RST, no FIN; the kernel still
    acknowledges what the client sends). `heal()` ends it: new connections are forwarded
    again; the partitioned ones stay dead, as after a real partition that outlived them.
    """

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        #: Frontend (client -> server) PostgreSQL messages seen, by type byte. Needs an
        #: unencrypted connection (sslmode=disable). 'Q' or 'S' (Sync) = one round trip.
        self.messages: Counter[str] = Counter()
        self._open = threading.Event()  # cleared while partitioned
        self._open.set()
        self._held: list[socket.socket] = []

    def partition(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        self._open.set()
        for c in held:  # what arrived during the partition was never forwarded: drop it
            with contextlib.suppress(OSError):
                c.close()

    def start(self) -> TcpProxy:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(16)
        self.port = lst.getsockname()[1]
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()
        return self

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            if not self._open.is_set():  # partitioned: accept, then never answer
                with self._lock:
                    self._held.append(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            upstream.settimeout(None)
            threading.Thread(target=self._pipe, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, frontend: bool = False) -> None:
        buf, started = b"", False
        try:
            while data := src.recv(65536):
                if not self._open.is_set():  # partitioned: swallow, then stay silent for good
                    self._open.wait()
                    return
                if frontend:
                    buf += data
                    while True:  # split the stream into messages and count their types
                        if not started:
                            if len(buf) < 4:
                                break
                            size = struct.unpack("!i", buf[:4])[0]
                            if len(buf) < size:
                                break
                            buf, started = buf[size:], True
                            continue
                        if len(buf) < 5:
                            break
                        size = struct.unpack("!i", buf[1:5])[0]
                        if len(buf) < 1 + size:
                            break
                        with self._lock:
                            self.messages[chr(buf[0])] += 1
                        buf = buf[1 + size:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if self._open.is_set():  # a partitioned pair stays open (silent) until stop()
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the blocked accept() (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self._open.set()  # wakes partitioned relays, which then end
        with self._lock:
            conns, self._conns = self._conns, []
            conns += self._held
            self._held = []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


class RefusingPostgres:
    """Speaks just enough of the PostgreSQL protocol to fail every login with SQLSTATE 28P01."""

    def __init__(self) -> None:
        self._lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lst.bind(("127.0.0.1", 0))
        self._lst.listen(8)
        self.port = self._lst.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        for _ in range(50):  # bounded
            try:
                conn, _ = self._lst.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                self._handle(conn)

    @staticmethod
    def _handle(conn: socket.socket) -> None:
        for _ in range(4):
            head = conn.recv(8)
            if len(head) < 8:
                return
            length, code = struct.unpack("!ii", head)
            if length > 8:
                conn.recv(length - 8)
            if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest: "not supported"
                conn.sendall(b"N")
                continue
            fields = b"".join(
                k + v.encode() + b"\0" for k, v in (
                    (b"S", "FATAL"), (b"V", "FATAL"), (b"C", "28P01"),
                    (b"M", 'password authentication failed for user "app"')))
            body = fields + b"\0"
            conn.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)
            return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._lst.shutdown(socket.SHUT_RDWR)
        self._lst.close()
