"""Retry delays: exponential in the receive count, with jitter, within SQS's limits."""

from __future__ import annotations

import random

from aiosqsq.backends.base import MAX_VISIBILITY_TIMEOUT_S


def retry_delay_s(
    receive_count: int,
    *,
    base_s: float,
    max_s: float,
    rng: random.Random | None = None,
) -> float:
    """Delay before a failed message is delivered again.

    ``base_s * 2 ** (receive_count - 1)``, capped at ``max_s``, then "equal jitter": a
    uniform draw between half of it and all of it, so failures that happened together
    do not come back together, while the delay still grows with every attempt.
    """
    exponent = min(max(receive_count, 1) - 1, 32)  # 2**32 s is far past any cap
    ceiling = min(max_s, base_s * 2.0**exponent)
    return (rng or random).uniform(ceiling / 2, ceiling)


def visibility_left_s(received_at: float, now: float) -> float:
    """Seconds of visibility SQS still allows: 12 hours counted from the receive."""
    return max(0.0, MAX_VISIBILITY_TIMEOUT_S - (now - received_at))
