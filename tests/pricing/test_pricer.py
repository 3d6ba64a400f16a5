"""The Pricer against genai-prices' own figures, the user's table, and the unpriced cases.

The expected figure of each matrix case is genai-prices' own: its extractor reads the
provider's native response JSON (Anthropic's input excludes cache, Google's candidates exclude
thoughts, ...) and its `calc_price` prices that. Our record carries the same call in our token
definition (input includes cache reads and writes, output includes reasoning), as an adapter
produces it. Equal Decimals mean no cache or reasoning token is charged twice or missed; a hand
computation from the published prices pins a few of them independently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices import extract_usage

from instrument.errors import ConfigurationError
from instrument.pricing import USER_SOURCE, Pricer, PriceTable, price_context
from instrument.record import ExecutionRecord, TokenUsage
from tests.pricing.records import AT, per_mtok, priced_record, tok

SOURCE = f"genai-prices {genai_prices.__version__}"


@dataclass(frozen=True)
class Case:
    id: str
    provider: str  # what the adapter puts in the record
    model: str
    native: dict[str, Any]  # the provider's response, as genai-prices' extractor reads it
    flavor: str
    ours: TokenUsage  # the same usage in our definition
    tier: str | None = None
    at: datetime = AT
    by_hand: Decimal | None = None


CASES = [
    Case("openai-chat-cached-input", "openai", "gpt-4o-2024-08-06",
         {"model": "gpt-4o-2024-08-06", "usage": {
             "prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
             "prompt_tokens_details": {"cached_tokens": 1024},
             "completion_tokens_details": {"reasoning_tokens": 0}}}, "chat",
         tok(2000, 300, cached=1024, reasoning=0),
         by_hand=per_mtok((976, "2.5"), (1024, "1.25"), (300, "10"))),
    Case("openai-reasoning-model", "openai", "o4-mini-2025-04-16",
         {"model": "o4-mini-2025-04-16", "usage": {
             "prompt_tokens": 2000, "completion_tokens": 800, "total_tokens": 2800,
             "prompt_tokens_details": {"cached_tokens": 1000},
             "completion_tokens_details": {"reasoning_tokens": 500}}}, "chat",
         tok(2000, 800, cached=1000, reasoning=500),
         by_hand=per_mtok((1000, "1.1"), (1000, "0.275"), (800, "4.4"))),
    Case("openai-responses-flex-tier", "openai", "o4-mini",
         {"model": "o4-mini", "usage": {
             "input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1000},
             "output_tokens": 800, "output_tokens_details": {"reasoning_tokens": 500},
             "total_tokens": 2800}}, "responses",
         tok(2000, 800, cached=1000, reasoning=500), tier="flex",
         by_hand=per_mtok((1000, "0.55"), (1000, "0.138"), (800, "2.2"))),
    Case("openai-priority-tier", "openai", "gpt-4o",
         {"model": "gpt-4o", "usage": {"prompt_tokens": 5000, "completion_tokens": 100,
                                       "total_tokens": 5100}}, "chat",
         tok(5000, 100), tier="priority", by_hand=per_mtok((5000, "4.25"), (100, "17"))),
    Case("anthropic-cache-writes", "anthropic", "claude-sonnet-4-5-20250929",
         {"model": "claude-sonnet-4-5-20250929", "usage": {
             "input_tokens": 1200, "cache_read_input_tokens": 30000,
             "cache_creation_input_tokens": 5000, "output_tokens": 800}}, "default",
         tok(36200, 800, cached=30000, write=5000),
         by_hand=per_mtok((1200, "3"), (30000, "0.3"), (5000, "3.75"), (800, "15"))),
    Case("anthropic-over-200k-tier", "anthropic", "claude-sonnet-4-5",
         {"model": "claude-sonnet-4-5", "usage": {
             "input_tokens": 150000, "cache_read_input_tokens": 60000,
             "cache_creation_input_tokens": 10000, "output_tokens": 2000}}, "default",
         tok(220000, 2000, cached=60000, write=10000)),
    Case("anthropic-batch", "anthropic", "claude-opus-4-1-20250805",
         {"model": "claude-opus-4-1-20250805", "usage": {
             "input_tokens": 4000, "output_tokens": 1000}}, "default",
         tok(4000, 1000), tier="batch"),
    Case("google-thinking-over-200k", "gcp.gemini", "gemini-2.5-pro",
         {"modelVersion": "gemini-2.5-pro", "usageMetadata": {
             "promptTokenCount": 250000, "cachedContentTokenCount": 50000,
             "candidatesTokenCount": 1000, "thoughtsTokenCount": 700,
             "totalTokenCount": 251700}}, "default",
         tok(250000, 1700, cached=50000, reasoning=700)),
    Case("google-flash", "google", "gemini-2.5-flash",
         {"modelVersion": "gemini-2.5-flash", "usageMetadata": {
             "promptTokenCount": 12000, "candidatesTokenCount": 400,
             "totalTokenCount": 12400}}, "default",
         tok(12000, 400), by_hand=per_mtok((12000, "0.3"), (400, "2.5"))),
    Case("google-priority-tier", "google", "gemini-4-neon",
         {"modelVersion": "gemini-4-neon", "usageMetadata": {
             "promptTokenCount": 10000, "cachedContentTokenCount": 2000,
             "candidatesTokenCount": 500, "totalTokenCount": 10500}}, "default",
         tok(10000, 500, cached=2000), tier="priority",
         by_hand=per_mtok((8000, "5.4"), (2000, "0.27"), (500, "27"))),
    Case("perplexity-reasoning-priced-apart", "perplexity", "sonar-deep-research",
         {"model": "sonar-deep-research", "usage": {
             "prompt_tokens": 1000, "completion_tokens": 2000, "reasoning_tokens": 3000,
             "citation_tokens": 0, "total_tokens": 6000}}, "default",
         tok(1000, 5000, reasoning=3000),
         by_hand=per_mtok((1000, "2"), (2000, "8"), (3000, "3"))),
    Case("deepseek-peak-hours", "deepseek", "deepseek-chat",
         {"model": "deepseek-chat", "usage": {
             "prompt_tokens": 3000, "completion_tokens": 600, "total_tokens": 3600,
             "prompt_cache_hit_tokens": 1000, "prompt_cache_miss_tokens": 2000,
             "prompt_tokens_details": {"cached_tokens": 1000}}}, "chat",
         tok(3000, 600, cached=1000), at=datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
         by_hand=per_mtok((2000, "0.27"), (1000, "0.07"), (600, "1.1"))),
    Case("deepseek-off-peak", "deepseek", "deepseek-chat",
         {"model": "deepseek-chat", "usage": {
             "prompt_tokens": 3000, "completion_tokens": 600, "total_tokens": 3600,
             "prompt_cache_hit_tokens": 1000, "prompt_cache_miss_tokens": 2000,
             "prompt_tokens_details": {"cached_tokens": 1000}}}, "chat",
         tok(3000, 600, cached=1000), at=datetime(2026, 12, 3, 20, 0, tzinfo=UTC),
         by_hand=per_mtok((2000, "0.135"), (1000, "0.035"), (600, "0.55"))),
]


def genai_prices_figure(case: Case) -> Decimal:
    """genai-prices' own cost for the native response (its extractor, its calc_price)."""
    pid = {"gcp.gemini": "google"}.get(case.provider, case.provider)
    extracted = extract_usage(case.native, provider_id=pid, api_flavor=case.flavor)
    calc = extracted.calc_price(genai_request_timestamp=case.at,
                                price_context=price_context(case.tier))
    return calc.total_price


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cost_equals_genai_prices_own_figure(case: Case) -> None:
    record = priced_record(case.model, case.provider, tokens=case.ours, tier=case.tier,
                           at=case.at)
    cost, source = Pricer().price(record)
    expected = genai_prices_figure(case)
    assert cost == expected, f"{case.id}: {cost} != genai-prices' {expected}"
    assert source == SOURCE
    assert cost is not None
    assert cost > 0
    if case.by_hand is not None:
        assert cost == case.by_hand, f"{case.id}: {cost} != hand computation {case.by_hand}"


