"""What one consumer needs to know of the settings, resolved for its handler."""

from __future__ import annotations

from dataclasses import dataclass

from aiosqsq.backends.base import MAX_RECEIVE_MESSAGES

#: How long a receive may wait for a full batch of free slots (see ConsumerConfig).
DEFAULT_FILL_WAIT_S = 0.05


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """A consumer's limits and timings (the app builds it from ``QUEUE_*`` settings and the
    handler's own options, so the engine never reads settings itself)."""

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
