"""An app's lifespan: the async context manager entered once per process before the first
receive and left after the last delete, whose yielded value is ``app.state``.

Startup and shutdown are logged as uvicorn logs them ("waiting for application
startup", "... complete", "... failed"). A failed startup raises
:class:`~aiosqsq.errors.StartupError`; a failed shutdown is logged and does not hide the
error that ended consuming.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from aiosqsq.errors import StartupError, describe_error

if TYPE_CHECKING:
    from aiosqsq.app import App

logger = logging.getLogger("aiosqsq")

Lifespan = Callable[["App"], AbstractAsyncContextManager[Any]]

_NOT_RUNNING = object()


class LifespanRunner:
    """Enters and leaves one app's lifespan (or none), and holds its value meanwhile."""

    def __init__(self, lifespan: Lifespan | None) -> None:
        self.lifespan = lifespan
        self.resource_types = yielded_types(lifespan)
        self._state: Any = _NOT_RUNNING

    @property
    def state(self) -> Any:
        """What the lifespan yielded (None without a lifespan), from its startup until
        its shutdown ended. Raises RuntimeError at any other time."""
        if self._state is _NOT_RUNNING:
            raise RuntimeError(
                "app.state is set while the app runs: the lifespan's yielded value, from "
                "its startup until its shutdown"
                + ("" if self.lifespan else " (this app has no lifespan: App(lifespan=...))")
            )
        return self._state

    @asynccontextmanager
    async def running(self, app: App) -> AsyncIterator[None]:
        """Enter the lifespan for ``app``, and leave it after the body ended, however it
        ended (shielded from cancellation). Raises StartupError when entering failed."""
        if self.lifespan is None:
            self._state = None
            try:
                yield
            finally:
                self._state = _NOT_RUNNING
            return
        logger.info("waiting for application startup")
        context = self.lifespan(app)
        try:
            self._state = await context.__aenter__()
        except Exception as exc:
            logger.error("application startup failed: %s", describe_error(exc))
            raise StartupError(f"the app's lifespan failed: {describe_error(exc)}") from exc
        logger.info("application startup complete")
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                logger.info("waiting for application shutdown")
                await self._leave(context)

    async def _leave(self, context: AbstractAsyncContextManager[Any]) -> None:
        # Left as after a clean run even when consuming failed: the error is the
        # consumer's, and the lifespan's shutdown code (closing a pool) must run.
        try:
            await context.__aexit__(None, None, None)
        except Exception as exc:
            logger.error("application shutdown failed: %s", describe_error(exc))
        else:
            logger.info("application shutdown complete")
        finally:
            self._state = _NOT_RUNNING


def yielded_types(lifespan: Lifespan | None) -> tuple[type, ...]:
    """The type a lifespan yields, from its return annotation (AsyncIterator[T], or an
    async context manager of T), when it says; () otherwise."""
    if lifespan is None:
        return ()
    target = getattr(lifespan, "__wrapped__", lifespan)
    try:
        returned = typing.get_type_hints(target).get("return")
    except Exception:
        return ()
    args = typing.get_args(returned)
    return tuple(arg for arg in args[:1] if isinstance(arg, type) and arg is not type(None))
