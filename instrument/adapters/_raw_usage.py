"""Token usage from a provider's raw response, whatever the provider, in the record's terms.

Frameworks that wrap many providers (LlamaIndex's ``raw``) hand over the provider's own response,
as an object or as its ``model_dump()``. Each provider counts differently; every branch here
converts to the record's definition (input includes cache reads and writes, output includes
reasoning):

- OpenAI Chat Completions (``usage.prompt_tokens``): input already includes cached reads
  (``prompt_tokens_details.cached_tokens``); output includes reasoning.
- OpenAI Responses (``usage.input_tokens`` + ``input_tokens_details``): the same definition.
- Anthropic Messages (``usage.input_tokens`` with ``cache_read_input_tokens`` /
  ``cache_creation_input_tokens``): input *excludes* both cache kinds, so they are added.
- Gemini (``usage_metadata``): ``prompt_token_count`` includes cached content;
  ``candidates_token_count`` excludes thinking (``thoughts_token_count``), which is added.
- Bedrock Converse (``usage.inputTokens``): input excludes cache unless ``input + output ==
  total`` (the rule Strands uses for the same shape).

Nothing is imported from any provider SDK; a shape not recognized gives ``None``.
"""

from __future__ import annotations

from instrument.adapters._coerce import MAX_NAME, absent, field, has_field, to_count, to_str
from instrument.record import TokenUsage

__all__ = ["model_of", "provider_of", "usage_of"]


def usage_of(raw: object) -> TokenUsage | None:
    """The usage one raw provider response reports, converted; None when it reports none."""
    if raw is None:
        return None
    usage = field(raw, "usage")
    tokens: TokenUsage | None = None
    if not absent(usage):
        if has_field(usage, "prompt_tokens"):
            tokens = _chat(usage)
        elif has_field(usage, "input_tokens"):
            tokens = (_anthropic(usage) if has_field(usage, "cache_read_input_tokens")
                      or has_field(usage, "cache_creation_input_tokens") else _responses(usage))
        elif has_field(usage, "inputTokens"):
            tokens = _converse(usage)
    else:
        metadata = field(raw, "usage_metadata")
        if not absent(metadata):
            tokens = _gemini(metadata)
    if tokens is None or tokens == TokenUsage():
        return None
    return tokens


def model_of(raw: object) -> str | None:
    """The model that answered, as the raw response names it."""
    for name in ("model", "model_version", "modelVersion"):
        found = to_str(field(raw, name), MAX_NAME, scalars=False)
        if found:
            return found
    return None


def provider_of(raw: object) -> str | None:
    """The provider, when the raw response's own shape says so (OpenAI's ``object``,
    Anthropic's ``type: message``, Gemini's ``usage_metadata``)."""
    kind = to_str(field(raw, "object"), MAX_NAME, scalars=False)
    if kind is not None and (kind.startswith("chat.completion") or kind == "response"):
        return "openai"
    if to_str(field(raw, "type"), MAX_NAME, scalars=False) == "message" and has_field(
            raw, "stop_reason"):
        return "anthropic"
    if has_field(raw, "usage_metadata"):
        return "gcp.gemini"
    return None


def _total(inp: int | None, out: int | None, total: int | None) -> int | None:
    if total is not None:
        return total
    return inp + out if inp is not None and out is not None else None


def _chat(usage: object) -> TokenUsage:
    inp = to_count(field(usage, "prompt_tokens"))
    out = to_count(field(usage, "completion_tokens"))
    return TokenUsage(
        input_tokens=inp, output_tokens=out,
        total_tokens=_total(inp, out, to_count(field(usage, "total_tokens"))),
        cached_input_tokens=to_count(field(field(usage, "prompt_tokens_details"),
                                           "cached_tokens")),
        reasoning_tokens=to_count(field(field(usage, "completion_tokens_details"),
                                        "reasoning_tokens")))


def _responses(usage: object) -> TokenUsage:
    inp = to_count(field(usage, "input_tokens"))
    out = to_count(field(usage, "output_tokens"))
    return TokenUsage(
        input_tokens=inp, output_tokens=out,
        total_tokens=_total(inp, out, to_count(field(usage, "total_tokens"))),
        cached_input_tokens=to_count(field(field(usage, "input_tokens_details"),
                                           "cached_tokens")),
        reasoning_tokens=to_count(field(field(usage, "output_tokens_details"),
                                        "reasoning_tokens")))


def _anthropic(usage: object) -> TokenUsage:
    uncached = to_count(field(usage, "input_tokens"))
    read = to_count(field(usage, "cache_read_input_tokens"))
    write = to_count(field(usage, "cache_creation_input_tokens"))
    out = to_count(field(usage, "output_tokens"))
    inp = None if uncached is None else uncached + (read or 0) + (write or 0)
    return TokenUsage(input_tokens=inp, output_tokens=out, total_tokens=_total(inp, out, None),
                      cached_input_tokens=read, cache_write_input_tokens=write)


def _converse(usage: object) -> TokenUsage:
    inp = to_count(field(usage, "inputTokens"))
    out = to_count(field(usage, "outputTokens"))
    total = to_count(field(usage, "totalTokens"))
    read = to_count(field(usage, "cacheReadInputTokens"))
    write = to_count(field(usage, "cacheWriteInputTokens"))
    if inp is not None and out is not None and total is not None and inp + out != total:
        inp += (read or 0) + (write or 0)
    return TokenUsage(input_tokens=inp, output_tokens=out, total_tokens=_total(inp, out, total),
                      cached_input_tokens=read, cache_write_input_tokens=write)


def _gemini(metadata: object) -> TokenUsage:
    inp = to_count(field(metadata, "prompt_token_count"))
    candidates = to_count(field(metadata, "candidates_token_count"))
    thoughts = to_count(field(metadata, "thoughts_token_count"))
    out = None if candidates is None else candidates + (thoughts or 0)
    return TokenUsage(
        input_tokens=inp, output_tokens=out,
        total_tokens=_total(inp, out, to_count(field(metadata, "total_token_count"))),
        cached_input_tokens=to_count(field(metadata, "cached_content_token_count")),
        reasoning_tokens=thoughts)
