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

    async def reserve(self, most: int, *, fill_wait_s: float = 0.0) -> int:
        """Take between 1 and ``most`` free slots, waiting for one if none is free.

        With ``fill_wait_s``, when some but fewer than ``most`` are free, wait for more as
        long as slots keep being freed, for at most ``fill_wait_s`` in all: at saturation
        with fast handlers, one receive then asks for a full batch instead of several
        asking for a few (each receive is a request, billed alike). When slots stop being
        freed (slow handlers) for half of that, take what is free at once.

        Returns 0 once :meth:`close` was called: the caller must stop receiving.
        """
        while True:
            while self.free <= 0 and not self._closed:
                await self._wait()
            if fill_wait_s > 0 and self.free < most and not self._closed:
                await self._wait_for_more(most, fill_wait_s)
            if self._closed:
                return 0
            if self.free > 0:  # else the slots shrank meanwhile (see resize)
                break
        taken = min(most, self.free)
        self.free -= taken
        return taken

    async def _wait_for_more(self, most: int, fill_wait_s: float) -> None:
        gap_s = fill_wait_s / 2
        with anyio.move_on_after(fill_wait_s):
            while self.free < most and not self._closed:
                with anyio.move_on_after(gap_s) as gap:
                    await self._wait()
                if gap.cancelled_caught:
                    return  # nothing freed for a while: handlers are slow, go with what is free

    def resize(self, total: int) -> None:
        """Change the number of slots (an adaptive limit moved). Shrinking below the
        slots in use leaves ``free`` negative: nothing is reserved until enough are
        released."""
        self.free += total - self.total
        self.total = total
        self._notify()

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
