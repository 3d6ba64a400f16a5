"""The one guard for the SDK's own failures: log (rate limited), re-raise only in strict mode."""

from __future__ import annotations

import logging

from instrument.config import env_flag
from instrument.ratelimit import RateLimiter, held_back

__all__ = ["internal_error", "set_strict"]

_log = logging.getLogger("instrument")
_limiter = RateLimiter(60.0)
#: strict mode of the live runtime, pushed in by the composition root (runtime.install);
#: None before any runtime exists, when the environment decides
_strict_mode: bool | None = None


def set_strict(strict: bool | None) -> None:
    """Set strict mode (the runtime does, when it installs a configuration); None = from env."""
    global _strict_mode
    _strict_mode = strict


def _strict() -> bool:
    if _strict_mode is not None:
        return _strict_mode
    try:
        return bool(env_flag("INSTRUMENT_STRICT"))
    except ValueError:
        return False


def internal_error(
    what: str,
    exc: BaseException | None = None,
    *,
    decoration: bool = False,
    strict_raise: bool = True,
) -> None:
    """Report an SDK-internal failure. In strict mode (INSTRUMENT_STRICT=1) raise it instead.

    Must be called from inside an ``except`` block when `exc` is given (a bare ``raise`` then
    re-raises it unchanged). `strict_raise=False` marks conditions that are the *user's* data
    (a result no adapter understands): they are logged, never raised.
    """
    if strict_raise and _strict():
        if exc is not None:
            raise exc
        raise RuntimeError(what)
    n = _limiter.admit(what)
    if n is None:
        return
    suffix = held_back(n)
    level = logging.WARNING if decoration or exc is None else logging.ERROR
    _log.log(level, "logged-execution: %s%s", what, suffix,
             exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)
