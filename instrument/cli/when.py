"""Points in time on the command line: ``--since``, ``--until`` and ``--older-than``.

Every option takes an ISO date (``2026-12-01``: midnight UTC), an ISO date and time
(``2026-12-01T09:30``, ``2026-12-01 09:30:00+02:00``; without an offset it is UTC) or an age
counted back from now (``90s``, ``15m``, ``2h``, ``7d``, ``2w``). Everything becomes an aware
UTC datetime, so stores compare one kind of value.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

__all__ = ["AGE_HELP", "Age", "When", "parse_age", "parse_when"]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

AGE_HELP = "an ISO date or datetime (UTC unless it has an offset), or an age: 15m, 2h, 7d, 2w"


def parse_age(text: str) -> timedelta | None:
    """``2h`` -> 2 hours; None when `text` is not an age."""
    match = _AGE.match(text)
    if match is None:
        return None
    return timedelta(**{_UNITS[match[2].lower()]: float(match[1])})


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`text` as an aware UTC datetime (see the module doc); ValueError says what is accepted."""
    age = parse_age(text)
    if age is not None:
        return (now or datetime.now(UTC)) - age
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use {AGE_HELP}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class When(click.ParamType[datetime, Any]):
    """A click type for :func:`parse_when`."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Age(click.ParamType[timedelta, Any]):
    """A click type for an age only (``30d``): what ``prune --older-than`` takes."""

    name = "AGE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        age = parse_age(str(value))
        if age is None or age <= timedelta(0):
            self.fail(f"{value!r} is not an age: use a number and a unit, e.g. 30d, 12h, 2w",
                      param, ctx)
        return age
