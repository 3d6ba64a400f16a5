"""The standard ``OTEL_*`` variables, resolved into one plain description of what to build.

Pure: reads the mapping it is given, only through :func:`instrument.config.env` (the documented
table), plus the two values ``configure()`` resolved (``traces``, ``service_name``). Invalid
values are logged and replaced by their default, as the OpenTelemetry specification asks of
SDKs ("warn and ignore"); a bad tracing setting never stops database records.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from instrument.config import env, env_flag
from instrument.errors import ConfigurationError
from instrument.tracing.semconv import CURRENT, Conventions, conventions_from_opt_in

__all__ = ["ExporterConfig", "OtelConfig", "Protocol", "Signal", "resolve_otel"]

_log = logging.getLogger(__name__)

Protocol = Literal["grpc", "http/protobuf"]
Signal = Literal["traces", "metrics"]
ExporterKind = Literal["otlp", "console"]

_DEFAULT_ENDPOINT: dict[Protocol, str] = {
    "grpc": "http://localhost:4317",
    "http/protobuf": "http://localhost:4318",
}
_DEFAULT_TIMEOUT_MS = 10_000
_DEFAULT_METRIC_INTERVAL_MS = 60_000


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    """How one signal (traces or metrics) is exported. `kinds` empty = not exported."""

    signal: Signal
    kinds: tuple[ExporterKind, ...] = ()
    protocol: Protocol = "http/protobuf"
    #: Full URL for http/protobuf (with `/v1/<signal>`); scheme://host:port for gRPC.
    endpoint: str = ""
    #: gRPC only: plaintext channel (`http://` endpoints) rather than TLS.
    insecure: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = _DEFAULT_TIMEOUT_MS / 1000

    @property
    def otlp(self) -> bool:
        return "otlp" in self.kinds


@dataclass(frozen=True, slots=True)
class OtelConfig:
    """Everything the telemetry builder needs, resolved from the settings + ``OTEL_*``."""

    disabled: bool
    traces: ExporterConfig
    metrics: ExporterConfig
    sampler: Sampler
    resource_attributes: Mapping[str, str]
    metric_interval_s: float
    #: The SDK truncates longer attribute values raw (breaking JSON); we truncate below it.
    attribute_value_limit: int | None
    #: Which GenAI names to emit (``OTEL_SEMCONV_STABILITY_OPT_IN``).
    conventions: Conventions = CURRENT


def resolve_otel(environ: Mapping[str, str], *, traces: str | None, service_name: str | None
                 ) -> OtelConfig:
    """``OTEL_*`` from `environ` (the mapping the settings were resolved from). `traces` is the
    resolved traces exporter (None: ``OTEL_TRACES_EXPORTER``, then our default); `service_name`
    the resolved service name (None: ``service.name`` of ``OTEL_RESOURCE_ATTRIBUTES``, then
    ``unknown_service``)."""
    try:
        disabled = bool(env_flag("OTEL_SDK_DISABLED", environ))
    except ConfigurationError as exc:
        _log.warning("%s; tracing stays enabled", exc)
        disabled = False
    return OtelConfig(
        disabled=disabled,
        traces=_exporter("traces", environ, explicit=traces),
        metrics=_exporter("metrics", environ, explicit=None),
        sampler=_sampler(environ),
        resource_attributes=_resource(service_name, environ),
        metric_interval_s=(_millis("OTEL_METRIC_EXPORT_INTERVAL", environ)
                           or _DEFAULT_METRIC_INTERVAL_MS) / 1000,
        attribute_value_limit=_attribute_limit(environ),
        conventions=conventions_from_opt_in(env("OTEL_SEMCONV_STABILITY_OPT_IN", environ)),
    )


# --------------------------------------------------------------------------------------------


def _exporter(signal: Signal, environ: Mapping[str, str], *, explicit: str | None
              ) -> ExporterConfig:
    sig = signal.upper()
    specific_endpoint = env(f"OTEL_EXPORTER_OTLP_{sig}_ENDPOINT", environ)
    base_endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT", environ)

    names_raw = explicit if explicit is not None else env(f"OTEL_{sig}_EXPORTER", environ)
    if names_raw is None:  # our default: export only when the user pointed us at a collector
        names_raw = "otlp" if (specific_endpoint or base_endpoint) else "none"
    kinds: list[ExporterKind] = []
    for raw in names_raw.split(","):
        name = raw.strip().lower()
        if name in ("otlp", "console"):
            if name not in kinds:
                kinds.append(name)  # type: ignore[arg-type]
        elif name not in ("none", ""):
            _log.warning("OTEL_%s_EXPORTER=%r: only otlp, console and none are supported; "
                         "ignoring %r", sig, names_raw, name)

    raw_protocol = (env(f"OTEL_EXPORTER_OTLP_{sig}_PROTOCOL", environ)
                    or env("OTEL_EXPORTER_OTLP_PROTOCOL", environ) or "http/protobuf")
    protocol: Protocol
    if raw_protocol.strip().lower() in ("grpc", "http/protobuf"):
        protocol = raw_protocol.strip().lower()  # type: ignore[assignment]
    else:
        _log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%r is not supported (grpc, http/protobuf); "
                     "using http/protobuf", raw_protocol)
        protocol = "http/protobuf"

    if specific_endpoint is not None:  # per-signal endpoints are used verbatim
        endpoint = specific_endpoint
    else:
        endpoint = base_endpoint or _DEFAULT_ENDPOINT[protocol]
        if protocol == "http/protobuf":  # the base URL gets the signal path appended
            endpoint = endpoint.rstrip("/") + f"/v1/{signal}"

    scheme = urllib.parse.urlsplit(endpoint).scheme.lower()
    if scheme in ("http", "https"):
        insecure = scheme == "http"
    else:  # "host:port" without a scheme (gRPC style): TLS unless told otherwise
        try:
            insecure = bool(env_flag("OTEL_EXPORTER_OTLP_INSECURE", environ))
        except ConfigurationError as exc:
            _log.warning("%s; using TLS", exc)
            insecure = False

    headers = _headers(env("OTEL_EXPORTER_OTLP_HEADERS", environ))
    headers.update(_headers(env(f"OTEL_EXPORTER_OTLP_{sig}_HEADERS", environ)))
    timeout_ms = (_millis(f"OTEL_EXPORTER_OTLP_{sig}_TIMEOUT", environ)
                  or _millis("OTEL_EXPORTER_OTLP_TIMEOUT", environ) or _DEFAULT_TIMEOUT_MS)
    return ExporterConfig(
        signal=signal, kinds=tuple(kinds), protocol=protocol, endpoint=endpoint,
        insecure=insecure, headers=headers, timeout_s=timeout_ms / 1000,
    )


def _headers(raw: str | None) -> dict[str, str]:
    """W3C-baggage-style `k=v,k2=v2`, percent-decoded; header names lower-cased."""
    return {k.lower(): v for k, v in _kv(raw).items()}


def _millis(name: str, environ: Mapping[str, str]) -> int | None:
    """A positive number of milliseconds, or None (unset, or invalid: logged)."""
    raw = env(name, environ)
    if raw is None:
        return None
    try:
        value = int(float(raw))
    except ValueError:
        value = -1
    if value <= 0:
        _log.warning("%s=%r is not a positive number of milliseconds; ignoring it", name, raw)
        return None
    return value


def _sampler(environ: Mapping[str, str]) -> Sampler:
    name = (env("OTEL_TRACES_SAMPLER", environ) or "parentbased_always_on").strip().lower()
    raw_arg = env("OTEL_TRACES_SAMPLER_ARG", environ)
    ratio = 1.0
    if raw_arg is not None:
        try:
            ratio = float(raw_arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            _log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio in [0, 1]; using 1.0", raw_arg)
            ratio = 1.0
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    found = samplers.get(name)
    if found is None:
        _log.warning("OTEL_TRACES_SAMPLER=%r is not supported; using parentbased_always_on", name)
        return samplers["parentbased_always_on"]
    return found


def _resource(service_name: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    attrs = _kv(env("OTEL_RESOURCE_ATTRIBUTES", environ))
    # OTEL_SERVICE_NAME (already in the resolved service_name, after the explicit argument) wins.
    attrs["service.name"] = service_name or attrs.get("service.name") or "unknown_service"
    return attrs


def _kv(raw: str | None) -> dict[str, str]:
    """`k=v,k2=v2`, percent-decoded; malformed entries are logged and skipped."""
    out: dict[str, str] = {}
    for pair in (raw or "").split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _log.warning("ignoring malformed OTEL key=value entry %r", pair)
            continue
        out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


def _attribute_limit(environ: Mapping[str, str]) -> int | None:
    for name in ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"):
        raw = env(name, environ)
        if raw is not None:
            try:
                return max(0, int(raw))
            except ValueError:
                _log.warning("%s=%r is not an integer; ignoring it", name, raw)
    return None
