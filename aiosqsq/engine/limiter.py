"""The concurrency limit of one handler: at most ``limit`` calls run at once.

The limit is pinned (``QUEUE_CONCURRENCY``, ``concurrency=``) or moved by an adaptive
controller (:mod:`aiosqsq.engine.adaptive`); either way the consumer's workers pass this
gate before each handler call, and whoever needs to follow the limit (the slots, the
pollers) is told of each change. Every change is kept with its reason, for
``statistics()``, a DEBUG log line and metrics.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

logger = logging.getLogger("aiosqsq.consumer")

#: How many of the latest changes a limit keeps (older ones are only counted).
KEPT_CHANGES = 32


@dataclass(frozen=True, slots=True)
class LimitChange:
    """One move of a limit: when (the consumer's clock), from, to, and why."""

    at: float
    old: int
    new: int
    reason: str


class ConcurrencyLimit:
    """A counting gate whose size can change while calls wait on it. Single event loop."""

    __slots__ = ("_limit", "_listeners", "_waiters", "changes", "changes_count", "name", "running")

    def __init__(self, limit: int, *, name: str = "") -> None:
        self.name = name  # the handler's, for the log line
        self._limit = limit
        self.running = 0
        self._waiters: deque[anyio.Event] = deque()
        self._listeners: list[Callable[[int], None]] = []
        self.changes: deque[LimitChange] = deque(maxlen=KEPT_CHANGES)
        self.changes_count = 0

    @property
    def limit(self) -> int:
        """Handler calls allowed to run at once now."""
        return self._limit

    @property
    def waiting(self) -> int:
        """Calls waiting for the gate: the limit binds."""
        return len(self._waiters)

    def follow(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(new_limit)`` after each change."""
        self._listeners.append(listener)

    async def acquire(self) -> None:
        """Wait until fewer than ``limit`` calls run, and count this one in."""
        if self.running < self._limit and not self._waiters:
            self.running += 1
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()  # whoever set it counted this call in
        except BaseException:
            if event.is_set():
                self.release()  # handed a place while being cancelled: give it on
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        """Count one call out; hand its place to the first waiter if the limit allows."""
        if self._waiters and self.running <= self._limit:
            self._waiters.popleft().set()  # the place passes on: running stays
            return
        self.running -= 1

    def set(self, new: int, reason: str, *, at: float) -> None:
        """Move the limit to ``new`` (waiters start at once if it grew) and tell the
        followers; the change is logged at DEBUG with its reason."""
        old = self._limit
        if new == old:
            return
        self._limit = new
        while self._waiters and self.running < new:
            self.running += 1
            self._waiters.popleft().set()
        self.changes.append(LimitChange(at, old, new, reason))
        self.changes_count += 1
        logger.debug("concurrency limit of %s: %d -> %d (%s)", self.name, old, new, reason)
        for listener in self._listeners:
            listener(new)
