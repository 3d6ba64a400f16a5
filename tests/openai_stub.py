"""A local OpenAI-compatible HTTP server for offline tests and examples.

A real HTTP server on an ephemeral loopback port (stdlib ``ThreadingHTTPServer``), so the real
``openai`` client, sync and async, streaming and not, talks to it through ``base_url``:

- ``POST /v1/chat/completions``: a ``ChatCompletion``, or an SSE stream of
  ``ChatCompletionChunk`` items ending with a usage chunk when
  ``stream_options.include_usage`` is set;
- ``POST /v1/responses``: a ``Response``, or an SSE stream of Responses events ending with
  ``response.completed`` (which carries the usage).

What it answers is deterministic. When the request offers tools and carries no tool result yet,
it calls the first tool (arguments synthesized from the tool's JSON schema); otherwise it answers
with text. A user message containing ``ALWAYS_TOOLS`` makes it call a tool every time (to reach
a max-iterations limit); ``STREAM_ERROR`` sends an error object after the first chat chunk
(the client raises ``APIError`` mid-stream); ``SLOW_STREAM`` stretches a stream over many
small chunks. Tests can also queue exact replies with :meth:`StubServer.enqueue`. Token usage
is fixed per kind of reply (``TEXT_USAGE``, ``TOOL_USAGE``) so records can be asserted exactly.

The reply names the model the request asked for, as given, unless ``answer_models`` maps it to
another name: ``StubServer(answer_models={"gpt-4o-mini": "gpt-4o-mini-2025-01-01"})`` answers
like the real API, with the dated snapshot that served a plain request.

Run it by hand: ``python -m tests.openai_stub`` prints the base URL and serves until Ctrl-C.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TEXT_USAGE", "TOOL_USAGE", "StubServer", "Usage", "running_stub"]


@dataclass(frozen=True)
class Usage:
    prompt: int
    completion: int
    cached: int
    reasoning: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def chat(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.total,
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }

    def responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.total,
        }


#: Usage of a reply that answers with text.
TEXT_USAGE = Usage(prompt=30, completion=12, cached=10, reasoning=4)
#: Usage of a reply that calls a tool.
TOOL_USAGE = Usage(prompt=20, completion=8, cached=0, reasoning=2)

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def _synth_args(schema: dict[str, Any] | None) -> dict[str, Any]:
    """Arguments that satisfy a tool's JSON schema well enough for a test tool."""
    out: dict[str, Any] = {}
    props = (schema or {}).get("properties") or {}
    for name, spec in props.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if "enum" in spec:
            out[name] = spec["enum"][0]
        elif kind in ("integer", "number"):
            out[name] = 2
        elif kind == "boolean":
            out[name] = True
        elif kind == "array":
            out[name] = []
        elif kind == "object":
            out[name] = {}
        else:
            out[name] = "Paris"
    return out


@dataclass
class _Plan:
    """What to answer: text, or one call of a named tool."""

    text: str | None = None
    tool_name: str | None = None
    tool_args: dict[str, Any] | None = None
    usage: Usage = TEXT_USAGE
    slow: bool = False
    fail_midstream: bool = False


