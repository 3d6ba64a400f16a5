"""Delivery pipeline: intake on the call path, the durable spool, the worker that delivers
batches to the store (retry, circuit breaker, bisect and quarantine), and replay.

Modules: :mod:`~instrument.pipeline.base` (the protocol, stats, the null pipeline),
:mod:`~instrument.pipeline.worker` (the production pipeline), ``spooler`` (deferred mode),
``forks`` (fork safety), ``delivery`` (applying batches, replay), ``retry``, ``spool`` (the
on-disk format), ``segments`` (this process's spool files), ``orphans`` (finished processes'
files), ``quarantine`` and ``requeue`` (quarantined records delivered again).
"""

from __future__ import annotations

from instrument.pipeline.base import NullPipeline, Pipeline, PipelineStats
from instrument.pipeline.delivery import ReplayReport, replay
from instrument.pipeline.quarantine import QuarantinedRecord, quarantined
from instrument.pipeline.requeue import RequeueReport, requeue_quarantined
from instrument.pipeline.worker import DeliveryPipeline

__all__ = [
    "DeliveryPipeline",
    "NullPipeline",
    "Pipeline",
    "PipelineStats",
    "QuarantinedRecord",
    "ReplayReport",
    "RequeueReport",
    "quarantined",
    "replay",
    "requeue_quarantined",
]
