"""Redaction of secret-looking values in error messages and extras."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instrument import logged_execution
from instrument.errors import ConfigurationError
from instrument.redact import MASK, Redactor, _mask, is_secret_key
from instrument.testing import capture

R = Redactor()


@pytest.mark.parametrize(("text", "expected"), [
    ("bad key sk-proj-abcDEF1234567890xyz", f"bad key {MASK}"),
    ("key sk-ant-api03-abcdefghijkl used", f"key {MASK} used"),
    ("stripe sk_live_51Habcdefghijklmn", f"stripe {MASK}"),
    ("Authorization: Bearer abc.def-ghi_jkl~mno", f"Authorization: Bearer {MASK}"),
    ("header authorization=Basic dXNlcjpwYXNzd29yZA==", f"header authorization=Basic {MASK}"),
    ('{"Authorization": "token ghp_abcdefghijklmnopqrstuvwxyz0123"}',
     f'{{"Authorization": "token {MASK}"}}'),
    ("curl -H 'bearer abcdefghijklmnop'", f"curl -H 'bearer {MASK}'"),
    ("postgresql://svc:hunter2@db.internal:5432/app",
     f"postgresql://svc:{MASK}@db.internal:5432/app"),
    ("redis://:p@ss:w0rd@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
    ("host=db user=app password=s3cret dbname=x", f"host=db user=app password={MASK} dbname=x"),
    ("Server=x;Uid=a;Pwd=topsecret;", f"Server=x;Uid=a;Pwd={MASK};"),
    ('{"password": "hunter2", "user": "bob"}', f'{{"password": "{MASK}", "user": "bob"}}'),
    ("api_key: abc123xyz", f"api_key: {MASK}"),
    ("https://x.io/cb?access_token=abc&state=1", f"https://x.io/cb?access_token={MASK}&state=1"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.sflKxwRJSMeKKF2QT4fwpM", f"jwt {MASK}"),
    ("aws AKIAIOSFODNN7EXAMPLE key", f"aws {MASK} key"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", MASK),
])
def test_default_patterns(text: str, expected: str) -> None:
    assert R.text(text) == expected


@pytest.mark.parametrize("text", [
    "max_tokens=100 and total_tokens: 5",
    "token limit exceeded after 3 iterations",
    "basic functionality is broken",
    "the bearer of bad news",
    "http://localhost:8080/path?email=a@b.com",
    "Step s2 failed: timeout",
    "sk-short",
])
def test_innocent_text_kept(text: str) -> None:
    assert R.text(text) == text


def test_redaction_is_idempotent() -> None:
    once = R.text("Authorization: Bearer abcdefghijkl and postgres://u:p@h/db")
    assert R.text(once) == once


@pytest.mark.parametrize(("key", "secret"), [
    ("password", True), ("db_password", True), ("Passwd", True), ("api_key", True),
    ("apiKey", True), ("X-API-Key", True), ("access_token", True), ("refreshToken", True),
    ("token", True), ("client_secret", True), ("Authorization", True), ("Cookie", True),
    ("private_key", True), ("credentials", True),
    ("total_tokens", False), ("totalTokensSaved", False), ("input_tokens", False),
    ("token_count", False), ("execution_id", False), ("keyboard", False), ("author", False),
])
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_json_masks_by_key_and_pattern_recursively() -> None:
    value: dict[Any, Any] = {
        "password": "plain-looking", "token": 12345, "enabled": True, "secret": None,
        "nested": [{"Authorization": {"scheme": "x"}, "note": "sk-abcdefghijklmnop"}],
        "total_tokens": 99, ("t", 1): "tuple key",
    }
    out = R.json(value)
    assert out == {
        "password": MASK, "token": MASK, "enabled": True, "secret": None,
        "nested": [{"Authorization": MASK, "note": MASK}],
        "total_tokens": 99, ("t", 1): "tuple key",
    }
    assert value["password"] == "plain-looking"  # the input is not mutated


def test_json_is_cycle_and_depth_safe() -> None:
    cyclic: dict[str, Any] = {"a": "sk-abcdefghijklmnop"}
    cyclic["self"] = cyclic
    lst: list[Any] = []
    lst.append(lst)
    out = R.json({"c": cyclic, "l": lst})
    assert out == {"c": {"a": MASK, "self": "[CYCLE]"}, "l": ["[CYCLE]"]}
    deep: Any = "leaf"
    for _ in range(200):
        deep = [deep]
    assert "[TOO DEEP]" in json.dumps(R.json(deep))


def test_shared_subobjects_are_not_cycles() -> None:
    shared = {"x": 1}
    assert R.json({"a": shared, "b": shared}) == {"a": {"x": 1}, "b": {"x": 1}}


def test_extra_patterns_and_named_secret_group() -> None:
    r = Redactor([r"ACME-\d{6}", r"employee (?P<secret>\w+)"])
    assert r.text("id ACME-123456 for employee alice") == f"id {MASK} for employee {MASK}"
    assert Redactor(["foo"], defaults=False).text("foo sk-abcdefghijklmnop") == (
        f"{MASK} sk-abcdefghijklmnop")


def test_invalid_pattern_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"redact pattern '\(unclosed'"):
        Redactor(["(unclosed"])


def test_configured_patterns_apply_to_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_REDACT_PATTERNS", r"ACME-\d{6};;cust_[a-z]+")

    @logged_execution
    def run() -> dict[str, Any]:
        return {"success": False, "error": "customer cust_bob has ACME-424242",
                "extras": {"db": "postgres://app:pw123@h/db", "api_key": "k",
                           "note": "sk-abcdefghijklmnopq"}}

    with capture() as cap:
        run()
    (record,) = cap.records
    assert record.result.error is not None
    assert record.result.error.message == f"customer {MASK} has {MASK}"
    assert record.result.extras["db"] == f"postgres://app:{MASK}@h/db"
    assert record.result.extras["api_key"] == MASK
    assert record.result.extras["note"] == MASK


def test_exception_messages_are_redacted() -> None:
    @logged_execution
    def run() -> None:
        raise RuntimeError("login failed with password=hunter2 for sk-live0123456789ab")

    with capture() as cap, pytest.raises(RuntimeError, match="hunter2"):
        run()  # the host still sees its own, unredacted exception
    (record,) = cap.records
    assert record.result.error is not None
    assert "hunter2" not in record.result.error.message
    assert "sk-live0123456789ab" not in record.result.error.message


def test_tool_call_errors_are_redacted() -> None:
    @logged_execution(engine="agentkit")
    def run() -> dict[str, Any]:
        return {"success": False, "toolCalls": [
            {"plugin": "db", "action": "query", "success": False,
             "error": "connect postgres://app:pw-9f8e@db/x failed"},
            {"plugin": "db", "action": "ping", "success": True}]}

    with capture() as cap:
        run()
    calls = cap.records[0].result.tool_calls
    assert calls is not None
    assert calls[0].error == f"connect postgres://app:{MASK}@db/x failed"
    assert calls[1].error is None


_FRAGMENTS = [
    "sk-proj-abcDEF1234567890xyz", "Bearer abc.def-ghi_jkl~mno", "password=s3cret",
    "postgresql://svc:hunter2@db:5432/app", "AKIAABCDEFGHIJKLMNOP", "ghp_" + "a" * 24,
    "eyJhbGciOi.eyJzdWIiOi.sig_nature", "-----BEGIN RSA PRIVATE KEY-----\nabc",
    "authorization: Basic dXNlcjpw", "xoxb-1234567890-abc", "token", "sk-", "Bearer",
    "hello", " ", "\n", "://", "@", "=", ":", '"', "total_tokens: 12", "api_key",
]


def _slow(redactor: Redactor, text: str) -> str:
    for pattern in redactor._patterns:  # every pattern, no prefilter
        text = pattern.sub(_mask, text)
    return text


@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12)), max_size=8))
@settings(max_examples=400, deadline=None)
def test_the_prefilter_never_changes_what_is_masked(parts: list[str]) -> None:
    text = "".join(parts)
    assert R.text(text) == _slow(R, text)
    custom = Redactor([r"(?P<secret>internal-\d{4})", r"acct[0-9]+"])
    assert custom.text(text + " internal-1234 acct77") == _slow(
        custom, text + " internal-1234 acct77")


def test_the_prefilter_is_skipped_when_a_pattern_uses_a_backreference() -> None:
    r = Redactor([r"(['\"])secret-\w+\1"])
    assert r._any is None  # combining would renumber the group the backreference names
    assert r.text("x 'secret-abc' y") == f"x {MASK} y"
    assert Redactor()._any is not None


def test_json_returns_its_input_when_clean_and_never_modifies_it() -> None:
    clean = {"model": "gpt-4o", "steps": [1, {"name": "search"}], "ok": True}
    assert R.json(clean) is clean  # the decorator then skips copying the result
    dirty = {"model": "gpt-4o", "steps": [1, {"api_key": "abc123"}], "note": "sk-" + "a" * 20}
    before = json.dumps(dirty)
    out = R.json(dirty)
    assert out is not dirty
    assert json.dumps(dirty) == before
    assert out == {"model": "gpt-4o", "steps": [1, {"api_key": MASK}], "note": MASK}
    assert R.json(("a", "b")) == ["a", "b"]  # tuples still come back as lists


_KEYS = st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12))
_TREES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(_FRAGMENTS), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=20)


@given(st.lists(_TREES, min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_remembered_key_verdicts_mask_exactly_what_a_fresh_check_does(
        trees: list[object]) -> None:
    warm = Redactor()
    for tree in trees:  # the second pass over every key answers from the memo
        first, second, fresh = warm.json(tree), warm.json(tree), Redactor().json(tree)
        assert first == second == fresh
        assert (second is tree) == (fresh is tree)  # a clean tree is still returned as is


def test_the_key_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from instrument import redact

    monkeypatch.setattr(redact, "KEY_MEMO_SIZE", 50)
    r = Redactor()
    for i in range(500):
        assert r.json({f"k{i}": 1, f"api_key_{i}": "x"}) == {f"k{i}": 1, f"api_key_{i}": MASK}
        assert len(r._keys) <= 50
