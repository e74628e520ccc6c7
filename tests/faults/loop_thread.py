"""An event loop of its own in a daemon thread: how a fault proxy serves while the test
drives a worker subprocess with synchronous code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

START_TIMEOUT_S = 10.0  # to start serving, and to stop


class LoopThread:
    """Runs an async context (entered: serving; exited: stopped) on a new event loop in a
    daemon thread, from :meth:`start` until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self, serving: Callable[[], AbstractAsyncContextManager[object]]) -> None:
        """Enter ``serving()`` on the thread's loop; return once it is entered. Raises
        :class:`RuntimeError` when it fails or takes longer than ``START_TIMEOUT_S``."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                async with serving():
                    ready.set()
                    await self._stopped.wait()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                raise

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or failure:
            raise RuntimeError(f"{self.name} did not start: {failure}")

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the loop (from any thread); nothing when it is not running."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(callback)

    def stop(self) -> None:
        """Leave the async context and wait (bounded) for the thread to end."""
        if self._stopped is not None:
            self.call_soon(self._stopped.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
