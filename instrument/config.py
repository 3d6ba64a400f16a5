"""Settings: the one environment-variable table, defaults, and validation.

Precedence everywhere: explicit argument > environment variable > default. Nothing else in the
SDK reads ``os.environ``. A leaf: it imports only other leaves. The composition root
(:mod:`instrument.runtime`) resolves :class:`Settings` and hands each subsystem the plain
values it needs; ``configure``/``flush``/``shutdown`` live there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from instrument.errors import ConfigurationError
from instrument.urls import mask_url
from instrument.writers import BUILTIN_WRITERS, Writer

__all__ = [
    "ENV_VARS",
    "EnvVar",
    "Settings",
    "describe",
    "env",
    "env_flag",
    "resolve_settings",
    "spool_dir_for",
]

TracesMode = Literal["otlp", "console", "none"]
SpoolMode = Literal["write-through", "deferred"]
SPOOL_MODES: tuple[SpoolMode, ...] = ("write-through", "deferred")


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One documented environment variable (docs/configuration.md is checked against this)."""

    name: str
    default: str | None
    meaning: str


#: Every variable the SDK reads. The OTEL_* ones follow the OpenTelemetry specification.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("INSTRUMENT_DATABASE_URL", "sqlite:///instrument.db",
           "Store: `sqlite:///path.db`, `postgresql://user@host/db`, or `supabase`."),
    EnvVar("SUPABASE_URL", None, "Supabase project URL, used when the database URL is `supabase`."),
    EnvVar("SUPABASE_SERVICE_ROLE_KEY", None,
           "Supabase key the store writes with (service role; bypasses RLS)."),
    EnvVar("SUPABASE_KEY", None, "Fallback for SUPABASE_SERVICE_ROLE_KEY."),
    EnvVar("INSTRUMENT_WRITERS", "executions,logs,stats,intensity,usage_ledger",
           "Comma-separated built-in writers to enable."),
    EnvVar("INSTRUMENT_SPOOL_DIR", None,
           "Directory of the durable spool. Default: `<db file>.spool` next to a SQLite "
           "database, `~/.cache/logged-execution/spool` for network stores; `off` disables it."),
    EnvVar("INSTRUMENT_SPOOL_MODE", "write-through",
           "`write-through`: each record is appended to the spool (a copy into its memory "
           "map) before the call returns (survives `kill -9`). `deferred`: a background thread "
           "appends records every 10 ms (no faster since write-through uses the memory map; a "
           "`kill -9` can lose the last few tens of milliseconds)."),
    EnvVar("INSTRUMENT_CAPTURE_CONTENT", "false",
           "Keep response text (and tool arguments on spans). `true`, `false`, `spans`, `db`."),
    EnvVar("INSTRUMENT_STRICT", "false",
           "Raise the SDK's own errors instead of logging them (tests set this)."),
    EnvVar("INSTRUMENT_DISABLED", "false",
           "Turn the decorator into a pass-through: no records, no spans."),
    EnvVar("INSTRUMENT_REDACT_PATTERNS", None,
           "Extra regular expressions (separated by `;;`) whose matches are masked."),
    EnvVar("INSTRUMENT_BATCH_SIZE", "500", "Records per store transaction, at most."),
    EnvVar("INSTRUMENT_FLUSH_INTERVAL_MS", "200",
           "How long a partial batch may wait before it is written."),
    EnvVar("INSTRUMENT_QUEUE_SIZE", "10000",
           "Records held in memory before the pipeline spills to the spool."),
    EnvVar("INSTRUMENT_CONNECT_TIMEOUT_MS", "5000",
           "Longest wait to open a database connection (Postgres login included; Supabase "
           "HTTP connect)."),
    EnvVar("INSTRUMENT_STATEMENT_TIMEOUT_MS", "30000",
           "Longest a batch may run on the database: Postgres `SET LOCAL statement_timeout` "
           "in the batch's transaction; for Supabase, part of the HTTP timeout."),
    EnvVar("INSTRUMENT_NETWORK_TIMEOUT_MS", "10000",
           "TCP keepalives and `tcp_user_timeout` (Postgres). A connection that has not "
           "answered after the statement timeout plus this is dropped (an HTTP request "
           "abandoned) and the batch retried on a new one."),
    EnvVar("INSTRUMENT_AIS_CONFIG", None,
           "AIS overrides for off-write-path scoring: a JSON object of `ais_config` keys, or "
           "a path to a JSON file (stored scores use the database's `ais_config` table)."),
    EnvVar("INSTRUMENT_TRACE_URL", None,
           "Where `instrument show` links a trace: a URL with `{trace_id}` in it, or a Jaeger "
           "UI base URL (`http://localhost:16686`; `/trace/<id>` is appended)."),
    EnvVar("INSTRUMENT_PRICES", None,
           "Path to a JSON file of your own prices, `{model: {\"input_mtok\": USD, "
           "\"cache_read_mtok\": USD, \"cache_write_mtok\": USD, \"output_mtok\": USD}}` "
           "(USD per million tokens; a missing cache key costs `input_mtok`), or "
           "`table:NAME`, a table of those columns (plus `model`, optional `version`) in your "
           "database. They win over genai-prices for the models they name."),
    EnvVar("OTEL_SERVICE_NAME", None, "service.name of the resource (else `unknown_service`)."),
    EnvVar("OTEL_RESOURCE_ATTRIBUTES", None, "Extra resource attributes, `k=v,k2=v2`."),
    EnvVar("OTEL_SDK_DISABLED", "false", "Disable spans and metrics (database writes continue)."),
    EnvVar("OTEL_TRACES_EXPORTER", "otlp when an endpoint is set, else none",
           "`otlp`, `console` or `none`."),
    EnvVar("OTEL_METRICS_EXPORTER", "otlp when an endpoint is set, else none",
           "`otlp`, `console` or `none` (Jaeger accepts traces only)."),
    EnvVar("OTEL_EXPORTER_OTLP_ENDPOINT", None,
           "Collector base URL; http/protobuf appends `/v1/traces` and `/v1/metrics`."),
    EnvVar("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None, "Traces endpoint, used verbatim."),
    EnvVar("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", None, "Metrics endpoint, used verbatim."),
    EnvVar("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "`grpc` or `http/protobuf`."),
    EnvVar("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None, "Per-signal protocol override."),
    EnvVar("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", None, "Per-signal protocol override."),
    EnvVar("OTEL_EXPORTER_OTLP_HEADERS", None, "Headers sent with every export, `k=v,k2=v2`."),
    EnvVar("OTEL_EXPORTER_OTLP_TIMEOUT", "10000", "Export timeout in milliseconds."),
    EnvVar("OTEL_EXPORTER_OTLP_TRACES_HEADERS", None, "Per-signal headers, over OTLP_HEADERS."),
    EnvVar("OTEL_EXPORTER_OTLP_METRICS_HEADERS", None, "Per-signal headers, over OTLP_HEADERS."),
    EnvVar("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", None, "Per-signal export timeout (ms)."),
    EnvVar("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", None, "Per-signal export timeout (ms)."),
    EnvVar("OTEL_EXPORTER_OTLP_INSECURE", "false",
           "gRPC endpoints given without a scheme: plaintext instead of TLS."),
    EnvVar("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", None,
           "Longest span attribute value; captured content is truncated below it as valid JSON."),
    EnvVar("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", None,
           "Fallback for OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT."),
    EnvVar("OTEL_TRACES_SAMPLER", "parentbased_always_on", "Head sampler for our spans."),
    EnvVar("OTEL_TRACES_SAMPLER_ARG", None, "Ratio for the traceidratio samplers."),
    EnvVar("OTEL_METRIC_EXPORT_INTERVAL", "60000", "Metric export interval in milliseconds."),
    EnvVar("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", None,
           "Standard GenAI switch; `true`/`SPAN_ONLY`/`SPAN_AND_EVENT` turn span content on."),
    EnvVar("OTEL_SEMCONV_STABILITY_OPT_IN", None,
           "GenAI names: unset = current; `gen_ai/dup` = current and previous (v1.41); "
           "`gen_ai/previous` = previous only."),
)
_KNOWN = {v.name for v in ENV_VARS}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Read one documented variable. Reading an undocumented one is a bug, so it raises."""
    if name not in _KNOWN:
        raise KeyError(f"{name} is not in instrument.config.ENV_VARS; document it there first")
    value = (os.environ if environ is None else environ).get(name)
    return value if value not in (None, "") else None


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool | None:
    raw = env(name, environ)
    if raw is None:
        return None
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use true or false")


ContentPolicy = Literal["none", "spans", "db", "all"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved configuration of one pipeline. Built by :func:`resolve_settings`."""

    database_url: str = "sqlite:///instrument.db"
    writers: tuple[str, ...] = BUILTIN_WRITERS
    custom_writers: tuple[Writer, ...] = ()
    service_name: str | None = None
    traces: TracesMode | None = None
    #: Where response text / tool arguments may go: nowhere, spans only, database only, both.
    content: ContentPolicy = "none"
    spool_dir: str | None = None
    spool_mode: SpoolMode = "write-through"
    strict: bool = False
    disabled: bool = False
    redact_patterns: tuple[str, ...] = ()
    batch_size: int = 500
    flush_interval_s: float = 0.2
    queue_size: int = 10_000
    #: database timeouts (seconds): connect, a batch on the server, an unanswering network
    connect_timeout_s: float = 5.0
    statement_timeout_s: float = 30.0
    network_timeout_s: float = 10.0
    supabase_url: str | None = None
    supabase_key: str | None = None
    #: the user's price table as given (validated by :mod:`instrument.pricing` when the
    #: runtime is built); ``None``: genai-prices alone
    prices: Mapping[str, Any] | None = field(default=None, repr=False)
    #: a table of prices in the user's own database (``prices="table:model_prices"``), read
    #: by the delivery worker and re-read every few minutes; None: no such table
    prices_table: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def capture_content(self) -> bool:
        return self.content != "none"

    @property
    def content_to_spans(self) -> bool:
        return self.content in ("spans", "all")

    @property
    def content_to_db(self) -> bool:
        return self.content in ("db", "all")


def _content_policy(value: bool | str | None, environ: Mapping[str, str]) -> ContentPolicy:
    if value is None:
        raw = env("INSTRUMENT_CAPTURE_CONTENT", environ)
        if raw is None:
            std = (env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", environ) or "").lower()
            return "spans" if std in ("true", "span_only", "span_and_event") else "none"
        value = raw
    if value is True:
        return "all"
    if value is False:
        return "none"
    low = str(value).strip().lower()
    if low in _TRUE:
        return "all"
    if low in _FALSE or low == "none":
        return "none"
    if low in ("spans", "db", "all"):
        return low  # type: ignore[return-value]
    raise ConfigurationError(
        f"capture_content={value!r} is not valid; use true, false, 'spans', 'db' or 'all'"
    )


PricesArg = Mapping[str, Any] | str | os.PathLike[str] | None


_TABLE_PREFIX = "table:"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


def _prices_table(value: PricesArg, environ: Mapping[str, str]) -> str | None:
    """``table:NAME`` (argument or INSTRUMENT_PRICES): a price table in the user's database."""
    raw = value if value is not None else env("INSTRUMENT_PRICES", environ)
    if not isinstance(raw, str) or not raw.startswith(_TABLE_PREFIX):
        return None
    name = raw[len(_TABLE_PREFIX):].strip()
    if not _TABLE_NAME.match(name):
        raise ConfigurationError(
            f"prices={raw!r}: {name!r} is not a table name; write table:model_prices or "
            "table:billing.model_prices (letters, digits and underscores)")
    return name


def _prices(value: PricesArg, environ: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The user's price table: a mapping as given, or a JSON file (argument or
    INSTRUMENT_PRICES) read now, so a typo fails at configure() and not in the worker."""
    if _prices_table(value, environ) is not None:
        return None  # a table in the database: the delivery worker reads it
    if isinstance(value, Mapping):
        return dict(value)
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(
            f"prices={value!r} is neither a mapping of model prices nor a path to a JSON file")
    name = "prices" if value is not None else "INSTRUMENT_PRICES"
    raw = os.fspath(value) if value is not None else env("INSTRUMENT_PRICES", environ)
    if raw is None:
        return None
    path = Path(raw).expanduser()
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"{name}={raw!r}: cannot read the price file ({exc.strerror or exc}); give the "
            "path of a JSON file of model prices") from None
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r}: the price file is not valid JSON ({exc})"
                                 ) from None
    if not isinstance(table, dict):
        raise ConfigurationError(
            f"{name}={raw!r}: the price file must hold a JSON object of model prices, e.g. "
            '{"my-model": {"input_mtok": 1.0, "output_mtok": 4.0}}')
    return table


def _positive_int(name: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be a positive integer")
    return value


def _ms(name: str, environ: Mapping[str, str], default_ms: int) -> float:
    """A positive millisecond variable, in seconds."""
    return _positive_int(name, env(name, environ), default_ms) / 1000


def _explicit_positive(name: str, value: float | None) -> Any:
    """An explicit numeric argument, checked like its environment variable (None = not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name}={value!r} must be a positive number")
    if not name.endswith("_s") and not isinstance(value, int):
        raise ConfigurationError(f"{name}={value!r} must be a positive integer")
    return value


def resolve_settings(
    *,
    database_url: str | None = None,
    writers: Sequence[str | Writer] | None = None,
    service_name: str | None = None,
    traces: str | None = None,
    capture_content: bool | str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    strict: bool | None = None,
    redact_patterns: Sequence[str] | None = None,
    batch_size: int | None = None,
    flush_interval_s: float | None = None,
    queue_size: int | None = None,
    spool_mode: str | None = None,
    connect_timeout_s: float | None = None,
    statement_timeout_s: float | None = None,
    network_timeout_s: float | None = None,
    prices: PricesArg = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge arguments over environment over defaults, validating every value."""
    environ = dict(os.environ if environ is None else environ)

    url = database_url or env("INSTRUMENT_DATABASE_URL", environ) or "sqlite:///instrument.db"

    if writers is None:
        raw = env("INSTRUMENT_WRITERS", environ)
        writers = [w.strip() for w in raw.split(",") if w.strip()] if raw else list(BUILTIN_WRITERS)
    names: list[str] = []
    custom: list[Writer] = []
    for w in writers:
        if isinstance(w, str):
            if w not in BUILTIN_WRITERS:
                raise ConfigurationError(
                    f"unknown writer {w!r}; built-in writers are {', '.join(BUILTIN_WRITERS)} "
                    "(pass an object with `name` and `write(records)` for your own)"
                )
            if w not in names:
                names.append(w)
        elif isinstance(w, Writer):
            custom.append(w)
        else:
            raise ConfigurationError(
                f"writer {w!r} is neither a built-in name nor an object with `name` and `write()`"
            )

    if traces is not None and traces not in ("otlp", "console", "none"):
        raise ConfigurationError(f"traces={traces!r} is not valid; use 'otlp', 'console' or 'none'")

    spool = os.fspath(spool_dir) if spool_dir is not None else env("INSTRUMENT_SPOOL_DIR", environ)
    patterns = tuple(redact_patterns) if redact_patterns is not None else tuple(
        p for p in (env("INSTRUMENT_REDACT_PATTERNS", environ) or "").split(";;") if p
    )
    mode_source = "spool_mode" if spool_mode is not None else "INSTRUMENT_SPOOL_MODE"
    mode = spool_mode if spool_mode is not None else env("INSTRUMENT_SPOOL_MODE", environ)
    mode = (mode or "write-through").strip().lower()
    if mode not in SPOOL_MODES:
        raise ConfigurationError(
            f"{mode_source}={mode!r} is not valid; use 'write-through' (records on disk before "
            "the call returns) or 'deferred' (spooled every 10 ms, a faster call)")
    interval_ms = _positive_int(
        "INSTRUMENT_FLUSH_INTERVAL_MS", env("INSTRUMENT_FLUSH_INTERVAL_MS", environ), 200
    )
    return Settings(
        database_url=url,
        writers=tuple(names),
        custom_writers=tuple(custom),
        service_name=service_name or env("OTEL_SERVICE_NAME", environ),
        traces=traces,  # type: ignore[arg-type]
        content=_content_policy(capture_content, environ),
        spool_dir=spool,
        spool_mode=mode,
        strict=strict if strict is not None else bool(env_flag("INSTRUMENT_STRICT", environ)),
        disabled=bool(env_flag("INSTRUMENT_DISABLED", environ)),
        redact_patterns=patterns,
        batch_size=_explicit_positive("batch_size", batch_size)
        or _positive_int("INSTRUMENT_BATCH_SIZE", env("INSTRUMENT_BATCH_SIZE", environ), 500),
        flush_interval_s=_explicit_positive("flush_interval_s", flush_interval_s)
        or interval_ms / 1000,
        queue_size=_explicit_positive("queue_size", queue_size)
        or _positive_int("INSTRUMENT_QUEUE_SIZE", env("INSTRUMENT_QUEUE_SIZE", environ), 10_000),
        connect_timeout_s=_explicit_positive("connect_timeout_s", connect_timeout_s)
        or _ms("INSTRUMENT_CONNECT_TIMEOUT_MS", environ, 5000),
        statement_timeout_s=_explicit_positive("statement_timeout_s", statement_timeout_s)
        or _ms("INSTRUMENT_STATEMENT_TIMEOUT_MS", environ, 30_000),
        network_timeout_s=_explicit_positive("network_timeout_s", network_timeout_s)
        or _ms("INSTRUMENT_NETWORK_TIMEOUT_MS", environ, 10_000),
        supabase_url=env("SUPABASE_URL", environ),
        supabase_key=env("SUPABASE_SERVICE_ROLE_KEY", environ) or env("SUPABASE_KEY", environ),
        prices=_prices(prices, environ),
        prices_table=_prices_table(prices, environ),
        environ=environ,
    )


def describe(settings: Settings) -> dict[str, Any]:
    """Settings as a printable dict with secrets masked (for `instrument doctor`)."""
    return {
        "database_url": settings.database_url,
        "writers": list(settings.writers) + [w.name for w in settings.custom_writers],
        "service_name": settings.service_name,
        "traces": settings.traces,
        "content": settings.content,
        "spool_dir": settings.spool_dir,
        "spool_mode": settings.spool_mode,
        "strict": settings.strict,
        "disabled": settings.disabled,
        "prices": ((f"table {settings.prices_table} in the database, then "
                    if settings.prices_table else "")
                   + ("genai-prices" if settings.prices is None else
                      f"your table ({len(settings.prices)} models), then genai-prices")),
    }


def spool_dir_for(spool_dir: str | None, database_url: str, supabase_url: str | None
                  ) -> Path | None:
    """The spool directory for this configuration, or ``None`` when the spool is off.

    An explicit `spool_dir` (argument or INSTRUMENT_SPOOL_DIR) wins; ``off`` disables it. The
    default is ``<db file>.spool`` next to a SQLite database, and for network stores
    ``~/.cache/logged-execution/spool/<hash of the masked URL>`` (one queue per database, so
    records are never replayed into another database; for Supabase, one per project). An
    in-memory SQLite database has none.
    """
    if spool_dir is not None:
        if spool_dir.strip().lower() in ("off", "none", "false", "0", "disabled"):
            return None
        return Path(spool_dir).expanduser()
    url = database_url
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path == ":memory:":
            return None
        return Path(path + ".spool")
    if url == "sqlite://:memory:":
        return None
    # anything else (a typo like `sqlite://x.db` too) spools under the home directory: records
    # are kept while the URL cannot be used
    identity = mask_url(url)
    if url == "supabase" or url.startswith("supabase://"):
        identity += "|" + (supabase_url or "")  # one queue per Supabase project
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path("~/.cache/logged-execution/spool").expanduser() / digest