class StubServer:
    """The stub. Use as a context manager; ``base_url`` ends in ``/v1``."""

    def __init__(self, host: str = "127.0.0.1", *,
                 answer_models: Mapping[str, str] | None = None) -> None:
        #: requested model -> the model the reply says answered (others: as requested)
        self.answer_models: dict[str, str] = dict(answer_models or {})
        self._queue: deque[tuple[str, _Plan]] = deque()
        self._lock = threading.Lock()
        #: (path, parsed JSON body) of every request, in arrival order.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        stub = self

        class Handler(_Handler):
            server_stub = stub

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="openai-stub", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, endpoint: str, *, text: str | None = None, tool: str | None = None,
                args: dict[str, Any] | None = None, usage: Usage | None = None) -> None:
        """Queue the next reply of ``endpoint`` ("chat" or "responses")."""
        plan = _Plan(text=text, tool_name=tool, tool_args=args,
                     usage=usage or (TOOL_USAGE if tool else TEXT_USAGE))
        with self._lock:
            self._queue.append((endpoint, plan))

    def _take(self, endpoint: str) -> _Plan | None:
        with self._lock:
            for i, (ep, plan) in enumerate(self._queue):
                if ep == endpoint:
                    del self._queue[i]
                    return plan
        return None

    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((path, body))

    # -- deciding what to answer ------------------------------------------------------------

    def plan_chat(self, body: dict[str, Any]) -> _Plan:
        queued = self._take("chat")
        messages = body.get("messages") or []
        user_text = " ".join(str(m.get("content")) for m in messages if m.get("role") == "user")
        tools = [t.get("function", {}) for t in body.get("tools") or []]
        has_tool_result = any(m.get("role") == "tool" for m in messages)
        return self._plan(queued, user_text, tools, has_tool_result, len(messages))

    def plan_responses(self, body: dict[str, Any]) -> _Plan:
        queued = self._take("responses")
        raw_input = body.get("input")
        items = raw_input if isinstance(raw_input, list) else [
            {"role": "user", "content": raw_input}]
        user_text = " ".join(str(i.get("content")) for i in items
                             if isinstance(i, dict) and i.get("role") == "user")
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        has_tool_result = any(isinstance(i, dict) and i.get("type") == "function_call_output"
                              for i in items)
        return self._plan(queued, user_text, tools, has_tool_result, len(items))

    @staticmethod
    def _plan(queued: _Plan | None, user_text: str, tools: list[dict[str, Any]],
              has_tool_result: bool, n_inputs: int) -> _Plan:
        slow = "SLOW_STREAM" in user_text
        fail = "STREAM_ERROR" in user_text
        if queued is not None:
            queued.slow, queued.fail_midstream = slow, fail
            return queued
        if tools and (not has_tool_result or "ALWAYS_TOOLS" in user_text):
            tool = tools[0]
            return _Plan(tool_name=str(tool.get("name")),
                         tool_args=_synth_args(tool.get("parameters")), usage=TOOL_USAGE,
                         slow=slow, fail_midstream=fail)
        return _Plan(text=f"Stub answer after {n_inputs} input item(s).", usage=TEXT_USAGE,
                     slow=slow, fail_midstream=fail)


def _chunks(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)]


class _Handler(BaseHTTPRequestHandler):
    server_stub: StubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model",
                                                         "created": 0, "owned_by": "stub"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request"}})
            return
        stub = self.server_stub
        path = self.path.split("?", 1)[0].rstrip("/")
        stub._record(path, body)
        answered = stub.answer_models.get(str(body.get("model")))
        if answered is not None:  # the reply names what answered; the record keeps the request
            body = {**body, "model": answered}
        if path.endswith("/chat/completions"):
            plan = stub.plan_chat(body)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._sse(_chat_stream(body, plan, include_usage), plan.slow)
            else:
                self._json(200, _chat_completion(body, plan))
        elif path.endswith("/responses"):
            plan = stub.plan_responses(body)
            if body.get("stream"):
                self._sse(_responses_stream(body, plan), plan.slow)
            else:
                self._json(200, _response(body, plan))
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", _next_id("req"))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[tuple[str | None, dict[str, Any] | str]], slow: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for event, data in events:
                payload = data if isinstance(data, str) else json.dumps(data)
                head = f"event: {event}\n" if event else ""
                self.wfile.write(f"{head}data: {payload}\n\n".encode())
                self.wfile.flush()
                if slow:
                    time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up mid-stream
            return


# -- chat completions -----------------------------------------------------------------------


def _chat_completion(body: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None}
    finish = "stop"
    if plan.tool_name is not None:
        message["content"] = None
        message["tool_calls"] = [{
            "id": _next_id("call"), "type": "function",
            "function": {"name": plan.tool_name, "arguments": json.dumps(plan.tool_args or {})},
        }]
        finish = "tool_calls"
    return {
        "id": _next_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "stub-model"), "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": None}],
        "usage": plan.usage.chat(),
    }


def _chat_stream(body: dict[str, Any], plan: _Plan, include_usage: bool
                 ) -> Iterator[tuple[str | None, dict[str, Any] | str]]:
    cid = _next_id("chatcmpl")
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model", "stub-model"), "system_fingerprint": "fp_stub"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                     "logprobs": None}]}

    yield None, chunk({"role": "assistant", "content": ""})
    if plan.fail_midstream:  # what an upstream failure looks like on the wire
        yield None, {"error": {"message": "stub: upstream failed mid-stream",
                               "type": "server_error", "code": "upstream_error"}}
        return
    if plan.tool_name is not None:
        args = json.dumps(plan.tool_args or {})
        yield None, chunk({"tool_calls": [{"index": 0, "id": _next_id("call"),
                                           "type": "function",
                                           "function": {"name": plan.tool_name,
                                                        "arguments": ""}}]})
        for part in _chunks(args, 3):
            yield None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        yield None, chunk({}, "tool_calls")
    else:
        text = plan.text or ""
        for part in _chunks(text, 40 if plan.slow else 3):
            yield None, chunk({"content": part})
        yield None, chunk({}, "stop")
    if include_usage:
        yield None, {**base, "choices": [], "usage": plan.usage.chat()}
    yield None, "[DONE]"


