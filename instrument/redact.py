"""Masking of secret-looking values before a record leaves the core (spans and writers).

Two mechanisms, both applied by :class:`Redactor`:

* **Patterns** over text: API keys (``sk-...``, ``sk_live_...``, GitHub/Slack/AWS/Google key
  shapes), ``Bearer``/``Basic`` credentials, JWTs, PEM private keys, the password in a
  connection string (``postgresql://user:[REDACTED]@host/db``) and ``password=``/``api_key:``
  style assignments. Extra patterns come from ``Settings.redact_patterns``
  (``INSTRUMENT_REDACT_PATTERNS``, ``;;``-separated). A pattern with a named group ``secret``
  masks only that group; otherwise the whole match is masked.
* **Keys** in JSON objects: the value under a key named like a secret (``password``,
  ``api_key``, ``access_token``, ``client_secret``, ``Authorization``, ``cookie``...) is masked
  whatever it looks like. Counts such as ``total_tokens`` are not secrets and are kept.

:meth:`Redactor.json` is recursion-safe: cycles become ``"[CYCLE]"`` and nesting deeper than
:data:`MAX_DEPTH` becomes ``"[TOO DEEP]"``, so a hostile extras value cannot hang or crash it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from instrument.errors import ConfigurationError

__all__ = ["DEFAULT_PATTERNS", "MASK", "MAX_DEPTH", "Redactor", "is_secret_key"]

MASK: Final = "[REDACTED]"
MAX_DEPTH: Final = 32
#: JSON keys remembered per redactor with their verdict (engines reuse a small vocabulary of
#: keys, and a key's check is two regex scans); the memo is cleared when it grows past this.
KEY_MEMO_SIZE: Final = 4096

_Q = r"""["']?"""  # an optional quote around keys and values in JSON/YAML/env text
_SCHEMES = r"bearer|basic|digest|token|negotiate|apikey"

DEFAULT_PATTERNS: tuple[str, ...] = (
    # OpenAI / Anthropic style keys: sk-..., sk-proj-..., sk-ant-...
    r"\bsk-[A-Za-z0-9_\-]{8,}",
    # Stripe-style live/test keys: sk_live_..., rk_test_..., pk_live_...
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}",
    # GitHub tokens, Slack tokens, AWS access key ids, Google API keys
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    # Authorization header values: any scheme after "Authorization", "Bearer <token>" anywhere
    r"\bauthorization" + _Q + r"\s*[:=]\s*" + _Q + r"(?:" + _SCHEMES + r")?\s*"
    + r"(?!(?:" + _SCHEMES + r")\b)(?P<secret>[A-Za-z0-9._\-~+/]{6,}=*)",
    r"\bbearer\s+(?P<secret>[A-Za-z0-9._\-~+/]{8,}=*)",
    # JWTs (header.payload.signature, base64url)
    r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]+",
    # PEM private keys
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    # user:password@ in connection strings and URLs (the user name is kept)
    r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:(?P<secret>[^\s/]+)@",
    # password=..., "api_key": "...", secret: ..., token=... (key kept, value masked)
    r"(?i:\b[a-z0-9_\-]*(?:password|passwd|pwd|passphrase|secret|api[_\-]?key|access[_\-]?key"
    r"|private[_\-]?key|auth[_\-]?token|access[_\-]?token|refresh[_\-]?token|session[_\-]?token"
    r"|client[_\-]?secret|token))" + _Q + r"\s*[:=]\s*" + _Q
    + r"""(?P<secret>[^\s"',;&}]+)""",
)

# Names (lowercased, separators removed) whose values are secrets whatever they look like.
_SECRET_KEY: Final = re.compile(
    r"(password|passwd|passphrase|secret|apikey|accesskey|privatekey|credential|authorization"
    r"|cookie)"
    r"|(token|pwd|auth|bearer|signature|sessionkey)$"
)
_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]")


