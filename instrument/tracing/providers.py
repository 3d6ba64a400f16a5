"""Tracer and meter providers: the application's if it set them, else our own, privately.

Provider policy (docs/tracing-and-jaeger.md):

- If the application already set a global TracerProvider (or MeterProvider), our spans and
  metrics go through it: its exporters, sampler and resource. We never replace it, never add
  processors to it and never shut it down.
- Otherwise we build our own provider from :class:`~instrument.otel_config.OtelConfig` and keep
  it **private** (not installed as the global): the global can be set only once per process,
  so taking it from a lazy first call would silently break an application that sets up its own
  OpenTelemetry later. Spans that other libraries start inside an executor still become
  children of ours whenever the application has a global SDK provider, because the decorator
  attaches our span's context while the executor runs.

Metrics are recorded only on a meter provider we own (built when ``OTEL_METRICS_EXPORTER`` or
an OTLP endpoint asks for metrics) or on the application's global one when the application
said so with :func:`use_app_meter_provider`. Recording on whatever global provider happens to
be set (Logfire sets one) would cost every decorated call a few microseconds for metrics
nobody asked us for.

Our own span processor is sized so that a burst does not drop spans (:data:`SPAN_QUEUE_SIZE`,
instead of the SDK's 2,048); spans the application's provider drops are counted by
:mod:`instrument.tracing.drops`.

Our own providers are built with ``shutdown_on_exit=False``: the SDK's own atexit hook waits up
to 30 s on a dead collector, while :meth:`Telemetry.shutdown` is bounded by its timeout (the
provider shutdown runs in a daemon thread that is joined with the remaining time).
"""

from __future__ import annotations

import errno
import importlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.version import __version__ as sdk_version

from instrument.errors import ConfigurationError
from instrument.tracing.otel_env import ExporterConfig, OtelConfig

__all__ = [
    "SPAN_QUEUE_SIZE",
    "Telemetry",
    "app_meter_provider",
    "app_tracer_provider",
    "build_telemetry",
    "metrics_provider_for",
    "span_queue_size",
    "use_app_meter_provider",
]

_log = logging.getLogger(__name__)

#: Spans our own batch processor holds before it drops one. The SDK's default (2,048) drops
#: about a third of the spans of a sustained burst (issue 19's end-to-end runs). A span of our
#: shape held in the queue is about 3.2 KB (tracemalloc, 20,000 queued), so 32,768 spans are
#: about 105 MB at worst, held only while the collector lags.
SPAN_QUEUE_SIZE = 32_768

#: Set by use_app_meter_provider(): record on the application's global MeterProvider.
_app_metrics = False


def use_app_meter_provider(enabled: bool = True) -> None:
    """Record our metrics on the application's global ``MeterProvider`` as well.

    Off by default: without it our metrics go only to a provider we own (built when
    ``OTEL_METRICS_EXPORTER`` or an OTLP endpoint asks for metrics), never to one the
    application set for its own purposes. Takes effect at the next ``configure()`` (or the
    first decorated call when nothing is configured yet)."""
    global _app_metrics
    _app_metrics = enabled


def metrics_provider_for(explicit: metrics.MeterProvider | None) -> metrics.MeterProvider:
    """The provider a :class:`~instrument.tracing.spans.Tracing` records on: the one it was
    given, else the application's global one if it opted in, else none (a no-op)."""
    if explicit is not None:
        return explicit
    app = app_meter_provider() if _app_metrics else None
    return app if app is not None else metrics.NoOpMeterProvider()


def span_queue_size() -> int:
    """:data:`SPAN_QUEUE_SIZE`, or ``OTEL_BSP_MAX_QUEUE_SIZE`` when that is larger (read by the
    SDK itself, with its own validation)."""
    try:
        configured = int(BatchSpanProcessor._default_max_queue_size())  # type: ignore[no-untyped-call]
    except Exception:  # a private helper of the SDK: if it moves, our size still applies
        configured = 0
    return max(SPAN_QUEUE_SIZE, configured)


