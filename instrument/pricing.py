"""Cost per execution: a user price table first, then genai-prices' bundled price data.

Pure (no I/O of its own): the delivery worker calls :meth:`Pricer.apply` on each record in the
background, once, before the stores and writers see it, so every store writes the same
``cost_usd`` and ``price_source`` (see docs/accounting.md, "Prices").

Why each rule:

* Our token definition is the GenAI conventions' one, and genai-prices uses the same: its
  ``input_tokens`` is the ancestor of ``cache_read_tokens`` and ``cache_write_tokens`` (it
  subtracts them before pricing the rest at the input rate), and ``output_tokens`` the ancestor
  of ``output_reasoning_tokens``. So the counts map one to one and nothing is charged twice.
* Unknown model, unknown provider, or unmeasured input/output tokens: cost ``None``
  ("unpriced"), never 0, and never another provider's price for a provider we do not know (a
  local server answering ``llama3`` is free; a guess would invent spend).
* A record that already carries ``cost_usd`` (an adapter or the user set it) is kept as is.
* Prices are pinned per process: genai-prices' bundled snapshot, no network call. A process
  that starts ``genai_prices.UpdatePrices()`` itself gets fetched prices, and ``price_source``
  says so with the fetch time, so history stays reproducible.
* Records are priced at their ``started_at``: genai-prices has dated prices and off-peak
  windows.
* Never raises: a pricing failure is logged (rate limited) and leaves the cost ``None``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from instrument.errors import ConfigurationError
from instrument.ratelimit import RateLimiter, held_back
from instrument.record import ExecutionRecord, TokenUsage, usd_amount

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, Provider

__all__ = [
    "DB_SOURCE",
    "PRICE_KEYS",
    "USER_SOURCE",
    "ModelRate",
    "PriceListener",
    "PriceTable",
    "Pricer",
    "genai_prices_source",
    "price_context",
]

_log = logging.getLogger(__name__)

#: The keys of one model's row in a user price table (USD per million tokens).
PRICE_KEYS: Final = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
_REQUIRED: Final = ("input_mtok", "output_mtok")
#: ``price_source`` of a cost computed from the user's table.
USER_SOURCE: Final = "user"
#: price_source of a price from the table in the user's database (plus `` v<version>``)
DB_SOURCE: Final = "user table"
#: how often the database table is read again, and retried after a failed read
DB_REFRESH_S: Final = 300.0
DB_RETRY_S: Final = 30.0


def _version_key(v: str) -> tuple[int, int | str]:
    return (0, int(v)) if v.isdigit() else (1, v)
_MTOK: Final = Decimal(1_000_000)
#: OpenTelemetry GenAI provider names genai-prices does not resolve by itself.
_PROVIDER_ALIASES: Final[Mapping[str, str]] = {
    "x_ai": "x-ai",
    "gcp.gen_ai": "google",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
}
#: model lookups remembered (hits and misses); past this the memo starts over
_MEMO_MAX: Final = 4096

#: Called with each record the pipeline priced (its cost may be ``None``), in the worker thread.
PriceListener = Callable[[ExecutionRecord], None]


@dataclass(frozen=True, slots=True)
class ModelRate:
    """One model's prices in USD per million tokens (a user table row)."""

    input_mtok: Decimal
    cache_read_mtok: Decimal
    cache_write_mtok: Decimal
    output_mtok: Decimal

    def cost(self, tokens: TokenUsage) -> Decimal | None:
        """The cost of `tokens`; ``None`` when input or output is unmeasured or the counts
        contradict each other (more cached than input). Unmeasured cache counts are priced
        as uncached input (what the provider bills when it caches nothing)."""
        inp, out = tokens.input_tokens, tokens.output_tokens
        if inp is None or out is None:
            return None
        read = tokens.cached_input_tokens or 0
        write = tokens.cache_write_input_tokens or 0
        fresh = inp - read - write
        if fresh < 0:
            raise ValueError(f"cached ({read}) plus cache-write ({write}) tokens exceed input "
                             f"tokens ({inp})")
        return (fresh * self.input_mtok + read * self.cache_read_mtok
                + write * self.cache_write_mtok + out * self.output_mtok) / _MTOK


def _usd(model: str, key: str, value: object) -> Decimal:
    """A price as an exact Decimal (a float through its shortest repr: 0.15 is 0.15)."""
    return usd_amount(value, ConfigurationError(
        f"prices[{model!r}][{key!r}]={value!r} is not a price; give USD per million tokens "
        "as a non-negative number (e.g. 2.5) or a decimal string"))




