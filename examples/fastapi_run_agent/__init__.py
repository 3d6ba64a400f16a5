"""The origin's run-agent route, rebuilt in FastAPI with ``@logged_execution``.

The route chooses the workflow orchestrator or the agentkit loop per agent, as the origin did,
and contains no logging code: both executors are decorated where they are defined, so both
paths get identical logging (``agent_executions``, ``agent_logs``, ``agent_stats``,
``agent_intensity_metrics``, and one span) from the decorator alone.

Run it: ``cd examples && python -m fastapi_run_agent`` (a self-check against the configured
database), or ``python -m fastapi_run_agent --serve`` to serve it with uvicorn.
"""