def test_tiers_and_times_change_the_price() -> None:
    """The matrix would pass if tier and time were ignored where they make no difference;
    here they must."""
    p = Pricer()
    usage = tok(2000, 800, cached=1000, reasoning=500)
    standard = p.price(priced_record("o4-mini", "openai", tokens=usage))[0]
    flex = p.price(priced_record("o4-mini", "openai", tokens=usage, tier="flex"))[0]
    unknown_tier = p.price(priced_record("o4-mini", "openai", tokens=usage, tier="scale"))[0]
    assert standard is not None
    assert flex is not None
    assert flex < standard
    assert unknown_tier == standard  # a tier the data does not list: the standard price
    peak, off = (p.price(priced_record("deepseek-chat", "deepseek", tokens=usage,
                                       at=datetime(2026, 12, 3, h, tzinfo=UTC)))[0]
                 for h in (9, 20))
    assert peak is not None
    assert off is not None
    assert off < peak


def test_cached_input_is_cheaper_than_the_same_input_uncached() -> None:
    p = Pricer()
    cached = p.price(priced_record("gpt-4o", "openai", tokens=tok(2000, 300, cached=1024)))[0]
    plain = p.price(priced_record("gpt-4o", "openai", tokens=tok(2000, 300)))[0]
    assert cached is not None
    assert plain is not None
    assert plain - cached == per_mtok((1024, "1.25"))  # 1024 tokens at 2.5 - 1.25, no more


