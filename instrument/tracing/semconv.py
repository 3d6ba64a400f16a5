"""Attribute and metric names: the OpenTelemetry GenAI conventions (v1.41) and our own.

Kept as plain strings (the semconv package only ships the GenAI names in a private, changing
module), with the conventions' advised histogram bucket boundaries.
"""

from __future__ import annotations

from typing import Final

# -- GenAI (v1.41; gen_ai.system was renamed gen_ai.provider.name in v1.37) -------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
AGENT_ID: Final = "gen_ai.agent.id"
AGENT_NAME: Final = "gen_ai.agent.name"
WORKFLOW_NAME: Final = "gen_ai.workflow.name"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 (a name, not a secret)
ERROR_TYPE: Final = "error.type"
USER_ID: Final = "user.id"

OP_INVOKE_AGENT: Final = "invoke_agent"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_EXECUTE_TOOL: Final = "execute_tool"
ERROR_OTHER: Final = "_OTHER"

# -- ours (namespaced) -------------------------------------------------------------------------
EXECUTION_ID: Final = "instrument.execution_id"
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

# -- metrics -----------------------------------------------------------------------------------
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # noqa: S105
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_EXECUTIONS: Final = "instrument.executions"
METRIC_PIPELINE_QUEUE_DEPTH: Final = "instrument.pipeline.queue.depth"
METRIC_PIPELINE_SPOOL_SIZE: Final = "instrument.pipeline.spool.size"
METRIC_PIPELINE_SPOOL_USAGE: Final = "instrument.pipeline.spool.usage"
METRIC_PIPELINE_RETRIES: Final = "instrument.pipeline.retries"
METRIC_PIPELINE_DROPPED: Final = "instrument.pipeline.dropped"
METRIC_PIPELINE_QUARANTINED: Final = "instrument.pipeline.quarantined"
METRIC_PIPELINE_WRITE_LATENCY: Final = "instrument.pipeline.write.latency"

TOKEN_USAGE_BUCKETS: Final[tuple[float, ...]] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
