"""What is wrong with a database URL, and what to write instead.

:func:`url_problem` is the one place that knows the URL forms :func:`instrument.stores.
open_store` accepts, so ``configure()``, the runtime and the CLI say the same thing about a typo.
"""

from __future__ import annotations

import os

from instrument.urls import mask_url

__all__ = ["ACCEPTED", "url_problem"]

#: the forms open_store accepts, for messages
ACCEPTED = "'sqlite:///path.db', 'postgresql://user@host:5432/db' or 'supabase'"

#: schemes people write for the stores we have (SQLAlchemy dialects, libpq aliases, files)
_MEANT = {
    "postgresql+psycopg": "postgresql", "postgresql+psycopg2": "postgresql",
    "postgresql+asyncpg": "postgresql", "postgres+psycopg": "postgresql",
    "postgresql+pg8000": "postgresql", "psql": "postgresql", "pg": "postgresql",
    "pgsql": "postgresql", "sqlite3": "sqlite", "sqlite+pysqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite", "file": "sqlite",
}


def url_problem(url: str, source: str = "the database URL") -> str | None:
    """None when :func:`~instrument.stores.open_store` accepts `url`; otherwise one sentence
    saying what is wrong with it and what to write instead. `source` names where it came from
    (``INSTRUMENT_DATABASE_URL``, ``--database-url``...)."""
    shown = mask_url(url)
    if url.startswith("sqlite:///") or url in {"sqlite://:memory:", "supabase"} \
            or url.startswith(("postgresql://", "postgres://", "supabase://")):
        return None
    if not url.strip():
        return f"{source} is empty; use {ACCEPTED}"
    if url.startswith("sqlite://"):
        given = url[len("sqlite://"):]
        return (f"{source} {shown!r} has two slashes after 'sqlite:'; a SQLite URL has three: "
                f"'sqlite:///{given}' (relative to the current directory: "
                f"{os.path.abspath(given)}), or four before an absolute path: "
                f"'sqlite:///{os.path.abspath(given)}'")
    scheme, sep, rest = url.partition(":")
    if not sep:
        hint = (f"; for a SQLite file write 'sqlite:///{url}'"
                if url.endswith((".db", ".sqlite", ".sqlite3")) else "")
        return f"{source} {shown!r} is not a URL; use {ACCEPTED}{hint}"
    meant = _MEANT.get(scheme.lower())
    if meant == "postgresql":
        return (f"{source} {shown!r}: the scheme {scheme!r} is SQLAlchemy's or another "
                f"client's; logged-execution connects with psycopg 3 itself: write "
                f"'postgresql:{shown.partition(':')[2]}'")
    if meant == "sqlite":
        path = rest[2:] if rest.startswith("//") else rest
        return (f"{source} {shown!r}: a SQLite file is 'sqlite:///' followed by its path: "
                f"write 'sqlite:///{path}' ({os.path.abspath(path)})")
    if scheme.lower() in ("sqlite", "postgresql", "postgres", "supabase"):
        return f"{source} {shown!r} is malformed; use {ACCEPTED}"
    return f"unsupported database URL scheme {scheme!r} in {source} {shown!r}; use {ACCEPTED}"
