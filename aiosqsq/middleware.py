"""Middleware: code wrapped around every message a handler gets, and every one sent.

Consuming (``@app.middleware``, ``Router(middleware=[...])``,
``@app.handler(middleware=[...])``)::

    async def timing(message: Message, call_next: CallNext) -> Any:
        started = time.perf_counter()
        try:
            return await call_next()
        finally:
            log.info("handled in %.1f ms", (time.perf_counter() - started) * 1e3)

* Order is an onion: app middleware (the first registered is outermost), then the
  router's, then the handler's own, then decoding and the handler.
* ``call_next()`` decodes the body and calls the handler; it raises what the handler
  raises, and :class:`~aiosqsq.codec.PayloadError` for a body that does not decode.
* The fate follows what the middleware does: returning (with or without calling
  ``call_next``) deletes the message, so a middleware that skips a message it has seen
  before (an idempotency store) settles it as a success; raising ``Retry(delay_s=...)``
  or any exception gives the fate the handler's raising would; re-raising a
  ``PayloadError`` dead-letters the message.
* A batch handler's middleware gets a :class:`MessageBatch` (a list of the batch's
  :class:`~aiosqsq.Message`\\ s, those that will not decode included) and its
  ``call_next()`` returns the messages that failed (those the handler returned).
* A middleware is an ``async def (message, call_next)`` or an object with such an
  ``async def __call__``.

Sending (``@app.send_middleware``)::

    async def tag(message: OutgoingMessage, call_next: SendNext) -> None:
        message.attributes["tenant"] = current_tenant()
        await call_next()

Send middleware runs for every message of ``app.send`` and ``app.send_batch`` before it
is sent (the batch is then sent in requests of up to 10): it may change the attributes
(within SQS's 10) or raise to refuse the message; nothing is sent if one raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiosqsq.message import Message

CallNext = Callable[[], Awaitable[Any]]
SendNext = Callable[[], Awaitable[None]]


class MessageBatch(list[Message]):
    """What a batch handler's middleware gets: the batch's messages, in order."""

    @property
    def queue(self) -> str:
        return self[0].queue if self else ""


class Middleware(Protocol):
    """``async def (message, call_next) -> Any``, or an object with that ``__call__``."""

    def __call__(self, message: Any, call_next: CallNext, /) -> Awaitable[Any]: ...


@dataclass(slots=True)
class OutgoingMessage:
    """A message about to be sent: send middleware may change ``attributes``.

    ``attributes`` holds plain values (str, int, float, bytes), as ``app.send`` takes
    them; ``body`` is the encoded body (read-only by convention).
    """

    queue: str
    body: str
    attributes: MutableMapping[str, str | int | float | bytes] = field(default_factory=dict)
    group_id: str | None = None
    delay_s: int = 0


class SendMiddleware(Protocol):
    """``async def (message: OutgoingMessage, call_next) -> None``."""

    def __call__(self, message: OutgoingMessage, call_next: SendNext, /) -> Awaitable[None]: ...


def check_middleware(middleware: Any, what: str = "middleware") -> None:
    """Raise TypeError unless ``middleware`` can be awaited as ``(message, call_next)``."""
    if inspect.isfunction(middleware) or inspect.ismethod(middleware):
        target: Any = middleware
    else:
        target = type(middleware).__dict__.get("__call__")
    if target is None or not inspect.iscoroutinefunction(target):
        name = getattr(middleware, "__qualname__", type(middleware).__qualname__)
        raise TypeError(
            f"{what} {name} must be an 'async def (message, call_next)' or an object "
            "with such an 'async def __call__'"
        )


def chain(middleware: Sequence[Middleware], message: Any, innermost: CallNext) -> CallNext:
    """``innermost`` wrapped in ``middleware`` (the first outermost), for one message."""
    call_next = innermost
    for layer in reversed(middleware):
        call_next = _bind(layer, message, call_next)
    return call_next


def _bind(layer: Middleware, message: Any, call_next: CallNext) -> CallNext:
    def call() -> Awaitable[Any]:
        return layer(message, call_next)

    return call