class PriceTable:
    """The user's prices, by model name (case-insensitive), validated once at configure()."""

    __slots__ = ("_rates",)

    def __init__(self, rates: Mapping[str, ModelRate]) -> None:
        self._rates = {name.casefold(): rate for name, rate in rates.items()}

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PriceTable:
        """``{model: {"input_mtok": .., "cache_read_mtok": .., "cache_write_mtok": ..,
        "output_mtok": ..}}``; a missing cache key costs ``input_mtok``. Raises
        :class:`ConfigurationError` naming the model and key to fix."""
        if not isinstance(raw, Mapping):
            raise ConfigurationError(
                f"prices must map model names to prices, got {type(raw).__name__}; e.g. "
                '{"my-model": {"input_mtok": 1.0, "output_mtok": 4.0}}')
        rates: dict[str, ModelRate] = {}
        for model, row in raw.items():
            if not isinstance(model, str) or not model.strip():
                raise ConfigurationError(f"prices: {model!r} is not a model name")
            if not isinstance(row, Mapping):
                raise ConfigurationError(
                    f"prices[{model!r}] must be an object with {', '.join(PRICE_KEYS)}")
            unknown = sorted(str(k) for k in row if k not in PRICE_KEYS)
            if unknown:
                raise ConfigurationError(
                    f"prices[{model!r}] has unknown key(s) {', '.join(unknown)}; the keys are "
                    f"{', '.join(PRICE_KEYS)} (USD per million tokens)")
            missing = [k for k in _REQUIRED if k not in row]
            if missing:
                raise ConfigurationError(
                    f"prices[{model!r}] lacks {', '.join(missing)}; give 0 for a kind the "
                    "model does not bill")
            usd = {k: _usd(model, k, row[k]) for k in PRICE_KEYS if k in row}
            if model.casefold() in (m.casefold() for m in rates):
                raise ConfigurationError(
                    f"prices names {model!r} twice (model names match case-insensitively)")
            rates[model] = ModelRate(
                input_mtok=usd["input_mtok"],
                cache_read_mtok=usd.get("cache_read_mtok", usd["input_mtok"]),
                cache_write_mtok=usd.get("cache_write_mtok", usd["input_mtok"]),
                output_mtok=usd["output_mtok"])
        return cls(rates)

    def rate(self, model: str) -> ModelRate | None:
        return self._rates.get(model.casefold())

    def __len__(self) -> int:
        return len(self._rates)


def price_context(service_tier: str | None) -> dict[str, str] | None:
    """genai-prices' request context for a service tier: ``batch`` (Anthropic's tier for the
    Batch API) selects batch prices; any other tier is matched against the tier variants in
    the price data (OpenAI ``flex``/``priority``, Google ``flex``/``priority``...); a tier the
    data does not list (``standard``, ``scale``) gets the standard prices."""
    if not service_tier:
        return None
    tier = service_tier.strip().lower()
    return {"processing": "batch"} if tier == "batch" else {"service_tier": tier}


def genai_prices_source(snapshot: DataSnapshot) -> str:
    """``genai-prices 0.2.5``; with prices fetched by ``UpdatePrices``, the fetch time too."""
    from genai_prices import __version__  # genai-prices loads on the first priced record

    if not snapshot.from_auto_update:
        return f"genai-prices {__version__}"
    at = snapshot.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"genai-prices {__version__} fetched {at}"


_Found: TypeAlias = tuple["Provider", "ModelInfo"] | None


