"""Check emitted telemetry against the dated GenAI registry extract the project keeps.

``semconv_genai_2026-12.json`` (next to this file) is a verbatim copy of the extract taken from
``open-telemetry/semantic-conventions-genai`` (its ``source.commit`` and ``taken`` fields say
which YAML). The checker works on a neutral form (:class:`SeenSpan`, :class:`SeenMetric`) built
from the SDK's in-memory exporters or from decoded OTLP protobufs, and reports problems as
strings (an empty list means conformant):

- every attribute, event and metric name is in the registry (or, for the few general names we
  use, in the general registry below), or in our own ``instrument.`` namespace;
- no removed name, and none the registry keeps off the span type (``not_on_this_span``);
- values have the registry's types; required attributes are present; span kind and name follow
  the span type's rule; metric instrument, unit, attributes and bucket boundaries match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum

from tests.tracing.otlp_receiver import attributes

__all__ = ["REGISTRY", "Registry", "SeenMetric", "SeenSpan", "check", "from_otlp", "from_sdk"]

DATA = Path(__file__).with_name("semconv_genai_2026-12.json")
OURS = "instrument."

#: Names from the general registry (open-telemetry/semantic-conventions, model/error, user,
#: exception: all stable) that GenAI telemetry uses beside the gen_ai.* ones.
GENERAL: Mapping[str, str] = {
    "error.type": "string",
    "user.id": "string",
    "exception.type": "string",
    "exception.message": "string",
    "exception.stacktrace": "string",
}

#: Bucket boundaries docs/gen-ai/gen-ai-metrics.md gives at the extract's commit (the extract
#: itself lists no boundaries); written out here, not imported, so the check is independent.
BUCKETS: Mapping[str, tuple[float, ...]] = {
    "gen_ai.invocation.duration": (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4,
                                   204.8, 409.6),
    "gen_ai.invoke_agent.inference_calls": (1, 2, 4, 8, 16, 32, 64, 128),
    "gen_ai.invoke_agent.tool_calls": (1, 2, 4, 8, 16, 32, 64, 128),
    "gen_ai.execute_tool.duration": (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
                                     10.24, 20.48, 40.96, 81.92),
}

#: gen_ai.agent.id (and .version) identify a hosted agent resource: they belong on remote
#: (CLIENT) invoke_agent / create_agent spans, not on an in-process invocation (the registry's
#: note on gen_ai.agent.id; the invocation span type does not list them).
_HOSTED_AGENT_ONLY = frozenset({"gen_ai.agent.id", "gen_ai.agent.version"})

_SPAN_TYPE_BY_OPERATION = {
    "invoke_agent": "gen_ai.invocation.internal",
    "invoke_workflow": "gen_ai.invocation.internal",
    "handle_conversation_turn": "gen_ai.invocation.internal",
    "execute_tool": "gen_ai.execute_tool.internal",
}


@dataclass(frozen=True)
class SeenSpan:
    name: str
    kind: str  # "INTERNAL", "CLIENT", ...
    error: bool  # status ERROR
    attributes: Mapping[str, Any]
    events: Sequence[tuple[str, Mapping[str, Any]]] = ()


@dataclass(frozen=True)
class SeenMetric:
    name: str
    unit: str
    instrument: str  # "histogram", "counter", "gauge", "updowncounter"
    points: Sequence[Mapping[str, Any]] = ()  # attributes of each data point
    bounds: Sequence[Sequence[float]] = ()  # explicit bounds of each histogram point


@dataclass
class Registry:
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = DATA) -> Registry:
        return cls(json.loads(path.read_text()))

    @property
    def attributes(self) -> dict[str, Any]:
        return self.data["attributes"]  # type: ignore[no-any-return]

    @property
    def removed(self) -> dict[str, str]:
        return self.data["removed"]  # type: ignore[no-any-return]


REGISTRY = Registry.load()


def check(spans: Iterable[SeenSpan], metrics: Iterable[SeenMetric],
          registry: Registry = REGISTRY) -> list[str]:
    problems: list[str] = []
    for span in spans:
        problems.extend(_span(span, registry))
    for metric in metrics:
        problems.extend(_metric(metric, registry))
    return problems


# -- spans -------------------------------------------------------------------------------------


def _span(span: SeenSpan, reg: Registry) -> list[str]:
    where = f"span {span.name!r}"
    out: list[str] = []
    attrs = span.attributes
    op = attrs.get("gen_ai.operation.name")
    type_name = _SPAN_TYPE_BY_OPERATION.get(op) if isinstance(op, str) else None
    if type_name is None:
        return [f"{where}: gen_ai.operation.name {op!r} is not an operation of ours"]
    spec = reg.data["spans"][type_name]
    if span.kind != spec["kind"]:
        out.append(f"{where}: kind {span.kind}, the {type_name} type is {spec['kind']}")
    if op not in spec["operations"]:
        out.append(f"{where}: operation {op!r} is not one of {spec['operations']}")
    expected = _expected_name(type_name, attrs)
    if span.name != expected:
        out.append(f"{where}: the {type_name} naming rule gives {expected!r}")
    for key, level in spec["attributes"].items():
        if level == "required" and key not in attrs:
            out.append(f"{where}: required attribute {key} is missing")
    if span.error and "error.type" not in attrs:
        out.append(f"{where}: ended in an error without error.type")
    off = set(spec.get("not_on_this_span", ()))
    if type_name == "gen_ai.invocation.internal":
        off |= _HOSTED_AGENT_ONLY
    for key, value in attrs.items():
        if key in off:
            out.append(f"{where}: {key} does not belong on a {type_name} span")
        out.extend(_attribute(where, key, value, reg))
    for name, event_attrs in span.events:
        out.extend(_event(where, name, event_attrs, reg))
    return out


def _expected_name(type_name: str, attrs: Mapping[str, Any]) -> str:
    op = attrs["gen_ai.operation.name"]
    if type_name == "gen_ai.execute_tool.internal":
        return f"execute_tool {attrs.get('gen_ai.tool.name')}"
    for key in ("gen_ai.workflow.name", "gen_ai.agent.name"):
        if attrs.get(key):
            return f"{op} {attrs[key]}"
    return str(op)


def _event(where: str, name: str, attrs: Mapping[str, Any], reg: Registry) -> list[str]:
    here = f"{where}, event {name!r}"
    if name in reg.removed:
        return [f"{here}: removed from the registry ({reg.removed[name]})"]
    spec = reg.data["events"].get(name)
    if spec is None:
        return [f"{here}: not an event of the registry"]
    out: list[str] = []
    allowed = set(spec.get("attributes", ()))
    for key, value in attrs.items():
        if key not in allowed and not key.startswith(OURS):
            out.append(f"{here}: attribute {key} is not one of the event's {sorted(allowed)}")
        out.extend(_attribute(here, key, value, reg))
    if name == "gen_ai.client.operation.exception" and not (
            "exception.type" in attrs or "exception.message" in attrs):
        out.append(f"{here}: needs exception.type or exception.message")
    return out


# -- attributes --------------------------------------------------------------------------------


def _attribute(where: str, key: str, value: Any, reg: Registry) -> list[str]:
    if key.startswith(OURS):
        return []
    if key in reg.removed:
        return [f"{where}: {key} was removed from the registry ({reg.removed[key]})"]
    kind = reg.attributes.get(key, {}).get("type") or GENERAL.get(key)
    if kind is None and any(key.startswith(p) for p in reg.data["template_attribute_prefixes"]):
        kind = "string"
    if kind is None:
        return [f"{where}: {key} is neither in the registry nor under {OURS!r}"]
    if not _has_type(value, kind):
        return [f"{where}: {key}={value!r} is not of type {kind}"]
    return []


def _has_type(value: Any, kind: str) -> bool:
    if kind in ("string", "enum", "template[string]", "any"):  # "any": JSON, as a string
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "double":
        return isinstance(value, float)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string[]":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    raise AssertionError(f"the extract uses a type the checker does not know: {kind}")


# -- metrics -----------------------------------------------------------------------------------


def _metric(metric: SeenMetric, reg: Registry) -> list[str]:
    where = f"metric {metric.name!r}"
    if metric.name.startswith(OURS):
        return []
    if metric.name in reg.removed:
        return [f"{where}: removed from the registry ({reg.removed[metric.name]})"]
    spec = reg.data["metrics"].get(metric.name)
    if spec is None:
        return [f"{where}: neither in the registry nor under {OURS!r}"]
    out: list[str] = []
    if metric.instrument != spec["instrument"]:
        out.append(f"{where}: a {metric.instrument}, the registry says {spec['instrument']}")
    if metric.unit != spec["unit"]:
        out.append(f"{where}: unit {metric.unit!r}, the registry says {spec['unit']!r}")
    levels: Mapping[str, str] | None = spec.get("attributes")  # None: the extract lists none
    for attrs in metric.points:
        for key, level in (levels or {}).items():
            if level == "required" and key not in attrs:
                out.append(f"{where}: required attribute {key} missing on a point")
        for key, value in attrs.items():
            if levels is not None and key not in levels and not key.startswith(OURS):
                out.append(f"{where}: attribute {key} is not one of the metric's")
            out.extend(_attribute(where, key, value, reg))
    want = BUCKETS.get(metric.name)
    for bounds in metric.bounds:
        if want is not None and tuple(bounds) != want:
            out.append(f"{where}: buckets {list(bounds)}, the conventions give {list(want)}")
    return out


# -- the neutral form, from the SDK and from OTLP ---------------------------------------------


def from_sdk(spans: Iterable[Any], metrics_data: Any, scope: str = "logged-execution"
             ) -> tuple[list[SeenSpan], list[SeenMetric]]:
    """Our spans (by instrumentation scope) and metrics from the SDK's in-memory reader/exporter."""
    seen_spans = [
        SeenSpan(s.name, s.kind.name, s.status.status_code.name == "ERROR",
                 dict(s.attributes or {}),
                 [(e.name, dict(e.attributes or {})) for e in s.events])
        for s in spans if s.instrumentation_scope is not None
        and s.instrumentation_scope.name == scope]
    seen_metrics: list[SeenMetric] = []
    for rm in metrics_data.resource_metrics if metrics_data is not None else ():
        for sm in rm.scope_metrics:
            if sm.scope.name != scope:
                continue
            for m in sm.metrics:
                data = m.data
                points = [dict(p.attributes or {}) for p in data.data_points]
                if isinstance(data, Histogram):
                    seen_metrics.append(SeenMetric(
                        m.name, m.unit or "", "histogram", points,
                        [tuple(p.explicit_bounds) for p in data.data_points]))
                elif isinstance(data, Sum):
                    kind = "counter" if data.is_monotonic else "updowncounter"
                    seen_metrics.append(SeenMetric(m.name, m.unit or "", kind, points))
                elif isinstance(data, Gauge):
                    seen_metrics.append(SeenMetric(m.name, m.unit or "", "gauge", points))
    return seen_spans, seen_metrics


