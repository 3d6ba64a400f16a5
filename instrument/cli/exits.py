"""The ``instrument`` command's exit codes, which scripts can rely on."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE"]

#: everything is fine
EXIT_OK = 0
#: a problem was found: database unreachable, schema missing, doctor findings, records left
EXIT_PROBLEM = 1
#: usage or configuration error: bad option, unknown agent, unsupported database URL
EXIT_USAGE = 2
