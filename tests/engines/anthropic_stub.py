"""A local Anthropic Messages API for offline tests: the real ``anthropic`` client talks to it.

A real HTTP server on an ephemeral loopback port (stdlib ``ThreadingHTTPServer``), so
``anthropic.Anthropic(base_url=stub.base_url)`` (sync or async) sends real requests:

- ``POST /v1/messages``: a ``Message``, or, with ``"stream": true``, the server-sent events the
  API sends (``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``,
  ``message_delta`` with the cumulative output usage and the stop reason, ``message_stop``,
  and a ``ping``).

What it answers is deterministic. A request that offers tools and carries no ``tool_result``
yet gets a ``tool_use`` of the first tool; otherwise a text answer. Tests queue exact replies
with :meth:`AnthropicStub.enqueue` (blocks, stop reason, usage, the model that answers). A
reply with ``fail_midstream`` sends an ``error`` event after the first block starts (the
client raises ``APIStatusError`` mid-stream). The model that answers is the requested one
with a date suffix, as the API resolves aliases (``claude-sonnet-4-5`` answers as
``claude-sonnet-4-5-20261201``), so "asked" and "answered" can be told apart.

Usage follows the API's definition: ``input_tokens`` EXCLUDES cache reads and cache writes.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TEXT_USAGE", "TOOL_USAGE", "AnthropicStub", "Reply", "answered_model"]

#: Usage of a text answer: 25 fresh input tokens, 100 read from cache, 40 written to cache;
#: 30 output tokens of which 12 were thinking.
TEXT_USAGE: dict[str, Any] = {
    "input_tokens": 25, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 40,
    "output_tokens": 30, "output_tokens_details": {"thinking_tokens": 12},
    "service_tier": "priority",
}
#: Usage of a tool call: no cache, no thinking reported.
TOOL_USAGE: dict[str, Any] = {
    "input_tokens": 50, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
    "output_tokens": 9, "service_tier": "standard",
}

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def answered_model(requested: str) -> str:
    """The model id the API reports for a requested alias."""
    return requested if requested[-8:].isdigit() else f"{requested}-20261201"


@dataclass
class Reply:
    """One queued answer: its content blocks (API JSON), stop reason, usage and model."""

    blocks: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    usage: dict[str, Any] = field(default_factory=lambda: dict(TEXT_USAGE))
    model: str | None = None
    stop_details: dict[str, Any] | None = None
    fail_midstream: bool = False


class AnthropicStub:
    """The stub. Use as a context manager; ``base_url`` is what the client takes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        #: (path, parsed JSON body) of every request, in arrival order.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        stub = self

        class Handler(_Handler):
            server_stub = stub

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="anthropic-stub", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> AnthropicStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def enqueue(self, reply: Reply) -> None:
        with self._lock:
            self._queue.append(reply)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    def plan(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(("/v1/messages", body))
            if self._queue:
                return self._queue.popleft()
        tools = body.get("tools") or []
        answered = any(isinstance(block, dict) and block.get("type") == "tool_result"
                       for message in body.get("messages") or []
                       for block in (message.get("content")
                                     if isinstance(message.get("content"), list) else []))
        if tools and not answered:
            tool = tools[0]
            return Reply([{"type": "tool_use", "id": _next_id("toolu"), "name": tool["name"],
                           "input": {"city": "Paris"}}], "tool_use", dict(TOOL_USAGE))
        return Reply([{"type": "text", "text": "Stub answer from Claude."}])


def message_json(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The ``Message`` the API returns for `reply`."""
    return {
        "id": _next_id("msg"), "type": "message", "role": "assistant",
        "model": reply.model or answered_model(str(body.get("model", "claude-stub"))),
        "content": reply.blocks, "stop_reason": reply.stop_reason, "stop_sequence": None,
        "stop_details": reply.stop_details, "usage": reply.usage,
    }


def stream_events(body: dict[str, Any], reply: Reply
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
    """The server-sent events of a streamed `reply`, as the API orders them."""
    whole = message_json(body, reply)
    usage = reply.usage
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens_details"}
    start_usage["output_tokens"] = 1  # the API reports a placeholder until message_delta
    yield "message_start", {"type": "message_start", "message": {
        **whole, "content": [], "stop_reason": None, "stop_details": None,
        "usage": start_usage}}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(reply.blocks):
        kind = block["type"]
        if kind == "text":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}}
            if reply.fail_midstream:
                yield "error", {"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded"}}
                return
            text = block["text"]
            for i in range(0, len(text), 8):
                yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta",
                                                        "text": text[i:i + 8]}}
        elif kind == "thinking":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "thinking", "thinking": "",
                                                            "signature": ""}}
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "thinking_delta",
                                                    "thinking": block["thinking"]}}
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "signature_delta",
                                                    "signature": block["signature"]}}
        elif kind in ("tool_use", "server_tool_use"):
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {**block, "input": {}}}
            args = json.dumps(block["input"])
            for i in range(0, len(args), 10):
                yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "input_json_delta",
                                                        "partial_json": args[i:i + 10]}}
        else:  # a server tool's result block arrives whole
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": block}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    delta_usage = {k: usage[k] for k in ("input_tokens", "cache_read_input_tokens",
                                         "cache_creation_input_tokens", "output_tokens",
                                         "output_tokens_details") if k in usage}
    yield "message_delta", {"type": "message_delta", "usage": delta_usage, "delta": {
        "stop_reason": reply.stop_reason, "stop_sequence": None,
        "stop_details": reply.stop_details}}
    yield "message_stop", {"type": "message_stop"}


class _Handler(BaseHTTPRequestHandler):
    server_stub: AnthropicStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.split("?", 1)[0].rstrip("/") != "/v1/messages":
            self._json(404, {"type": "error", "error": {"type": "not_found_error",
                                                        "message": f"no route {self.path}"}})
            return
        reply = self.server_stub.plan(body)
        if not body.get("stream"):
            self._json(200, message_json(body, reply))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", _next_id("req"))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for event, data in stream_events(body, reply):
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client hung up mid-stream
            return

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", _next_id("req"))
        self.end_headers()
        self.wfile.write(data)