class Pricer:
    """Prices records: the user's table wins for the models it names, then genai-prices.

    Thread-safe (the worker thread and a replay may share one). Listeners added with
    :meth:`add_listener` are called once per record this pricer handles, priced or not, in the
    pipeline's worker thread, before the stores see it; a budget counts this process's spend
    with one. They must be quick and must not block; an exception in one is logged.
    """

    def __init__(self, table: PriceTable | Mapping[str, Any] | None = None, *,
                 use_genai_prices: bool = True, db_table: str | None = None) -> None:
        self.table = table if isinstance(table, PriceTable) or table is None else (
            PriceTable.parse(table))
        self.use_genai_prices = use_genai_prices
        #: a price table in the user's database (after the in-code table, before
        #: genai-prices); the delivery worker reads it with :meth:`load_rows`
        self.db_table = db_table
        self._db: PriceTable | None = None
        self._db_source = DB_SOURCE
        self._db_due = 0.0  # monotonic time of the next read
        self._listeners: tuple[PriceListener, ...] = ()
        self._settle_listeners: tuple[Callable[[list[ExecutionRecord]], object], ...] = ()
        self._lock = threading.Lock()
        self._snapshot: DataSnapshot | None = None
        self._source = ""
        self._memo: dict[tuple[str | None, str], _Found] = {}
        self._loud = RateLimiter(60.0)
        self._unknown = RateLimiter(3600.0)

    # -- the table in the user's database ------------------------------------------------------
    def db_due(self, now: float) -> bool:
        """Whether the database table should be (re)read now."""
        return self.db_table is not None and now >= self._db_due

    def load_rows(self, rows: list[dict[str, Any]], now: float) -> None:
        """Install the rows of the database table (``model``, the price columns, an optional
        ``version``). A bad table keeps the last good one and says what to fix; rows whose
        price columns are all empty are skipped. Never raises."""
        self._db_due = now + DB_REFRESH_S
        try:
            raw: dict[str, dict[str, Any]] = {}
            versions = []
            for row in rows:
                model = row.get("model")
                prices = {k: row[k] for k in PRICE_KEYS if row.get(k) is not None}
                if isinstance(model, str) and prices:
                    raw[model] = prices
                if row.get("version") is not None:
                    versions.append(str(row["version"]))
            table = PriceTable.parse(raw)
        except Exception as exc:  # the user's data: keep the last good table, say why
            self._complain(f"the price table {self.db_table}", exc)
            return
        self._db = table
        self._db_source = (f"{DB_SOURCE} v{max(versions, key=_version_key)}" if versions
                           else DB_SOURCE)

    def db_failed(self, exc: Exception, now: float) -> None:
        """Reading the database table failed: keep the last one, try again in a while."""
        self._db_due = now + DB_RETRY_S
        n = self._loud.admit("db table")
        if n is not None:
            _log.warning("logged-execution: reading the price table %s failed (%s: %s); "
                         "records are priced %s until it can be read (retried every %.0f s). "
                         "Create it with columns model, input_mtok, cache_read_mtok, "
                         "cache_write_mtok, output_mtok (and optionally version).%s",
                         self.db_table, type(exc).__name__, exc,
                         "with its last rows" if self._db is not None else "without it",
                         DB_RETRY_S, held_back(n))

    # -- listeners ----------------------------------------------------------------------------
    def add_listener(self, fn: PriceListener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, fn)

    def remove_listener(self, fn: PriceListener) -> None:
        with self._lock:
            self._listeners = tuple(f for f in self._listeners if f != fn)  # bound methods

    def add_settle_listener(self, fn: Callable[[list[ExecutionRecord]], object]) -> None:
        """`fn(records)` is called in the worker thread right after a batch holding them was
        committed to the store, or when they were quarantined (they never will be): a budget
        stops counting them itself once a store query can see them."""
        with self._lock:
            self._settle_listeners = (*self._settle_listeners, fn)

    def remove_settle_listener(self, fn: Callable[[list[ExecutionRecord]], object]) -> None:
        with self._lock:
            self._settle_listeners = tuple(f for f in self._settle_listeners if f != fn)

    def settled(self, records: list[ExecutionRecord]) -> None:
        """Tell the settle listeners; never raises."""
        for fn in self._settle_listeners:
            try:
                fn(records)
            except Exception as exc:  # a listener's bug: logged, delivery goes on
                name = getattr(fn, "__qualname__", repr(fn))
                n = self._loud.admit(f"settle listener {name}")
                if n is not None:
                    _log.warning("logged-execution: settle listener %s failed (%s: %s).%s",
                                 name, type(exc).__name__, exc, held_back(n))

    # -- pricing ------------------------------------------------------------------------------
    def apply(self, record: ExecutionRecord) -> ExecutionRecord:
        """`record` with ``cost_usd``/``price_source`` filled in (the same object when it is
        unpriced or already had a cost); then the listeners. Never raises."""
        try:
            result = record.result
            if result.cost_usd is None:
                cost, source = self.price(record)
                if cost is not None:
                    record = record.model_copy(update={"result": result.model_copy(
                        update={"cost_usd": cost, "price_source": source})})
        except Exception as exc:  # a pricing bug must never cost the record
            self._complain("apply", exc)
        for fn in self._listeners:
            try:
                fn(record)
            except Exception as exc:  # a listener's bug: logged, the record goes on
                name = getattr(fn, "__qualname__", repr(fn))
                n = self._loud.admit(f"listener {name}")
                if n is not None:
                    _log.warning("logged-execution: price listener %s failed (%s: %s); the "
                                 "record is delivered anyway.%s", name, type(exc).__name__,
                                 exc, held_back(n))
        return record

    def price(self, record: ExecutionRecord) -> tuple[Decimal | None, str | None]:
        """``(cost_usd, price_source)`` for `record`; ``(None, None)`` when it cannot be
        priced. A cost the record already has is returned as is. Never raises."""
        result = record.result
        if result.cost_usd is not None:
            return result.cost_usd, result.price_source
        tokens = result.tokens
        if tokens is None or tokens.input_tokens is None or tokens.output_tokens is None:
            return None, None
        # the model that answered, then the one asked for (a dated name may be unknown)
        models = list(dict.fromkeys(m for m in (result.model, result.request_model) if m))
        if not models:
            return None, None
        try:
            if self.table is not None:
                for model in models:
                    rate = self.table.rate(model)
                    if rate is not None:
                        return rate.cost(tokens), USER_SOURCE
            db = self._db
            if db is not None:
                for model in models:
                    rate = db.rate(model)
                    if rate is not None:
                        return rate.cost(tokens), self._db_source
            if self.use_genai_prices:
                return self._genai_price(record, tokens, models)
        except Exception as exc:  # contradicting counts, a bug in price data: unpriced
            self._complain(f"model {models[0]!r}", exc)
        return None, None

    def _genai_price(self, record: ExecutionRecord, tokens: TokenUsage, models: list[str]
                     ) -> tuple[Decimal | None, str | None]:
        from genai_prices import Usage  # genai-prices loads on the first priced record

        snapshot = self._current_snapshot()
        provider = record.result.provider
        for model in models:
            found = self._find(snapshot, provider, model)
            if found is None:
                continue
            prov, info = found
            usage = Usage(input_tokens=tokens.input_tokens,
                          cache_read_tokens=tokens.cached_input_tokens,
                          cache_write_tokens=tokens.cache_write_input_tokens,
                          output_tokens=tokens.output_tokens,
                          output_reasoning_tokens=tokens.reasoning_tokens)
            at = record.started_at if record.started_at.tzinfo is not None else (
                record.started_at.replace(tzinfo=UTC))
            calc = info.calc_price(usage, prov, genai_request_timestamp=at,
                                   auto_update_timestamp=None,
                                   price_context=price_context(record.result.service_tier))
            return calc.total_price, self._source
        n = self._unknown.admit(f"{provider}|{models[0]}")
        if n is not None:
            _log.info("logged-execution: no price for model %r (provider %r) in genai-prices; "
                      "its executions stay unpriced (cost NULL). Add it to "
                      "configure(prices=...) or INSTRUMENT_PRICES to price it.%s",
                      models[0], provider, held_back(n))
        return None, None

    def _current_snapshot(self) -> DataSnapshot:
        """genai-prices' data now: the bundled snapshot, or what UpdatePrices fetched."""
        from genai_prices.data_snapshot import get_snapshot

        snapshot = get_snapshot()
        if snapshot is not self._snapshot:
            with self._lock:
                self._memo = {}
                self._source = genai_prices_source(snapshot)
                self._snapshot = snapshot
        return snapshot

    def _find(self, snapshot: DataSnapshot, provider: str | None, model: str) -> _Found:
        key = (provider, model)
        memo = self._memo
        try:
            return memo[key]
        except KeyError:
            pass
        pid = None if provider is None else _PROVIDER_ALIASES.get(provider.lower(), provider)
        found: _Found
        try:
            found = snapshot.find_provider_model(model, None, pid, None)
        except LookupError:
            found = None
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[key] = found
        return found

    def _complain(self, what: str, exc: Exception) -> None:
        n = self._loud.admit(what)
        if n is not None:
            _log.warning("logged-execution: could not price an execution (%s: %s: %s); its "
                         "cost stays NULL. Check the adapter's token counts or the price "
                         "table.%s", what, type(exc).__name__, exc, held_back(n))

