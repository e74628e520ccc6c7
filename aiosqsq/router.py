"""Routers: handlers (and their middleware) declared in a module of their own.

::

    router = Router(middleware=[audit])

    @router.handler("emails", concurrency=20)
    async def send_email(email: Email) -> None: ...

    app.include_router(router)

A router's middleware wraps each of its handlers inside the app's middleware and outside
the handler's own. One queue has one handler across the app and all its routers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from aiosqsq.errors import HandlerSignatureError
from aiosqsq.handler import HandlerFunc
from aiosqsq.middleware import Middleware, check_middleware

F = TypeVar("F", bound=HandlerFunc)


@dataclass(frozen=True, slots=True)
class Registration:
    """A handler as declared: the function and the options of ``@handler(...)``.

    The app inspects it when it includes it (so a parameter annotated with the type its
    lifespan yields is known to be a resource)."""

    func: HandlerFunc
    queue: str | None
    options: dict[str, Any] = field(default_factory=dict)
    middleware: tuple[Middleware, ...] = ()  # the router's, then the handler's own


class Router:
    """A group of handlers with shared middleware, included into an app."""

    def __init__(self, *, middleware: Sequence[Middleware] = ()) -> None:
        for layer in middleware:
            check_middleware(layer)
        self._middleware = tuple(middleware)
        self._registrations: list[Registration] = []

    def __repr__(self) -> str:
        return f"<Router handlers={len(self._registrations)}>"

    @property
    def registrations(self) -> tuple[Registration, ...]:
        """The handlers declared so far, in order."""
        return tuple(self._registrations)

    @overload
    def handler(self, queue: F) -> F: ...

    @overload
    def handler(
        self,
        queue: str | None = None,
        *,
        concurrency: int | None = None,
        timeout_s: float | None = None,
        pollers: int | None = None,
        middleware: Sequence[Middleware] = (),
        batch: bool = False,
        max_batch_size: int = 10,
        max_wait_s: float = 1.0,
        envelope: str | None = None,
    ) -> Callable[[F], F]: ...

    def handler(
        self,
        queue: str | F | None = None,
        *,
        concurrency: int | None = None,
        timeout_s: float | None = None,
        pollers: int | None = None,
        middleware: Sequence[Middleware] = (),
        batch: bool = False,
        max_batch_size: int = 10,
        max_wait_s: float = 1.0,
        envelope: str | None = None,
    ) -> F | Callable[[F], F]:
        """Declare ``func`` the handler of ``queue`` (see :meth:`aiosqsq.App.handler`);
        ``@router.handler`` without parentheses is the default queue. Returns the function
        unchanged."""
        if callable(queue):  # used bare: @router.handler
            return self.handler()(queue)
        for layer in middleware:
            check_middleware(layer)
        options = {
            "concurrency": concurrency,
            "timeout_s": timeout_s,
            "pollers": pollers,
            "batch": batch,
            "max_batch_size": max_batch_size,
            "max_wait_s": max_wait_s,
            "envelope": envelope,
        }

        def register(func: F) -> F:
            if not callable(func):
                raise HandlerSignatureError(f"@handler decorates a function, not {func!r}")
            if queue is not None and not isinstance(queue, str):
                raise HandlerSignatureError(
                    f"handler {func.__qualname__}: queue must be a name or URL, got {queue!r}"
                )
            for other in self._registrations:
                if other.queue == queue:
                    raise HandlerSignatureError(duplicate_message(func, other.func, queue))
            self._registrations.append(
                Registration(func, queue, options, (*self._middleware, *middleware))
            )
            return func

        return register


def duplicate_message(func: Any, other: Any, queue: str | None) -> str:
    """The error for a second handler of one queue, naming both and their modules."""
    return (
        f"handler {_where(func)}: queue {queue or 'default'!r} already has the handler "
        f"{_where(other)}; one queue has one handler"
    )


def _where(func: Any) -> str:
    module = inspect.getmodule(func)
    return f"{func.__qualname__} ({module.__name__ if module else func.__module__})"
