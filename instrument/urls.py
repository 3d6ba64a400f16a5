"""Database URLs in messages: passwords masked. A leaf: imports nothing from the package."""

from __future__ import annotations

import re

__all__ = ["mask_url"]


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (``user:pw@`` and ``?password=...``)."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        creds, _, rest = tail.rpartition("@")
        if ":" in creds:
            tail = f"{creds.split(':', 1)[0]}:***@{rest}"
    masked = f"{head}{sep}{tail}"
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&#]*", r"\1***", masked)
