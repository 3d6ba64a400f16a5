"""An OTLP receiver for tests: gRPC (Trace/MetricsService) and HTTP/protobuf on loopback.

It decodes the official OTLP protobuf messages (``opentelemetry-proto``) exactly as a collector
or Jaeger would, and keeps what arrived so tests can look for spans, attributes and metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = ["OtlpReceiver", "ReceivedSpan", "attributes"]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = _value(kv.value)
    return out


@dataclass
class ReceivedSpan:
    span: Span
    resource: dict[str, Any]
    scope: str
    transport: str

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


@dataclass
class OtlpReceiver:
    """Start with ``with OtlpReceiver() as rx:``; ``rx.grpc_url`` / ``rx.http_url``."""

    trace_requests: list[tuple[str, trace_service_pb2.ExportTraceServiceRequest]] = field(
        default_factory=list)
    metric_requests: list[tuple[str, metrics_service_pb2.ExportMetricsServiceRequest]] = field(
        default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cond: threading.Condition = field(init=False)
    _grpc: grpc.Server | None = None
    _http: ThreadingHTTPServer | None = None
    grpc_port: int = 0
    http_port: int = 0
    #: seconds each export waits before it is answered: a collector with latency, which
    #: bounds how fast a (sequential) batch span processor can drain its queue
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # -- what arrived ---------------------------------------------------------------------

    def _got_traces(self, transport: str, req: trace_service_pb2.ExportTraceServiceRequest,
                    headers: dict[str, str]) -> None:
        with self._cond:
            self.trace_requests.append((transport, req))
            self.headers.append(headers)
            self._cond.notify_all()

    def _got_metrics(self, transport: str,
                     req: metrics_service_pb2.ExportMetricsServiceRequest,
                     headers: dict[str, str]) -> None:
        with self._cond:
            self.metric_requests.append((transport, req))
            self.headers.append(headers)
            self._cond.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            reqs = list(self.trace_requests)
        out: list[ReceivedSpan] = []
        for transport, req in reqs:
            for rs in req.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend(ReceivedSpan(s, resource, ss.scope.name, transport)
                               for s in ss.spans)
        return out

    def metric_names(self) -> set[str]:
        return {m.name for m in self._metrics()}

    def _metrics(self) -> Iterator[Any]:
        with self._lock:
            reqs = list(self.metric_requests)
        for _, req in reqs:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    yield from sm.metrics

    def metric(self, name: str) -> Any:
        found = [m for m in self._metrics() if m.name == name]
        assert found, f"{name} not received; got {sorted(self.metric_names())}"
        return found[-1]

    def wait_for_spans(self, n: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        with self._cond:
            self._cond.wait_for(
                lambda: sum(len(ss.spans) for _, r in self.trace_requests
                            for rs in r.resource_spans for ss in rs.scope_spans) >= n,
                timeout_s)
        return self.spans()

    # -- servers ----------------------------------------------------------------------------

    def __enter__(self) -> OtlpReceiver:
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self),
                                                                  self._grpc)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self),
                                                                      self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        receiver = self

        class Handler(_HttpHandler):
            rx = receiver

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="otlp-http", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


def _grpc_headers(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, rx: OtlpReceiver) -> None:
        self.rx = rx

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        time.sleep(self.rx.delay_s)
        self.rx._got_traces("grpc", request, _grpc_headers(context))
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, rx: OtlpReceiver) -> None:
        self.rx = rx

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.rx._got_metrics("grpc", request, _grpc_headers(context))
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _HttpHandler(BaseHTTPRequestHandler):
    rx: OtlpReceiver

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if headers.get("content-encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        time.sleep(self.rx.delay_s)
        if self.path == "/v1/traces":
            self.rx._got_traces("http", trace_service_pb2.ExportTraceServiceRequest.FromString(
                body), headers)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        elif self.path == "/v1/metrics":
            self.rx._got_metrics(
                "http", metrics_service_pb2.ExportMetricsServiceRequest.FromString(body), headers)
            reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
