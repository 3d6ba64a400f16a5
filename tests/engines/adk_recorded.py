"""ADK run events recorded with the real google-adk (see tests/engines/adk_driver.py), rebuilt
as attribute objects for the main test environment, where google-adk cannot be installed.

The files in tests/engines/recorded/ are ``Event.model_dump_json(exclude_none=True)`` of real
runs. Each event comes back as an ``Event`` whose class lives in ``google.adk.events.event``
(so auto-detection sees what it sees for a real one) and whose fields, nested ``Content``,
``Part``, ``FunctionCall`` and usage included, are plain attributes: the adapter reads real
events by attribute only, so it reads these the same way. A field the dump left out (it was
``None``) reads as ``None``, as on the real object.

Regenerate (in a side environment with google-adk installed)::

    PYTHONPATH=. python tests/engines/adk_driver.py record tests/engines/recorded
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["RECORDED", "Event", "load_events", "recorded_versions"]

RECORDED = Path(__file__).parent / "recorded"


class _Node:
    """A recorded pydantic object: its dumped fields as attributes, absent ones as ``None``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


class Event(_Node):
    """A recorded ``google.adk.events.event.Event``."""


Event.__module__ = "google.adk.events.event"

#: Fields whose values are dicts of data, not objects (kept as dicts, like on the real type).
_DATA_FIELDS = frozenset({"args", "response", "state_delta", "artifact_delta",
                          "requested_auth_configs", "requested_tool_confirmations",
                          "custom_metadata", "agent_state"})


def _rebuild(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        if key in _DATA_FIELDS:
            return value
        node = _Node.__new__(_Node)
        node.__dict__.update({k: _rebuild(v, k) for k, v in value.items()})
        return node
    if isinstance(value, list):
        return [_rebuild(v) for v in value]
    return value


def _event(fields: dict[str, Any]) -> Event:
    event = Event.__new__(Event)
    event.__dict__.update({k: _rebuild(v, k) for k, v in fields.items()})
    return event


def load_events(scenario: str) -> list[Event]:
    """The events of the recorded run `scenario` (``tool``, ``blocked``, ``paused``,
    ``confirm``, ``unknown_tool``, ``stream``)."""
    doc = json.loads((RECORDED / f"google_adk_{scenario}.json").read_text(encoding="utf-8"))
    return [_event(e) for e in doc["events"]]


def recorded_versions(scenario: str) -> dict[str, str]:
    doc = json.loads((RECORDED / f"google_adk_{scenario}.json").read_text(encoding="utf-8"))
    versions: dict[str, str] = doc["recorded_with"]
    return versions