@dataclass(slots=True)
class Telemetry:
    """The providers our spans and metrics use, and which of them we own (and must stop)."""

    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider | None
    owned_tracer_provider: SdkTracerProvider | None = None
    owned_meter_provider: SdkMeterProvider | None = None
    #: our own OTLP exporters and the endpoint each sends to (see :meth:`shutdown`)
    otlp_exporters: list[tuple[str, Any]] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def shutdown(self, timeout_s: float) -> bool:
        """Stop our own providers (flushing what they hold) within `timeout_s`, whatever the
        collector does. Providers the application owns are left alone. True = all stopped.

        When every OTLP endpoint of ours refuses connections, nothing is exported: the
        exporters are stopped at once and one line says so, instead of retrying (and logging
        each retry) until the budget runs out; a script exits at once with its collector down.
        """
        if self._stopped:
            return True
        self._stopped = True
        if self.otlp_exporters and _refused({e for e, _ in self.otlp_exporters},
                                            min(0.5, max(0.0, timeout_s) / 2)):
            for _, exporter in self.otlp_exporters:
                try:
                    exporter.shutdown()  # ends any retry in flight, quietly
                except Exception:  # a failing exporter must not block the exit
                    _log.debug("exporter shutdown failed", exc_info=True)
            endpoints = ", ".join(sorted({e for e, _ in self.otlp_exporters}))
            _log.warning("logged-execution: spans and metrics not exported: the OTLP endpoint "
                         "%s refuses connections (the database records are unaffected)",
                         endpoints)
            return False
        tasks: list[Callable[[], object]] = []
        deadline = time.monotonic() + max(0.0, timeout_s)
        millis = max(1, int(timeout_s * 1000))
        tp, mp = self.owned_tracer_provider, self.owned_meter_provider
        if tp is not None:
            tasks.append(tp.shutdown)
        if mp is not None:
            tasks.append(lambda: mp.shutdown(timeout_millis=millis))
        return _run_bounded(tasks, deadline)

    def force_flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout_s)
        millis = max(1, int(timeout_s * 1000))
        tp, mp = self.owned_tracer_provider, self.owned_meter_provider
        tasks: list[Callable[[], object]] = []
        if tp is not None:
            tasks.append(lambda: tp.force_flush(millis))
        if mp is not None:
            tasks.append(lambda: mp.force_flush(millis))
        return _run_bounded(tasks, deadline)


def _refused(endpoints: set[str], timeout_s: float) -> bool:
    """True when a TCP connection to every endpoint is refused or cannot be routed (a slow
    endpoint, or one that cannot be parsed, counts as up: it is exported to as usual)."""
    for endpoint in endpoints:
        parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        if not parts.hostname:
            return False
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
        except (ConnectionRefusedError, socket.gaierror):
            continue
        except OSError as exc:  # a timeout is "slow", not down; unreachable networks are down
            if isinstance(exc, TimeoutError) or exc.errno not in (errno.ENETUNREACH,
                                                                   errno.EHOSTUNREACH):
                return False
            continue
        return False
    return True


