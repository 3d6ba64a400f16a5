"""OTEL_* resolution: protocols, endpoint rules, headers, timeouts, samplers, resource."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace.sampling import ParentBased, StaticSampler, TraceIdRatioBased

from instrument.config import Settings, resolve_settings
from instrument.tracing.otel_env import OtelConfig, resolve_otel


def resolved(settings: Settings) -> OtelConfig:
    """What configure() resolves: the settings' environment plus their resolved values."""
    return resolve_otel(settings.environ, traces=settings.traces,
                        service_name=settings.service_name)


def otel(**environ: str) -> OtelConfig:
    return resolved(resolve_settings(environ=environ))


def test_defaults_export_nothing_until_an_endpoint_is_given() -> None:
    cfg = otel()
    assert cfg.traces.kinds == ()
    assert cfg.metrics.kinds == ()
    assert not cfg.disabled
    assert cfg.resource_attributes == {"service.name": "unknown_service"}
    assert cfg.traces.protocol == "http/protobuf"
    assert cfg.traces.timeout_s == 10.0
    assert cfg.metric_interval_s == 60.0
    assert isinstance(cfg.sampler, ParentBased)


def test_http_appends_the_signal_path_to_the_base_endpoint() -> None:
    cfg = otel(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318/")
    assert cfg.traces.kinds == ("otlp",)
    assert cfg.traces.endpoint == "http://collector:4318/v1/traces"
    assert cfg.metrics.endpoint == "http://collector:4318/v1/metrics"


def test_per_signal_endpoints_are_used_verbatim() -> None:
    cfg = otel(OTEL_EXPORTER_OTLP_ENDPOINT="http://base:4318",
               OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="https://traces.example/custom/path")
    assert cfg.traces.endpoint == "https://traces.example/custom/path"
    assert cfg.traces.insecure is False
    assert cfg.metrics.endpoint == "http://base:4318/v1/metrics"


def test_grpc_uses_the_base_endpoint_as_is_and_plaintext_for_http_scheme() -> None:
    cfg = otel(OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger:4317")
    assert cfg.traces.protocol == "grpc"
    assert cfg.traces.endpoint == "http://jaeger:4317"
    assert cfg.traces.insecure is True
    assert otel(OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                OTEL_TRACES_EXPORTER="otlp").traces.endpoint == "http://localhost:4317"
    assert otel(OTEL_TRACES_EXPORTER="otlp").traces.endpoint == "http://localhost:4318/v1/traces"


def test_scheme_less_grpc_endpoint_follows_otel_exporter_otlp_insecure() -> None:
    base = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4317"}
    assert otel(**base).traces.insecure is False
    assert otel(**base, OTEL_EXPORTER_OTLP_INSECURE="true").traces.insecure is True


def test_per_signal_protocol_wins() -> None:
    cfg = otel(OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
               OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="http/protobuf",
               OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4317")
    assert cfg.traces.protocol == "grpc"
    assert cfg.metrics.protocol == "http/protobuf"
    assert cfg.metrics.endpoint == "http://c:4317/v1/metrics"


def test_headers_are_percent_decoded_and_per_signal_headers_merge() -> None:
    cfg = otel(OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20abc,x-team=ml",
               OTEL_EXPORTER_OTLP_TRACES_HEADERS="x-team=agents")
    assert dict(cfg.traces.headers) == {"authorization": "Bearer abc", "x-team": "agents"}
    assert dict(cfg.metrics.headers) == {"authorization": "Bearer abc", "x-team": "ml"}


def test_timeouts_are_milliseconds_with_per_signal_override() -> None:
    cfg = otel(OTEL_EXPORTER_OTLP_TIMEOUT="2500", OTEL_EXPORTER_OTLP_METRICS_TIMEOUT="800")
    assert cfg.traces.timeout_s == 2.5
    assert cfg.metrics.timeout_s == 0.8


def test_exporter_selection_and_the_explicit_traces_argument() -> None:
    assert otel(OTEL_TRACES_EXPORTER="console").traces.kinds == ("console",)
    assert otel(OTEL_TRACES_EXPORTER="otlp,console").traces.kinds == ("otlp", "console")
    assert otel(OTEL_TRACES_EXPORTER="none",
                OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318").traces.kinds == ()
    assert otel(OTEL_METRICS_EXPORTER="none",
                OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318").metrics.kinds == ()
    # configure(traces=...) overrides OTEL_TRACES_EXPORTER
    settings = resolve_settings(traces="none", environ={"OTEL_TRACES_EXPORTER": "console"})
    assert resolved(settings).traces.kinds == ()
    settings = resolve_settings(traces="console", environ={})
    assert resolved(settings).traces.kinds == ("console",)
    # the plain values win over the mapping they are given with
    assert resolve_otel({"OTEL_TRACES_EXPORTER": "console"}, traces="none",
                        service_name=None).traces.kinds == ()


def test_unsupported_values_warn_and_fall_back(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="instrument.tracing.otel_env"):
        cfg = otel(OTEL_TRACES_EXPORTER="zipkin", OTEL_EXPORTER_OTLP_PROTOCOL="http/json",
                   OTEL_TRACES_SAMPLER="jaeger_remote", OTEL_EXPORTER_OTLP_TIMEOUT="soon")
    assert cfg.traces.kinds == ()
    assert cfg.traces.protocol == "http/protobuf"
    assert cfg.traces.timeout_s == 10.0
    assert isinstance(cfg.sampler, ParentBased)
    text = caplog.text
    for word in ("zipkin", "http/json", "jaeger_remote", "soon"):
        assert word in text


@pytest.mark.parametrize(("name", "arg", "check"), [
    ("always_on", None, lambda s: isinstance(s, StaticSampler)),
    ("always_off", None, lambda s: isinstance(s, StaticSampler)),
    ("traceidratio", "0.25", lambda s: isinstance(s, TraceIdRatioBased) and s.rate == 0.25),
    ("parentbased_traceidratio", "0.5", lambda s: isinstance(s, ParentBased)
     and "0.5" in s.get_description()),
    ("parentbased_always_off", None, lambda s: isinstance(s, ParentBased)
     and "AlwaysOffSampler" in s.get_description()),
])
def test_samplers(name: str, arg: str | None, check: object) -> None:
    environ = {"OTEL_TRACES_SAMPLER": name}
    if arg is not None:
        environ["OTEL_TRACES_SAMPLER_ARG"] = arg
    sampler = otel(**environ).sampler
    assert callable(check)
    assert check(sampler), sampler.get_description()


def test_service_name_precedence() -> None:
    assert otel(OTEL_RESOURCE_ATTRIBUTES="service.name=from-attrs,team=ml"
                ).resource_attributes == {"service.name": "from-attrs", "team": "ml"}
    assert otel(OTEL_RESOURCE_ATTRIBUTES="service.name=from-attrs", OTEL_SERVICE_NAME="svc"
                ).resource_attributes["service.name"] == "svc"
    settings = resolve_settings(service_name="explicit", environ={"OTEL_SERVICE_NAME": "svc"})
    assert resolved(settings).resource_attributes["service.name"] == "explicit"
    assert resolve_otel({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"}, traces=None,
                        service_name="given").resource_attributes["service.name"] == "given"
    assert resolve_otel({}, traces=None, service_name=None
                        ).resource_attributes["service.name"] == "unknown_service"


def test_sdk_disabled() -> None:
    assert otel(OTEL_SDK_DISABLED="true").disabled
    assert not otel(OTEL_SDK_DISABLED="false").disabled
