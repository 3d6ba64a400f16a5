"""A local Gemini API (``generateContent`` / ``streamGenerateContent``) for offline tests.

A real HTTP server on an ephemeral loopback port, so ``google.genai.Client(api_key="x",
http_options={"base_url": stub.base_url})`` (sync and ``client.aio``) sends real requests:

- ``POST /{version}/models/{model}:generateContent``: one ``GenerateContentResponse`` (JSON);
- ``POST /{version}/models/{model}:streamGenerateContent?alt=sse``: the same answer as
  server-sent events, one chunk per piece of text, each with the request's CUMULATIVE usage so
  far (as the API does), the last with the finish reason.

What it answers is deterministic. A request that declares functions and whose last turn is not
a function response gets a ``functionCall`` of the first function (arguments synthesized:
``{"city": "Paris"}``); otherwise text. A user text containing ``BLOCK_PROMPT`` gets a blocked
prompt (``promptFeedback.blockReason = SAFETY``, no candidates); ``UNSAFE_ANSWER`` a candidate
stopped with ``finishReason = SAFETY``. Usage is fixed per kind of answer (``TEXT_USAGE``,
``CALL_USAGE``), in the API's own definition: ``promptTokenCount`` includes the cached tokens
and ``candidatesTokenCount`` EXCLUDES the thoughts.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CALL_USAGE", "MODEL_VERSION", "TEXT_USAGE", "GeminiStub"]

#: The model version every answer reports (the model that answered).
MODEL_VERSION = "gemini-3.8-flash-001"
#: A text answer: 120 prompt tokens of which 80 cached, 20 answer + 15 thought tokens, and
#: 10 tokens of tool results fed back.
TEXT_USAGE: dict[str, int] = {
    "promptTokenCount": 120, "cachedContentTokenCount": 80, "candidatesTokenCount": 20,
    "thoughtsTokenCount": 15, "toolUsePromptTokenCount": 10, "totalTokenCount": 165,
}
#: A function call: 60 prompt tokens, 8 answer tokens, no thoughts.
CALL_USAGE: dict[str, int] = {
    "promptTokenCount": 60, "candidatesTokenCount": 8, "totalTokenCount": 68,
}
ANSWER = "Sunny in Paris, 21 degrees."

_ids = itertools.count(1)


class GeminiStub:
    """The stub. Use as a context manager; ``base_url`` is the client's ``base_url``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        #: (path, parsed JSON body) of every request, in arrival order.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        stub = self

        class Handler(_Handler):
            server_stub = stub

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="gemini-stub", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> GeminiStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((path, body))


def _user_text(body: dict[str, Any]) -> str:
    return " ".join(str(part.get("text", "")) for content in body.get("contents") or []
                    if content.get("role") == "user" for part in content.get("parts") or [])


def _functions(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for tool in body.get("tools") or []
            for f in tool.get("functionDeclarations") or []]


def _answered(body: dict[str, Any]) -> bool:
    contents = body.get("contents") or []
    last = contents[-1] if contents else {}
    return any("functionResponse" in part for part in last.get("parts") or [])


def plan(body: dict[str, Any]) -> dict[str, Any]:
    """The whole answer: candidates (or prompt feedback) and usage."""
    rid = f"resp-{next(_ids):04d}"
    text = _user_text(body)
    if "BLOCK_PROMPT" in text:
        return {"promptFeedback": {"blockReason": "SAFETY"}, "responseId": rid,
                "modelVersion": MODEL_VERSION,
                "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}
    functions = _functions(body)
    if "UNSAFE_ANSWER" in text:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": []},
                                     "finishReason": "SAFETY", "index": 0}
        usage: dict[str, int] = {"promptTokenCount": 14, "candidatesTokenCount": 0,
                                 "totalTokenCount": 14}
    elif functions and not _answered(body):
        call = {"name": functions[0]["name"], "args": {"city": "Paris"}}
        candidate = {"content": {"role": "model", "parts": [{"functionCall": call}]},
                     "finishReason": "STOP", "index": 0}
        usage = dict(CALL_USAGE)
    else:
        candidate = {"content": {"role": "model", "parts": [
            {"text": "Let me think.", "thought": True}, {"text": ANSWER}]},
            "finishReason": "STOP", "index": 0}
        usage = dict(TEXT_USAGE)
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL_VERSION,
            "responseId": rid}


def chunks(answer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`answer` as stream chunks: text in pieces, each with the usage so far (cumulative)."""
    candidates = answer.get("candidates")
    if not candidates:
        yield answer
        return
    candidate = candidates[0]
    parts = candidate["content"]["parts"]
    usage = answer["usageMetadata"]
    pieces: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part and not part.get("thought"):
            text = part["text"]
            pieces += [{"text": text[i:i + 9]} for i in range(0, len(text), 9)]
        else:
            pieces.append(part)
    pieces = pieces or [{"text": ""}]
    for i, piece in enumerate(pieces, start=1):
        last = i == len(pieces)
        so_far = {"promptTokenCount": usage["promptTokenCount"],
                  "candidatesTokenCount": usage["candidatesTokenCount"] * i // len(pieces),
                  **({k: v for k, v in usage.items()
                      if k not in ("promptTokenCount", "candidatesTokenCount")} if last else {})}
        so_far["totalTokenCount"] = (usage["totalTokenCount"] if last else
                                     so_far["promptTokenCount"]
                                     + so_far["candidatesTokenCount"])
        out: dict[str, Any] = {"content": {"role": "model", "parts": [piece]}, "index": 0}
        if last:
            out["finishReason"] = candidate["finishReason"]
        yield {"candidates": [out], "usageMetadata": so_far,
               "modelVersion": answer["modelVersion"], "responseId": answer["responseId"]}


class _Handler(BaseHTTPRequestHandler):
    server_stub: GeminiStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?", 1)[0]
        self.server_stub.record(path, body)
        answer = plan(body)
        if path.endswith(":generateContent"):
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif path.endswith(":streamGenerateContent"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for chunk in chunks(answer):
                    self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client hung up
                return
        else:
            data = json.dumps({"error": {"code": 404, "message": f"no route {path}",
                                         "status": "NOT_FOUND"}}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
