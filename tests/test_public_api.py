"""The public API is what ``aiosqsq.__all__`` says, sorted, and nothing is missing."""

from __future__ import annotations

import aiosqsq


def test_all_is_sorted_and_complete() -> None:
    assert aiosqsq.__all__ == sorted(aiosqsq.__all__)
    for name in aiosqsq.__all__:
        assert hasattr(aiosqsq, name), name
    assert {"App", "Message", "QueueService", "QueueSettings", "Retry"} <= set(aiosqsq.__all__)