# -- responses --------------------------------------------------------------------------------


def _output_items(plan: _Plan) -> list[dict[str, Any]]:
    if plan.tool_name is not None:
        return [{"type": "function_call", "id": _next_id("fc"), "call_id": _next_id("call"),
                 "name": plan.tool_name, "arguments": json.dumps(plan.tool_args or {}),
                 "status": "completed"}]
    return [{"type": "message", "id": _next_id("msg"), "role": "assistant",
             "status": "completed",
             "content": [{"type": "output_text", "text": plan.text or "", "annotations": []}]}]


def _response(body: dict[str, Any], plan: _Plan, *, output: list[dict[str, Any]] | None = None,
              status: str = "completed", rid: str | None = None) -> dict[str, Any]:
    return {
        "id": rid or _next_id("resp"), "object": "response", "created_at": int(time.time()),
        "status": status, "model": body.get("model", "stub-model"),
        "output": _output_items(plan) if output is None else output,
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": body.get("tools") or [],
        "temperature": 1.0, "top_p": 1.0, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "metadata": {},
        "usage": plan.usage.responses() if status == "completed" else None,
    }


def _responses_stream(body: dict[str, Any], plan: _Plan
                      ) -> Iterator[tuple[str | None, dict[str, Any] | str]]:
    seq = itertools.count()
    rid = _next_id("resp")
    items = _output_items(plan)
    pending = _response(body, plan, output=[], status="in_progress", rid=rid)
    yield "response.created", {"type": "response.created", "sequence_number": next(seq),
                               "response": pending}
    yield "response.in_progress", {"type": "response.in_progress",
                                   "sequence_number": next(seq), "response": pending}
    for index, item in enumerate(items):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            started = {**item, "status": "in_progress", "content": []}
            yield "response.output_item.added", {"type": "response.output_item.added",
                                                 "sequence_number": next(seq),
                                                 "output_index": index, "item": started}
            part = {"type": "output_text", "text": "", "annotations": []}
            yield "response.content_part.added", {
                "type": "response.content_part.added", "sequence_number": next(seq),
                "item_id": item["id"], "output_index": index, "content_index": 0, "part": part}
            for piece in _chunks(text, 40 if plan.slow else 3):
                yield "response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": next(seq),
                    "item_id": item["id"], "output_index": index, "content_index": 0,
                    "delta": piece, "logprobs": []}
            yield "response.output_text.done", {
                "type": "response.output_text.done", "sequence_number": next(seq),
                "item_id": item["id"], "output_index": index, "content_index": 0,
                "text": text, "logprobs": []}
            yield "response.content_part.done", {
                "type": "response.content_part.done", "sequence_number": next(seq),
                "item_id": item["id"], "output_index": index, "content_index": 0,
                "part": {**part, "text": text}}
        else:
            started = {**item, "status": "in_progress", "arguments": ""}
            yield "response.output_item.added", {"type": "response.output_item.added",
                                                 "sequence_number": next(seq),
                                                 "output_index": index, "item": started}
            for piece in _chunks(item["arguments"], 3):
                yield "response.function_call_arguments.delta", {
                    "type": "response.function_call_arguments.delta",
                    "sequence_number": next(seq), "item_id": item["id"],
                    "output_index": index, "delta": piece}
            yield "response.function_call_arguments.done", {
                "type": "response.function_call_arguments.done", "sequence_number": next(seq),
                "item_id": item["id"], "output_index": index, "name": item["name"],
                "arguments": item["arguments"]}
        yield "response.output_item.done", {"type": "response.output_item.done",
                                            "sequence_number": next(seq),
                                            "output_index": index, "item": item}
    done = _response(body, plan, output=items, rid=rid)
    yield "response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                 "response": done}


def running_stub() -> StubServer:
    """A started stub (the caller stops it)."""
    return StubServer().start()


if __name__ == "__main__":  # pragma: no cover - manual use
    with StubServer() as server:
        print(f"OPENAI_BASE_URL={server.base_url}  (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
