"""Engine adapters: normalize each engine's result into an ExecutionResult."""

from instrument.adapters.protocol import Adapter, DeferredAdapter, StreamedItems
from instrument.adapters.registry import (
    ENTRY_POINT_GROUP,
    UnknownAdapterError,
    available_adapters,
    detect_adapter,
    get_adapter,
    register_adapter,
    unregister_adapter,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "DeferredAdapter",
    "StreamedItems",
    "UnknownAdapterError",
    "available_adapters",
    "detect_adapter",
    "get_adapter",
    "register_adapter",
    "unregister_adapter",
]
