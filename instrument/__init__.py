"""logged-execution: trace and account for every AI-agent execution.

``@logged_execution`` wraps an executor; each call yields one :class:`ExecutionRecord`, one
OpenTelemetry span, and exactly-once writes to the configured store.
"""

from instrument.binding import literal
from instrument.budget import Budget
from instrument.context import ExecutionContext, current_execution, execution_context
from instrument.decorator import logged_execution
from instrument.errors import (
    BudgetExceeded,
    ConfigurationError,
    InstrumentError,
    RecordRejected,
    SchemaMismatch,
    StoreUnavailable,
)
from instrument.record import (
    SCHEMA_VERSION,
    ErrorInfo,
    ExecutionRecord,
    ExecutionResult,
    MemoryUsage,
    StepCounts,
    TokenUsage,
    ToolCall,
    WorkflowShape,
)
from instrument.runtime import configure, flush, shutdown

__all__ = [
    "SCHEMA_VERSION",
    "Budget",
    "BudgetExceeded",
    "ConfigurationError",
    "ErrorInfo",
    "ExecutionContext",
    "ExecutionRecord",
    "ExecutionResult",
    "InstrumentError",
    "MemoryUsage",
    "RecordRejected",
    "SchemaMismatch",
    "StepCounts",
    "StoreUnavailable",
    "TokenUsage",
    "ToolCall",
    "WorkflowShape",
    "configure",
    "current_execution",
    "execution_context",
    "flush",
    "literal",
    "logged_execution",
    "shutdown",
]
