"""What one consumer needs to know of the settings, resolved for its handler."""

from __future__ import annotations

from dataclasses import dataclass

from aiosqsq.backends.base import MAX_RECEIVE_MESSAGES

#: How long a receive may wait for a full batch of free slots (see ConsumerConfig).
DEFAULT_FILL_WAIT_S = 0.05
#: Where an adaptive limit starts (within its bounds), and a batch handler's concurrency
#: when none is set: low, so that a new consumer does not rush a downstream it knows
#: nothing of.
DEFAULT_INITIAL_LIMIT = 10
#: The most receive loops that follow an adaptive limit (one per 10 of it): at SQS's
#: 10-20 ms round trip, 16 loops receive over 5,000 messages/s.
MAX_FOLLOWING_POLLERS = 16


def pollers_following(maximum: int) -> int:
    """Receive loops to start for an adaptive limit of at most ``maximum``: one per 10 of
    it, at least 1, at most :data:`MAX_FOLLOWING_POLLERS`."""
    return max(1, min(MAX_FOLLOWING_POLLERS, maximum // MAX_RECEIVE_MESSAGES))


@dataclass(frozen=True, slots=True)
class LimitBounds:
    """The range an adaptive concurrency limit moves in (see :mod:`aiosqsq.engine.adaptive`):
    from ``initial``, never below ``minimum`` nor above ``maximum``."""

    minimum: int
    maximum: int
    initial: int

    @classmethod
    def around(cls, minimum: int, maximum: int) -> LimitBounds:
        """Bounds that start at :data:`DEFAULT_INITIAL_LIMIT`, or the nearest bound."""
        return cls(minimum, maximum, initial=max(minimum, min(maximum, DEFAULT_INITIAL_LIMIT)))

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError(
                f"concurrency bounds {self.minimum} <= {self.initial} <= {self.maximum} do "
                "not hold: the minimum must be at least 1 and at most the maximum"
            )


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """A consumer's limits and timings (the app builds it from ``QUEUE_*`` settings and the
    handler's own options, so the engine never reads settings itself).

    ``concurrency`` is the handler calls running at once: pinned, or with ``adaptive``
    the limit it starts from. ``pollers`` is the receive loops; with
    ``pollers_follow_limit`` the most of them, one running per 10 of the current limit.
    """

    concurrency: int
    pollers: int
    max_messages: int = MAX_RECEIVE_MESSAGES  # per ReceiveMessage, at most 10
    wait_time_s: int = 5  # long polling
    visibility_timeout_s: int | None = None  # asked of each receive; None: the queue's own
    shutdown_timeout_s: float = 20.0
    retry_base_delay_s: float = 1.0
    retry_max_delay_s: float = 900.0
    # A receive waits up to this long for a full batch of free slots while handlers keep
    # finishing (see aiosqsq.engine.slots): fewer, fuller receives at saturation.
    fill_wait_s: float = DEFAULT_FILL_WAIT_S
    adaptive: LimitBounds | None = None  # None: ``concurrency`` is pinned
    pollers_follow_limit: bool = False

    @property
    def max_concurrency(self) -> int:
        """The most handler calls that may ever run at once."""
        return self.concurrency if self.adaptive is None else self.adaptive.maximum

    def pollers_for(self, limit: int) -> int:
        """Receive loops running at ``limit``: all of them, or one per full batch of 10
        in the limit (at least 1, at most ``pollers``) when they follow it: more pollers
        than full batches would split the free slots into small receives."""
        if not self.pollers_follow_limit:
            return self.pollers
        return max(1, min(self.pollers, limit // MAX_RECEIVE_MESSAGES))
