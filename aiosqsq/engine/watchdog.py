"""The loop-lag watchdog: reports a handler that blocks the event loop.

An ``async def`` that calls blocking code (``time.sleep``, a synchronous HTTP client, a
CPU-bound loop) stops every other task, the heartbeat included, so its messages can
come back while it runs. A task on the loop ticks every ``tick_s``; a thread checks the
ticks and, when the loop has been stuck for longer than ``threshold_s``, logs one warning
naming the handler on the main thread's stack (and the line it is on).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Collection
from types import CodeType, FrameType

import anyio

logger = logging.getLogger("aiosqsq.watchdog")


class LoopWatchdog:
    """Start with :meth:`run` inside the event loop; it stops when that is cancelled."""

    def __init__(
        self,
        handlers: Collection[CodeType],
        *,
        threshold_s: float = 0.5,
        tick_s: float = 0.1,
    ) -> None:
        self._handlers = set(handlers)
        self._threshold_s = threshold_s
        self._tick_s = tick_s
        self._last_tick = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stopped = threading.Event()
        self.reports = 0

    async def run(self) -> None:
        self._loop_thread = threading.get_ident()
        self._last_tick = time.monotonic()
        thread = threading.Thread(target=self._watch, name="aiosqsq-watchdog", daemon=True)
        thread.start()
        try:
            while True:
                self._last_tick = time.monotonic()
                await anyio.sleep(self._tick_s)
        finally:
            self._stopped.set()

    def _watch(self) -> None:
        reported_tick = None
        while not self._stopped.wait(self._tick_s):
            tick = self._last_tick
            lag_s = time.monotonic() - tick
            if lag_s < self._threshold_s or tick == reported_tick:
                continue
            reported_tick = tick  # one report per stall
            frame = sys._current_frames().get(self._loop_thread)
            self.reports += 1
            logger.warning(
                "the event loop has been blocked for %.1f s%s: blocking calls in an async "
                "handler stop every other task, the heartbeat included; await them, or "
                "run them with anyio.to_thread.run_sync",
                lag_s,
                self._where(frame),
            )

    def _where(self, frame: FrameType | None) -> str:
        innermost = frame
        while frame is not None:
            if frame.f_code in self._handlers:
                return f" in handler {frame.f_code.co_qualname} ({_position(frame)})"
            frame = frame.f_back
        return f" at {_position(innermost)}" if innermost is not None else ""


def _position(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
