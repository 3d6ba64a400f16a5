"""The ``google_genai`` adapter: ``google-genai`` ``GenerateContentResponse``, whole or streamed.

Understands:

- a ``GenerateContentResponse`` an executor returned (``client.models.generate_content``,
  ``client.aio.models.generate_content``, ``chat.send_message``);
- the response chunks a generator executor yielded from ``generate_content_stream`` (sync or
  ``client.aio``), as :class:`~instrument.adapters.protocol.StreamedItems`. A returned stream is
  a plain Python generator that cannot be told apart from any other by its type: yield its
  chunks instead.

What the record gets, and how the SDK's numbers are converted (see
:mod:`instrument.adapters._google` for the token definitions):

- tokens: input = ``prompt_token_count`` (which includes the cached part) +
  ``tool_use_prompt_token_count``; output = ``candidates_token_count`` +
  ``thoughts_token_count`` (Gemini's candidates count excludes thinking); cached input and
  reasoning as reported; no cache writes (Gemini reports none).
- streams: every chunk carries the CUMULATIVE usage of its request, so the last chunk of each
  request counts, never their sum. A request ends at the chunk with a finish reason (or when
  the response id changes); the requests of one stream (automatic function calling makes
  several) are added up.
- automatic function calling (a Python function passed as a tool): the SDK runs the tools and
  sends more requests, but the returned response keeps ONLY THE LAST request's usage. The
  record keeps what is known: that usage, with ``extras["usage_covers"] = "last_request"``,
  and ``iterations`` = every request made (from ``automatic_function_calling_history``). The
  history also gives the tool calls and whether each succeeded (a function response with an
  ``error`` key failed; only the error itself is kept, never the arguments), and the prompt
  (``input``: the first user turn's text). A streamed run has the usage of every request.
  ``Chat.send_message`` runs the same loop but returns the last response without that
  history (the chat keeps it): such a record shows only the last request.
- ``model`` is ``model_version``, the model that answered; what was asked is not in the
  response (``request_model`` is ``None``). Provider ``gcp.gen_ai``: the response does not
  say whether the Gemini API or Vertex AI answered.
- failures that come back as values: a blocked prompt (``prompt_feedback.block_reason``: the
  error type is ``PROMPT_BLOCKED_<reason>``) and any finish reason but ``STOP`` (``SAFETY``,
  ``MAX_TOKENS``, ``RECITATION``, ``MALFORMED_FUNCTION_CALL``...: the error type is the reason)
  are ``success=False``. Exceptions the SDK raises (``APIError``) are recorded by the
  decorator as usual.
- ``service_tier`` from Vertex AI's ``traffic_type`` (``ON_DEMAND_PRIORITY`` -> ``priority``,
  ``ON_DEMAND_FLEX`` -> ``flex``...); extras: ``response_id``, ``finish_reason``,
  ``traffic_type``, ``candidates`` (when more than one), ``stream_chunks``.

Nothing here imports ``google.genai``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import JsonValue

from instrument.adapters._coerce import MAX_NAME, MAX_TEXT, to_str, truncate
from instrument.adapters._google import (
    SUCCESS_FINISH,
    CallLedger,
    enum_name,
    get,
    model_provider,
    service_tier,
    sum_usage,
    text_of,
    usage_of,
)
from instrument.adapters._openai import ends
from instrument.adapters.protocol import StreamedItems
from instrument.record import ErrorInfo, ExecutionResult, TokenUsage

__all__ = ["ADAPTER", "GoogleGenAIAdapter"]

_TYPES_MODULE = "google.genai.types"


def _is_response(obj: object) -> bool:
    try:
        return any(base.__name__ == "GenerateContentResponse"
                   and base.__module__ == _TYPES_MODULE for base in type(obj).__mro__)
    except Exception:  # a hostile metaclass: not a response
        return False


class GoogleGenAIAdapter:
    """``GenerateContentResponse`` objects and yielded response chunks."""

    name = "google_genai"
    #: matches() on a plain dict looks only at its keys (it never matches one)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if isinstance(result, StreamedItems):
            return any(_is_response(item) for item in ends(result))
        return _is_response(result)

    def normalize(self, result: object) -> ExecutionResult:
        if isinstance(result, StreamedItems):
            return _from_chunks([c for c in result if _is_response(c)])
        if _is_response(result):
            return _from_response(result)
        raise TypeError(
            f"google_genai cannot normalize {type(result).__qualname__}; return the "
            "GenerateContentResponse, or yield the chunks of generate_content_stream")


# --------------------------------------------------------------------------------------------


class _Outcome:
    """What decides success: the last finish reason, or a blocked prompt."""

    __slots__ = ("block", "finish", "message")

    def __init__(self) -> None:
        self.finish: str | None = None
        self.message: str | None = None
        self.block: str | None = None

    def see(self, response: object) -> None:
        feedback = get(response, "prompt_feedback")
        block = enum_name(get(feedback, "block_reason"))
        if block is not None and block != "BLOCKED_REASON_UNSPECIFIED":
            self.block = block
            self.message = to_str(get(feedback, "block_reason_message"), MAX_TEXT)
        candidate = _first_candidate(response)
        finish = enum_name(get(candidate, "finish_reason"))
        if finish is not None:
            self.finish = finish
            self.message = to_str(get(candidate, "finish_message"), MAX_TEXT) or self.message

    def error(self) -> ErrorInfo | None:
        if self.block is not None:
            return ErrorInfo(type=f"PROMPT_BLOCKED_{self.block}", message=self.message or (
                f"the prompt was blocked ({self.block}); the model did not answer"))
        if self.finish is not None and self.finish not in SUCCESS_FINISH:
            return ErrorInfo(type=self.finish, message=self.message or (
                f"the model stopped with finish reason {self.finish}"))
        return None


def _first_candidate(response: object) -> Any:
    candidates = get(response, "candidates")
    return candidates[0] if isinstance(candidates, list) and candidates else None


def _content_of(response: object) -> Any:
    return get(_first_candidate(response), "content")


def _calls_in(content: object, ledger: CallLedger) -> None:
    for part in get(content, "parts") or ():
        call = get(part, "function_call")
        if call is not None:
            ledger.call(call)


def _read_history(history: object, ledger: CallLedger) -> tuple[int, str | None]:
    """Tool calls and their outcomes from ``automatic_function_calling_history``; the number
    of model requests it shows and the prompt (the first user turn's text)."""
    if not isinstance(history, list):
        return 0, None
    requests = 0
    prompt: str | None = None
    for content in history:
        role = get(content, "role")
        if role == "model":
            requests += 1
            _calls_in(content, ledger)
        else:
            answered = False
            for part in get(content, "parts") or ():
                response = get(part, "function_response")
                if response is not None:
                    ledger.response(response)
                    answered = True
            if not answered and prompt is None:
                prompt = text_of(content)
    return requests, prompt


def _extras_of(response: object, extras: dict[str, JsonValue]) -> None:
    _put(extras, "response_id", get(response, "response_id"))
    candidates = get(response, "candidates")
    if isinstance(candidates, list) and len(candidates) > 1:
        extras["candidates"] = len(candidates)
    traffic = enum_name(get(get(response, "usage_metadata"), "traffic_type"))
    if traffic is not None:
        extras["traffic_type"] = traffic


def _from_response(response: Any) -> ExecutionResult:
    outcome = _Outcome()
    outcome.see(response)
    ledger = CallLedger()
    history_requests, prompt = _read_history(
        get(response, "automatic_function_calling_history"), ledger)
    _calls_in(_content_of(response), ledger)
    extras: dict[str, JsonValue] = {}
    _extras_of(response, extras)
    if outcome.finish is not None:
        extras["finish_reason"] = outcome.finish
    iterations = history_requests + 1
    tokens = usage_of(get(response, "usage_metadata"))
    if history_requests and tokens is not None:
        extras["usage_covers"] = "last_request"  # the SDK keeps no other request's usage
    model = to_str(get(response, "model_version"), MAX_NAME)
    return ExecutionResult(
        success=outcome.error() is None,
        error=outcome.error(),
        tokens=tokens,
        iterations=iterations,
        tool_calls=ledger.tool_calls(),
        model=model,
        provider=model_provider(model) or "gcp.gen_ai",
        service_tier=service_tier(get(response, "usage_metadata")),
        response=text_of(_content_of(response)),
        input=prompt,
        extras=extras,
    )


def _from_chunks(chunks: Sequence[Any]) -> ExecutionResult:
    outcome = _Outcome()
    ledger = CallLedger()
    requests: list[TokenUsage | None] = []
    current: TokenUsage | None = None
    open_request = False
    last_id: str | None = None
    texts: list[str] = []
    model: str | None = None
    tier: str | None = None
    history: object = None
    extras: dict[str, JsonValue] = {"stream_chunks": len(chunks)}
    for chunk in chunks:
        rid = to_str(get(chunk, "response_id"), MAX_NAME)
        if open_request and rid is not None and last_id is not None and rid != last_id:
            requests.append(current)  # a new request began without a finish reason
            current = None
        last_id = rid or last_id
        open_request = True
        outcome.see(chunk)
        usage = get(chunk, "usage_metadata")
        if usage is not None:
            current = usage_of(usage) or current  # cumulative: the latest one counts
            tier = service_tier(usage) or tier
        model = to_str(get(chunk, "model_version"), MAX_NAME) or model
        content = _content_of(chunk)
        text = text_of(content)
        if text:
            texts.append(text)
        _calls_in(content, ledger)
        history = get(chunk, "automatic_function_calling_history") or history
        if enum_name(get(_first_candidate(chunk), "finish_reason")) is not None:
            requests.append(current)
            current, open_request = None, False
        _extras_of(chunk, extras)
    if open_request:
        requests.append(current)
    prompt = _answer_from_history(history, ledger)
    if outcome.finish is not None:
        extras["finish_reason"] = outcome.finish
    if chunks and all(u is None for u in requests):
        extras["usage_reported"] = False
    error = outcome.error()
    return ExecutionResult(
        success=error is None,
        error=error,
        tokens=sum_usage(requests),
        iterations=len(requests) if chunks else None,
        tool_calls=ledger.tool_calls() if chunks else None,
        model=model,
        provider=model_provider(model) or ("gcp.gen_ai" if chunks else None),
        service_tier=tier,
        response=truncate("".join(texts), MAX_TEXT) if texts else None,
        input=prompt,
        extras=extras,
    )


def _answer_from_history(history: object, ledger: CallLedger) -> str | None:
    """Mark the streamed calls the SDK answered (automatic function calling attaches its
    history to the chunks of each later request); the prompt, when the history has it."""
    if not isinstance(history, list):
        return None
    answered = CallLedger()
    _, prompt = _read_history(history, answered)
    for done in answered.calls:
        if not done["answered"]:
            continue
        for call in ledger.calls:
            if not call["answered"] and call["name"] == done["name"] and (
                    done["call_id"] is None or call["call_id"] in (None, done["call_id"])):
                call.update(answered=True, success=done["success"], error=done["error"])
                break
    return prompt


def _put(extras: dict[str, JsonValue], key: str, value: object) -> None:
    text = to_str(value, MAX_NAME, scalars=False)
    if text:
        extras[key] = text


ADAPTER = GoogleGenAIAdapter()


def conformance_samples() -> list[object]:
    """Responses as the API really returns them (built with the SDK's own types), for
    :func:`instrument.adapters.conformance.check_adapter`.

    Run: ``.venv/bin/pytest -q tests/adapters/test_conformance.py -k google_genai``.
    """
    from google.genai import types

    from instrument.adapters.conformance import Sample

    def chunk(text: str | None, finish: str | None, usage: dict[str, int]
              ) -> types.GenerateContentResponse:
        parts = [{"text": text}] if text is not None else []
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finish_reason"] = finish
        return types.GenerateContentResponse.model_validate({
            "candidates": [candidate], "model_version": "gemini-3.8-flash-001",
            "response_id": "resp-s1", "usage_metadata": usage})

    growing = [
        chunk("Bonjour", None, {"prompt_token_count": 12, "candidates_token_count": 2,
                                "total_token_count": 14}),
        chunk(" à tous", "STOP", {"prompt_token_count": 12, "candidates_token_count": 5,
                                  "thoughts_token_count": 7, "total_token_count": 24}),
    ]
    blocked = types.GenerateContentResponse.model_validate({
        "prompt_feedback": {"block_reason": "SAFETY"}, "model_version": "gemini-3.8-flash-001",
        "usage_metadata": {"prompt_token_count": 9, "total_token_count": 9}})
    return [
        Sample(StreamedItems(growing), unmeasured={"retries", "steps", "memory",
                                                   "tokens.cached_input_tokens"},
               label="stream with cumulative usage"),
        Sample(blocked, unmeasured={"retries", "steps", "response", "tokens.output_tokens",
                                    "tokens.reasoning_tokens", "tokens.cached_input_tokens"},
               label="blocked prompt"),
    ]