def is_secret_key(name: str) -> bool:
    """Whether a JSON key names a secret: ``api_key``, ``X-Auth-Token``, ``clientSecret``...

    Token *counts* are not secrets: ``total_tokens``/``tokensSaved`` do not match.
    """
    return _SECRET_KEY.search(_NOT_ALNUM.sub("", name.lower())) is not None


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ConfigurationError(
            f"redact pattern {pattern!r} is not a valid regular expression ({exc}); fix "
            "INSTRUMENT_REDACT_PATTERNS (';;'-separated) or configure(redact_patterns=...)"
        ) from None


_BACKREF: Final = re.compile(r"\\[1-9]|\(\?P=")
_NAMED_GROUP: Final = re.compile(r"(?<!\\)\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


def _prefilter(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex that matches somewhere iff any of `patterns` does (their alternation), or
    None when that cannot be built safely (a backreference would change meaning)."""
    if not patterns or any(_BACKREF.search(p) for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{_NAMED_GROUP.sub('(?:', p)})" for p in patterns),
                          re.IGNORECASE)
    except re.error:
        return None


def _mask(match: re.Match[str]) -> str:
    if "secret" in match.re.groupindex and match.group("secret") is not None:
        start, end = match.span("secret")
        whole = match.group(0)
        base = match.start(0)
        return whole[: start - base] + MASK + whole[end - base:]
    return MASK


class Redactor:
    """Masks secrets in strings and, recursively, in JSON values (by pattern and by key)."""

    __slots__ = ("_any", "_keys", "_patterns")

    def __init__(self, extra_patterns: Iterable[str] = (), *, defaults: bool = True) -> None:
        """`extra_patterns` are added to the defaults (``defaults=False`` drops those).

        Raises :class:`ConfigurationError` naming the pattern when one does not compile.
        """
        patterns = tuple(p for p in (
            (*DEFAULT_PATTERNS, *extra_patterns) if defaults else tuple(extra_patterns)) if p)
        self._patterns = tuple(_compile(p) for p in patterns)
        self._any = _prefilter(patterns)
        #: key -> (its value is a secret by name, the key with secrets masked or None)
        self._keys: dict[str, tuple[bool, str | None]] = {}

    def text(self, value: str) -> str:
        """`value` with every secret-looking substring replaced by ``[REDACTED]``."""
        if self._any is not None and self._any.search(value) is None:
            return value  # the common case: one scan instead of one per pattern
        for pattern in self._patterns:
            value = pattern.sub(_mask, value)
        return value

    def json(self, value: object) -> object:
        """A JSON value with secrets masked; non-JSON leaves are returned as is.

        Returns `value` itself when nothing in it needed masking (a plain dict/list tree), so
        callers can skip copying; any change gives a new structure (the input is never
        modified). Tuples and other mappings always come back as lists and dicts.
        """
        return self._json(value, 0, set())

    def _key(self, key: str) -> tuple[bool, str | None]:
        """Check a JSON key once: does it name a secret, and the key with secrets masked
        (None when there is nothing to mask)."""
        keys = self._keys
        if len(keys) >= KEY_MEMO_SIZE:
            keys.clear()
        redacted = self.text(key)
        verdict = keys[key] = (is_secret_key(key), None if redacted == key else redacted)
        return verdict

    def _json(self, value: object, depth: int, path: set[int]) -> object:
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, (dict, list, tuple, Mapping)):
            return value
        if depth >= MAX_DEPTH:
            return "[TOO DEEP]"
        key = id(value)
        if key in path:
            return "[CYCLE]"
        path.add(key)
        try:
            if isinstance(value, Mapping):
                out: dict[object, object] = {}
                same = type(value) is dict
                for k, v in value.items():
                    if isinstance(k, str):
                        verdict = self._keys.get(k)
                        if verdict is None:
                            verdict = self._key(k)
                        secret, masked_k = verdict
                        new_k = k if masked_k is None else masked_k
                        masked = secret and v is not None and not isinstance(v, bool)
                        new_v = MASK if masked else self._json(v, depth + 1, path)
                        same = same and new_k is k and new_v is v
                        out[new_k] = new_v
                    else:
                        new_v = self._json(v, depth + 1, path)
                        same = same and new_v is v
                        out[k] = new_v
                return value if same else out
            items = [self._json(v, depth + 1, path) for v in value]
            if type(value) is list and all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return items
        finally:
            path.discard(key)