@pytest.mark.parametrize(("provider", "model"), [
    (None, "gpt-4o"),                 # no provider: genai-prices finds it by the model name
    ("x_ai", "grok-4"),               # OpenTelemetry's provider names
    ("azure.ai.openai", "gpt-4o"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("litellm", "anthropic/claude-sonnet-4-5"),
])
def test_provider_names_resolve(provider: str | None, model: str) -> None:
    cost, source = Pricer().price(priced_record(model, provider, tokens=tok(1000, 100)))
    assert cost is not None
    assert cost > 0
    assert source == SOURCE


def test_request_model_prices_an_answer_model_genai_prices_does_not_know() -> None:
    record = priced_record("gpt-4o-mini-2099-01-01-custom-build", "openai",
                           request_model="gpt-4o-mini", tokens=tok(1000, 100))
    assert Pricer().price(record)[0] == per_mtok((1000, "0.15"), (100, "0.6"))


@pytest.mark.parametrize("record", [
    priced_record("gpt-4o", "openai", tokens=None),
    priced_record("gpt-4o", "openai", tokens=tok(None, 100)),
    priced_record("gpt-4o", "openai", tokens=tok(1000, None)),
    priced_record(None, "openai", tokens=tok(1000, 100)),
    priced_record("no-such-model-anywhere", "openai", tokens=tok(1000, 100)),
    priced_record("no-such-model-anywhere", None, tokens=tok(1000, 100)),
    priced_record("llama3", "ollama", tokens=tok(1000, 100)),  # unknown provider: no guess
], ids=["no-tokens", "input-unmeasured", "output-unmeasured", "no-model", "unknown-model",
        "unknown-model-no-provider", "unknown-provider"])
def test_unpriced_stays_none_never_zero(record: ExecutionRecord) -> None:
    p = Pricer(PriceTable.parse({"other-model": {"input_mtok": 1, "output_mtok": 1}}))
    assert p.price(record) == (None, None)
    assert p.apply(record) is record  # nothing changed, no made-up cost


def test_zero_measured_tokens_cost_zero() -> None:
    assert Pricer().price(priced_record("gpt-4o", "openai", tokens=tok(0, 0))) == (
        Decimal(0), SOURCE)


def test_the_user_table_wins_and_is_named_user() -> None:
    table = {"gpt-4o": {"input_mtok": 2, "cache_read_mtok": "0.5", "cache_write_mtok": 3,
                        "output_mtok": 8.25}}
    p = Pricer(table)
    record = priced_record("GPT-4o", "openai", tokens=tok(3000, 400, cached=1000, write=500))
    cost, source = p.price(record)
    assert source == USER_SOURCE
    assert cost == per_mtok((1500, "2"), (1000, "0.5"), (500, "3"), (400, "8.25"))
    assert cost != Pricer().price(record)[0]
    # a model the table does not name still gets genai-prices' price
    other = priced_record("gpt-4o-mini", "openai", tokens=tok(1000, 100))
    assert p.price(other) == (per_mtok((1000, "0.15"), (100, "0.6")), SOURCE)


def test_user_table_cache_keys_fall_back_to_input_and_match_the_asked_model() -> None:
    p = Pricer({"my-finetune": {"input_mtok": 4, "output_mtok": 16}})
    record = priced_record("my-finetune:2026-11-30", "openai", request_model="my-finetune",
                           tokens=tok(1000, 10, cached=600, write=100))
    assert p.price(record) == (per_mtok((1000, "4"), (10, "16")), USER_SOURCE)


def test_user_table_without_genai_prices() -> None:
    p = Pricer({"a": {"input_mtok": 1, "output_mtok": 1}}, use_genai_prices=False)
    assert p.price(priced_record("gpt-4o", "openai", tokens=tok(10, 10))) == (None, None)
    assert p.price(priced_record("a", None, tokens=tok(10, 10)))[0] == per_mtok((20, "1"))


@pytest.mark.parametrize(("table", "says"), [
    ({"m": {"input_mtok": 1}}, "lacks output_mtok"),
    ({"m": {"input_mtok": 1, "output_mtok": 1, "cache_mtok": 1}}, "unknown key(s) cache_mtok"),
    ({"m": {"input_mtok": -1, "output_mtok": 1}}, "not a price"),
    ({"m": {"input_mtok": True, "output_mtok": 1}}, "not a price"),
    ({"m": {"input_mtok": "cheap", "output_mtok": 1}}, "not a price"),
    ({"m": {"input_mtok": float("nan"), "output_mtok": 1}}, "not a price"),
    ({"m": [1, 2]}, "must be an object"),
    ({"": {"input_mtok": 1, "output_mtok": 1}}, "not a model name"),
    ({"M": {"input_mtok": 1, "output_mtok": 1}, "m": {"input_mtok": 1, "output_mtok": 1}},
     "twice"),
])
def test_a_bad_table_is_refused_with_the_fix(table: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Pricer(table)


def test_an_existing_cost_is_kept() -> None:
    record = priced_record("gpt-4o", "openai", tokens=tok(1000, 100),
                           cost_usd=Decimal("0.42"), price_source="adapter")
    p = Pricer({"gpt-4o": {"input_mtok": 1, "output_mtok": 1}})
    assert p.price(record) == (Decimal("0.42"), "adapter")
    assert p.apply(record) is record


def test_apply_sets_cost_and_source_on_a_copy() -> None:
    record = priced_record("gpt-4o", "openai", tokens=tok(1000, 100))
    priced = Pricer().apply(record)
    assert record.result.cost_usd is None
    assert priced.result.cost_usd == per_mtok((1000, "2.5"), (100, "10"))
    assert priced.result.price_source == SOURCE
    assert priced.model_dump(exclude={"result"}) == record.model_dump(exclude={"result"})
    assert priced.result.model_dump(exclude={"cost_usd", "price_source"}) == (
        record.result.model_dump(exclude={"cost_usd", "price_source"}))


def test_contradicting_counts_log_once_and_stay_unpriced(
        caplog: pytest.LogCaptureFixture) -> None:
    p = Pricer({"mine": {"input_mtok": 1, "output_mtok": 1}})
    bad = [priced_record("gpt-4o", "openai", tokens=tok(100, 10, cached=500)),
           priced_record("mine", None, tokens=tok(100, 10, cached=500))]
    with caplog.at_level(logging.WARNING, logger="instrument.pricing"):
        for _ in range(5):
            for r in bad:
                assert p.apply(r) is r
    lines = [r for r in caplog.records if "could not price" in r.getMessage()]
    assert len(lines) == 2  # once per model within the minute, not once per record


def test_listeners_see_every_record_and_a_failing_one_is_contained(
        caplog: pytest.LogCaptureFixture) -> None:
    p = Pricer()
    seen: list[ExecutionRecord] = []

    def broken(record: ExecutionRecord) -> None:
        raise RuntimeError("budget bug")

    p.add_listener(broken)
    p.add_listener(seen.append)
    records = [priced_record("gpt-4o", "openai", tokens=tok(1000, 100)),
               priced_record("unknown-model", "openai", tokens=tok(1000, 100))]
    out = [p.apply(r) for r in records]
    assert seen == out
    assert seen[0].result.cost_usd is not None
    assert seen[1].result.cost_usd is None
    assert "budget bug" in caplog.text
    p.remove_listener(seen.append)
    p.apply(records[0])
    assert len(seen) == 2


def test_prices_fetched_by_update_prices_are_named_with_their_time() -> None:
    """genai-prices' opt-in updater installs a snapshot; the source says it is not the
    bundled one. (No network: the bundled providers are installed as if fetched.)"""
    from genai_prices.data_snapshot import DataSnapshot, get_snapshot, set_custom_snapshot

    p = Pricer()
    record = priced_record("gpt-4o", "openai", tokens=tok(1000, 100))
    assert p.price(record)[1] == SOURCE
    fetched = DataSnapshot(get_snapshot().providers, from_auto_update=True,
                           timestamp=datetime(2026, 12, 4, 8, 30))
    set_custom_snapshot(fetched)
    try:
        cost, source = p.price(record)
    finally:
        set_custom_snapshot(None)
    assert cost == per_mtok((1000, "2.5"), (100, "10"))
    assert source is not None
    assert source.startswith(SOURCE + " fetched 2026-12-04T")
    assert p.price(record)[1] == SOURCE
