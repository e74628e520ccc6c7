"""The public API is exactly what ``aiosqsq.__all__`` says, sorted (as httpx checks)."""

from __future__ import annotations

import types

import aiosqsq


def test_all_is_sorted_and_is_every_public_name() -> None:
    assert aiosqsq.__all__ == sorted(aiosqsq.__all__)
    public = {
        name
        for name, value in vars(aiosqsq).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(aiosqsq.__all__) == public
    assert {"App", "Message", "QueueService", "QueueSettings", "Retry", "Router"} <= public