def _run_bounded(tasks: list[Callable[[], object]], deadline: float) -> bool:
    """Run each task in its own daemon thread; wait for all until `deadline`, never longer."""
    results: list[bool] = []

    def run(task: Callable[[], object]) -> None:
        try:
            ok = task()
            results.append(ok is not False)
        except Exception:  # an exporter failing on shutdown is logged, never raised
            _log.warning("telemetry shutdown step failed", exc_info=True)
            results.append(False)

    threads = [threading.Thread(target=run, args=(t,), name="instrument-otel-shutdown",
                                daemon=True) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    finished = not any(t.is_alive() for t in threads)
    if not finished:
        _log.warning("telemetry did not shut down in time (collector unreachable?); "
                     "unexported spans/metrics are dropped")
    return finished and all(results)


def app_tracer_provider() -> trace.TracerProvider | None:
    """The global TracerProvider the application set, or None while only the proxy exists."""
    tp = trace.get_tracer_provider()
    return None if isinstance(tp, trace.ProxyTracerProvider) else tp


def app_meter_provider() -> metrics.MeterProvider | None:
    """The global MeterProvider the application set, or None while only the proxy exists."""
    mp = metrics.get_meter_provider()
    return None if type(mp).__name__ == "_ProxyMeterProvider" else mp


def build_telemetry(config: OtelConfig) -> Telemetry | None:
    """Providers for our spans and metrics, or None when OTEL_SDK_DISABLED is set."""
    if config.disabled:
        return None
    resource = Resource(
        {
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": sdk_version,
            **config.resource_attributes,
        }
    )
    telemetry = Telemetry(tracer_provider=trace.NoOpTracerProvider(), meter_provider=None)
    app_tp = app_tracer_provider()
    if app_tp is not None:
        telemetry.tracer_provider = app_tp
        if config.traces.kinds:
            _log.info("the application set a global TracerProvider; our spans use it and the "
                      "OTEL_TRACES_EXPORTER / traces= setting is not applied")
    else:
        tp = SdkTracerProvider(sampler=config.sampler, resource=resource, shutdown_on_exit=False)
        for exporter in _span_exporters(config.traces):
            tp.add_span_processor(BatchSpanProcessor(
                exporter, max_queue_size=span_queue_size(),
                export_timeout_millis=config.traces.timeout_s * 1000))
            if not isinstance(exporter, ConsoleSpanExporter):
                telemetry.otlp_exporters.append((config.traces.endpoint, exporter))
        telemetry.tracer_provider = tp
        telemetry.owned_tracer_provider = tp

    app_mp = app_meter_provider() if _app_metrics else None
    if app_mp is not None:
        telemetry.meter_provider = app_mp
    elif config.metrics.kinds:
        exporters = _metric_exporters(config.metrics)
        readers: list[MetricReader] = [
            PeriodicExportingMetricReader(
                exporter,
                export_interval_millis=config.metric_interval_s * 1000,
                export_timeout_millis=config.metrics.timeout_s * 1000,
            )
            for exporter in exporters
        ]
        telemetry.otlp_exporters += [(config.metrics.endpoint, e) for e in exporters
                                     if not isinstance(e, ConsoleMetricExporter)]
        mp = SdkMeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        telemetry.meter_provider = mp
        telemetry.owned_meter_provider = mp
    return telemetry


#: (signal, protocol) -> the OTLP exporter class, imported on first use (gRPC is heavy).
_OTLP_EXPORTERS: dict[tuple[str, str], str] = {
    ("traces", "grpc"): "opentelemetry.exporter.otlp.proto.grpc.trace_exporter:OTLPSpanExporter",
    ("traces", "http/protobuf"):
        "opentelemetry.exporter.otlp.proto.http.trace_exporter:OTLPSpanExporter",
    ("metrics", "grpc"):
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter:OTLPMetricExporter",
    ("metrics", "http/protobuf"):
        "opentelemetry.exporter.otlp.proto.http.metric_exporter:OTLPMetricExporter",
}


def _otlp_exporter(cfg: ExporterConfig) -> Any:
    """The OTLP exporter for one signal, with every setting passed explicitly (so the SDK does
    not fall back to reading the environment itself)."""
    module, _, name = _OTLP_EXPORTERS[(cfg.signal, cfg.protocol)].partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if cfg.protocol != "grpc":
            raise
        # gRPC (grpcio, ~19 MB) is the `grpc` extra; the default http/protobuf is in the core
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the OTLP gRPC exporter ({exc.name} is not "
            "installed): pip install 'logged-execution[grpc]' (from a checkout: pip install "
            "-e '.[grpc]'), or use the default protocol, http/protobuf") from None
    kwargs: dict[str, Any] = {"endpoint": cfg.endpoint, "headers": dict(cfg.headers),
                              "timeout": cfg.timeout_s}
    if cfg.protocol == "grpc":
        kwargs["insecure"] = cfg.insecure
    return cls(**kwargs)


def _span_exporters(cfg: ExporterConfig) -> list[SpanExporter]:
    out: list[SpanExporter] = [ConsoleSpanExporter()] if "console" in cfg.kinds else []
    if cfg.otlp:
        out.append(_otlp_exporter(cfg))
    return out


def _metric_exporters(cfg: ExporterConfig) -> list[MetricExporter]:
    out: list[MetricExporter] = [ConsoleMetricExporter()] if "console" in cfg.kinds else []
    if cfg.otlp:
        out.append(_otlp_exporter(cfg))
    return out