def from_otlp(received_spans: Iterable[Any], metric_requests: Iterable[Any],
              scope: str = "logged-execution") -> tuple[list[SeenSpan], list[SeenMetric]]:
    """The same from decoded OTLP protobufs (``tests.tracing.otlp_receiver``)."""
    seen_spans = [
        SeenSpan(r.name, Span.SpanKind.Name(r.span.kind).removeprefix("SPAN_KIND_"),
                 r.span.status.code == Status.STATUS_CODE_ERROR, r.attributes,
                 [(e.name, attributes(e.attributes)) for e in r.span.events])
        for r in received_spans if r.scope == scope]
    seen_metrics: list[SeenMetric] = []
    for request in metric_requests:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                if sm.scope.name != scope:
                    continue
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    points = [attributes(p.attributes) for p in data.data_points]
                    if kind == "histogram":
                        seen_metrics.append(SeenMetric(
                            m.name, m.unit, "histogram", points,
                            [tuple(p.explicit_bounds) for p in data.data_points]))
                    elif kind == "sum":
                        seen_metrics.append(SeenMetric(
                            m.name, m.unit, "counter" if data.is_monotonic else "updowncounter",
                            points))
                    else:
                        seen_metrics.append(SeenMetric(m.name, m.unit, kind, points))
    return seen_spans, seen_metrics
