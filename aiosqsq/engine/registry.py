"""The in-flight registry: every message held, from receive until deleted or handed back.

It is the single source of truth for the heartbeat (what to extend), for shutdown (what
to hand back) and for ``statistics().in_flight``. Entries are keyed by receipt handle.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import anyio

from aiosqsq.backends.base import QueueMessage


class State(enum.Enum):
    WAITING = "waiting"  # received, handler not started (FIFO: behind its group)
    RUNNING = "running"  # handler running: the heartbeat keeps it hidden
    SETTLING = "settling"  # outcome decided, delete or visibility change pending


@dataclass(slots=True, eq=False)
class InFlight:
    """One held message and what the engine knows of its lease."""

    message: QueueMessage
    received_at: float  # monotonic: the 12-hour visibility cap counts from here
    visible_at: float  # monotonic: when SQS will show the message again
    state: State = State.WAITING
    cancel_scope: anyio.CancelScope | None = None  # the running handler's, once started
    lease_lost: bool = False
    released_by_handler: bool = False
    cap_warned: bool = False  # the heartbeat warned that the 12-hour cap was reached

    @property
    def receipt_handle(self) -> str:
        return self.message.receipt_handle


class InFlightRegistry:
    """Held messages of one queue. Not thread-safe: used from one event loop."""

    __slots__ = ("_empty", "_entries", "_shrunk")

    def __init__(self) -> None:
        self._entries: dict[str, InFlight] = {}
        self._empty = anyio.Event()
        self._empty.set()
        self._shrunk: anyio.Event | None = None  # made only while someone waits

    def add(self, message: QueueMessage, *, now: float, visibility_timeout_s: float) -> InFlight:
        entry = InFlight(message, received_at=now, visible_at=now + visibility_timeout_s)
        self._entries[message.receipt_handle] = entry
        if self._empty.is_set():
            self._empty = anyio.Event()
        return entry

    def remove(self, entry: InFlight) -> None:
        """Forget ``entry`` (deleted or handed back); a second call does nothing."""
        if self._entries.get(entry.receipt_handle) is entry:
            del self._entries[entry.receipt_handle]
            if not self._entries:
                self._empty.set()
            self.wake()

    def __contains__(self, entry: InFlight) -> bool:
        return self._entries.get(entry.receipt_handle) is entry

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[InFlight]:
        return iter(list(self._entries.values()))

    def in_state(self, *states: State) -> list[InFlight]:
        return [entry for entry in self._entries.values() if entry.state in states]

    def wake(self) -> None:
        """Wake :meth:`wait_shrunk` callers (on every removal, and on shutdown)."""
        if self._shrunk is not None:
            self._shrunk.set()
            self._shrunk = None

    async def wait_shrunk(self) -> None:
        """Return after the next removal (or :meth:`wake`)."""
        if self._shrunk is None:
            self._shrunk = anyio.Event()
        await self._shrunk.wait()

    async def wait_empty(self) -> None:
        """Return once nothing is held (at once if nothing is)."""
        await self._empty.wait()
