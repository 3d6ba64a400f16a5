"""Delivery pipeline: intake on the call path, the durable spool, the worker that delivers
batches to the store (retry, circuit breaker, bisect and quarantine), and replay."""

from __future__ import annotations

from instrument.pipeline.worker import (
    DeliveryPipeline,
    NullPipeline,
    Pipeline,
    PipelineStats,
    build_pipeline,
)

__all__ = ["DeliveryPipeline", "NullPipeline", "Pipeline", "PipelineStats", "build_pipeline"]
