"""Attribute, event and metric names: the OpenTelemetry GenAI conventions and our own.

The current names follow ``open-telemetry/semantic-conventions-genai`` at commit
``e9de14bafd9725937c6b0c219897260074a2896c`` (the dated extract the conformance test checks
against: ``tests/tracing/semconv_genai_2026-12.json``). The names we emitted before (v1.41 of
the GenAI conventions) stay available behind ``OTEL_SEMCONV_STABILITY_OPT_IN``
(:func:`conventions_from_opt_in`). Kept as plain strings: the semconv package only ships the
GenAI names in a private, changing module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

__all__ = ["CURRENT", "DUP", "PREVIOUS", "Conventions", "conventions_from_opt_in"]

_log = logging.getLogger(__name__)

# -- GenAI attributes (current registry) -------------------------------------------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
AGENT_NAME: Final = "gen_ai.agent.name"
WORKFLOW_NAME: Final = "gen_ai.workflow.name"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
INVOCATION_IS_NESTED: Final = "gen_ai.invocation.is_nested"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
# general (non-GenAI) registry
ERROR_TYPE: Final = "error.type"
USER_ID: Final = "user.id"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

OP_INVOKE_AGENT: Final = "invoke_agent"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_EXECUTE_TOOL: Final = "execute_tool"
#: One turn of a framework runner that steers the control flow (``Runner.run``); spans.yaml
OP_HANDLE_CONVERSATION_TURN: Final = "handle_conversation_turn"
ERROR_OTHER: Final = "_OTHER"

#: The span event for an exception that ended an invocation (events.yaml).
EVENT_EXCEPTION: Final = "gen_ai.client.operation.exception"

# -- previous names (GenAI v1.41), emitted with gen_ai/previous or gen_ai/dup -----------------
#: now the id of a hosted agent resource; our agent id is INSTRUMENT_AGENT_ID
PREV_AGENT_ID: Final = "gen_ai.agent.id"
#: on the invocation span before; now only on inference spans (changelog.d/469)
PREV_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
PREV_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
#: renamed gen_ai.usage.cache_write.input_tokens (changelog.d/440)
PREV_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
PREV_TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 (a name, not a secret)
PREV_EVENT_EXCEPTION: Final = "exception"
PREV_EXCEPTION_ESCAPED: Final = "exception.escaped"

# -- ours (namespaced) -------------------------------------------------------------------------
EXECUTION_ID: Final = "instrument.execution_id"
AGENT_ID: Final = "instrument.agent_id"
NAME: Final = "instrument.name"
ENGINE: Final = "instrument.engine"
EXECUTION_TYPE: Final = "instrument.execution_type"
ITERATIONS: Final = "instrument.iterations"
STEPS_COMPLETED: Final = "instrument.steps.completed"
STEPS_FAILED: Final = "instrument.steps.failed"
STEPS_SKIPPED: Final = "instrument.steps.skipped"
TOOL_CALL_COUNT: Final = "instrument.tool_call_count"
INTENSITY_SCORE: Final = "instrument.intensity_score"
STATUS: Final = "instrument.status"
TOOL_PLUGIN: Final = "instrument.tool.plugin"
TOOL_ACTION: Final = "instrument.tool.action"
TOOL_ITEMS_RETURNED: Final = "instrument.tool.items_returned"
TOOL_ARGUMENTS_UNTIMED: Final = "instrument.tool_calls.arguments"
USAGE_CACHE_READ_INPUT_TOKENS: Final = "instrument.usage.cache_read.input_tokens"
USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "instrument.usage.cache_write.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS: Final = "instrument.usage.reasoning.output_tokens"
TENANT_ID: Final = "instrument.tenant_id"
OWNER_ID: Final = "instrument.owner_id"
PARENT_EXECUTION_ID: Final = "instrument.parent_execution_id"
RESUMES_EXECUTION_ID: Final = "instrument.resumes_execution_id"
TAGS: Final = "instrument.tags"
#: ``instrument.metadata.<key>``: one attribute per top-level key of the record's metadata
METADATA_PREFIX: Final = "instrument.metadata."
#: the registry's ``openai.response.service_tier`` is for OpenAI inference spans only
SERVICE_TIER: Final = "instrument.service_tier"

# -- metrics -----------------------------------------------------------------------------------
METRIC_INVOCATION_DURATION: Final = "gen_ai.invocation.duration"
METRIC_INFERENCE_CALLS: Final = "gen_ai.invoke_agent.inference_calls"
METRIC_TOOL_CALLS: Final = "gen_ai.invoke_agent.tool_calls"
METRIC_EXECUTE_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
PREV_METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # noqa: S105
PREV_METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_EXECUTIONS: Final = "instrument.executions"
METRIC_PIPELINE_QUEUE_DEPTH: Final = "instrument.pipeline.queue.depth"
METRIC_PIPELINE_SPOOL_SIZE: Final = "instrument.pipeline.spool.size"
METRIC_PIPELINE_SPOOL_USAGE: Final = "instrument.pipeline.spool.usage"
METRIC_PIPELINE_RETRIES: Final = "instrument.pipeline.retries"
METRIC_PIPELINE_DROPPED: Final = "instrument.pipeline.dropped"
METRIC_PIPELINE_QUARANTINED: Final = "instrument.pipeline.quarantined"
METRIC_PIPELINE_WRITE_LATENCY: Final = "instrument.pipeline.write.latency"
METRIC_SPANS_DROPPED: Final = "instrument.spans.dropped"

# Explicit bucket boundaries, as docs/gen-ai/gen-ai-metrics.md specifies them at the commit above.
INVOCATION_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6,
)
CALL_COUNT_BUCKETS: Final[tuple[float, ...]] = (1, 2, 4, 8, 16, 32, 64, 128)
#: gen_ai.execute_tool.duration, and the previous gen_ai.client.operation.duration
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
TOKEN_USAGE_BUCKETS: Final[tuple[float, ...]] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)


@dataclass(frozen=True, slots=True)
class Conventions:
    """Which GenAI names to emit: the current ones, the previous ones, or both."""

    current: bool = True
    previous: bool = False


CURRENT: Final = Conventions()
PREVIOUS: Final = Conventions(current=False, previous=True)
DUP: Final = Conventions(current=True, previous=True)

_OPT_IN: Final = {
    "gen_ai": CURRENT, "gen_ai_latest_experimental": CURRENT,
    "gen_ai/previous": PREVIOUS, "gen_ai/dup": DUP,
}


def conventions_from_opt_in(raw: str | None) -> Conventions:
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` (comma-separated) -> the GenAI names to emit.

    ``gen_ai/dup`` (or ``gen_ai/previous`` together with ``gen_ai``) emits both, as
    ``http/dup`` does for HTTP; ``gen_ai/previous`` alone only the previous names; ``gen_ai``,
    ``gen_ai_latest_experimental`` or nothing: the current names. Values for other domains
    (``http``, ``database``, ...) are not ours and are ignored.
    """
    seen: set[Conventions] = set()
    for token in (raw or "").split(","):
        value = token.strip().lower()
        if value in _OPT_IN:
            seen.add(_OPT_IN[value])
        elif value.startswith("gen_ai"):
            _log.warning("OTEL_SEMCONV_STABILITY_OPT_IN: %r is not one of %s; ignoring it",
                         value, ", ".join(sorted(_OPT_IN)))
    if DUP in seen or {PREVIOUS, CURRENT} <= seen:  # both asked for explicitly: both
        return DUP
    return PREVIOUS if PREVIOUS in seen else CURRENT
