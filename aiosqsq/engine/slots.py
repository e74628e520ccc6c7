"""Handler slots: the bound on messages a consumer holds at once.

A poller reserves slots *before* it receives and asks SQS for at most that many
messages, so every received message already owns a slot: nothing waits in a local
buffer while its visibility timeout runs out.
"""

from __future__ import annotations

import anyio


class Slots:
    """A counter of free handler slots with waiting. Single event loop, no locks."""

    __slots__ = ("_changed", "_closed", "free", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._closed = False
        self._changed: anyio.Event | None = None  # made only while someone waits

    @property
    def in_use(self) -> int:
        return self.total - self.free

    async def reserve(self, most: int) -> int:
        """Take between 1 and ``most`` free slots, waiting for one if none is free.

        Returns 0 once :meth:`close` was called: the caller must stop receiving.
        """
        while self.free == 0 and not self._closed:
            await self._wait()
        if self._closed:
            return 0
        taken = min(most, self.free)
        self.free -= taken
        return taken

    def release(self, count: int = 1) -> None:
        self.free += count
        self._notify()

    def close(self) -> None:
        """Wake every waiting :meth:`reserve` with 0; later reservations also get 0."""
        self._closed = True
        self._notify()

    async def wait_all_free(self) -> None:
        """Return once no slot is in use: no handler running, nothing held."""
        while self.free < self.total:
            await self._wait()

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
