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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Unpack, overload

from aiosqsq.errors import HandlerSignatureError
from aiosqsq.handler import HandlerFunc, HandlerOptions
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
        middleware: Sequence[Middleware] = (),
        **options: Unpack[HandlerOptions],
    ) -> Callable[[F], F]: ...

    def handler(
        self,
        queue: str | F | None = None,
        *,
        middleware: Sequence[Middleware] = (),
        **options: Unpack[HandlerOptions],
    ) -> F | Callable[[F], F]:
        """Declare ``func`` the handler of ``queue`` (see :meth:`aiosqsq.App.handler`);
        ``@router.handler`` without parentheses is the default queue. Returns the function
        unchanged.

        Raises TypeError for an option that is not one of :class:`HandlerOptions`.
        """
        if callable(queue):  # used bare: @router.handler
            return self.handler()(queue)
        check_options(options)
        for layer in middleware:
            check_middleware(layer)

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
                Registration(func, queue, dict(options), (*self._middleware, *middleware))
            )
            return func

        return register


def check_options(options: Mapping[str, object]) -> None:
    """Raise TypeError, as a call does, for an option ``@handler`` does not take (a typo
    would otherwise be ignored)."""
    unknown = sorted(set(options) - HandlerOptions.__optional_keys__)
    if unknown:
        known = ", ".join(sorted(HandlerOptions.__optional_keys__))
        raise TypeError(
            f"handler() got an unexpected keyword argument {unknown[0]!r} "
            f"(it takes: middleware, {known})"
        )


def duplicate_message(func: Any, other: Any, queue: str | None) -> str:
    """The error for a second handler of one queue, naming both and their modules."""
    return (
        f"handler {_where(func)}: queue {queue or 'default'!r} already has the handler "
        f"{_where(other)}; one queue has one handler"
    )


def _where(func: Any) -> str:
    module = inspect.getmodule(func)
    return f"{func.__qualname__} ({module.__name__ if module else func.__module__})"
