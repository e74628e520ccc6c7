"""Burst mode's end: every queue of the app found empty, with nothing held, at once.

Each receive loop of every consumer reports each receive: one that brought messages is
activity; an empty one with nothing held is idleness, stamped with the activity count
when that receive started. The burst ends when every loop's last report is idleness
stamped with the current count: no message was received anywhere since each of them
looked. So a handler that sends to another queue of the app (which may have looked empty
before) keeps the burst going until that queue is drained too.
"""

from __future__ import annotations

from collections.abc import Callable


class BurstTracker:
    """Shared by every receive loop of an app in burst mode. Single event loop."""

    __slots__ = ("_end", "_idle", "_keys", "_loops", "activity")

    def __init__(self, end: Callable[[], None], *, loops: int) -> None:
        """``loops``: how many receive loops the app runs in all (known before any starts,
        so that the first loop to find its queue empty cannot end the burst alone)."""
        self._end = end  # stops every consumer
        self._loops = loops
        self._keys = 0
        self._idle: dict[int, int] = {}  # loop -> activity count when its empty receive began
        self.activity = 0

    def add_loop(self) -> int:
        """A key for one of the ``loops`` receive loops."""
        self._keys += 1
        return self._keys

    def received(self, loop: int) -> None:
        """``loop`` received messages."""
        self.activity += 1
        self._idle.pop(loop, None)

    def found_empty(self, loop: int, stamp: int) -> None:
        """``loop`` found its queue empty with nothing held, in a receive that began when
        the activity count was ``stamp``; end the burst if every loop agrees."""
        self._idle[loop] = stamp
        if len(self._idle) == self._loops and all(
            seen == self.activity for seen in self._idle.values()
        ):
            self._end()
