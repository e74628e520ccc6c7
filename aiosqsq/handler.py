"""Checking a handler's signature once, at registration, and calling it per message."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosqsq.backends.base import QueueMessage
from aiosqsq.codec import Decoder
from aiosqsq.errors import HandlerSignatureError
from aiosqsq.message import Lease, Message

HandlerFunc = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler: the function, how to call it, and where it consumes."""

    func: HandlerFunc
    queue: str | None  # None: the app's default queue
    concurrency: int | None
    timeout_s: float | None
    pollers: int | None
    payload_name: str | None
    message_name: str | None
    decoder: Decoder

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"

    async def call(self, payload: Any, message: Message | None) -> None:
        kwargs: dict[str, Any] = {}
        if self.payload_name is not None:
            kwargs[self.payload_name] = payload
        if self.message_name is not None:
            kwargs[self.message_name] = message
        await self.func(**kwargs)

    async def process(self, message: QueueMessage, lease: Lease) -> None:
        """Decode ``message`` and call the handler with it.

        Raises :class:`~aiosqsq.codec.PayloadError` for a body that does not decode or
        validate (the handler is not called); anything the handler raises propagates.
        """
        payload = self.decoder.decode(message.body)
        delivered = (
            Message.from_queue_message(message, lease) if self.message_name is not None else None
        )
        await self.call(payload, delivered)


def inspect_handler(
    func: Any,
    *,
    queue: str | None,
    concurrency: int | None,
    timeout_s: float | None,
    pollers: int | None,
) -> HandlerSpec:
    """Build a :class:`HandlerSpec`, or raise :class:`HandlerSignatureError` saying why not."""
    name = getattr(func, "__qualname__", repr(func))
    if not inspect.iscoroutinefunction(func):
        raise HandlerSignatureError(
            f"handler {name} must be an 'async def' function: "
            "aiosqsq awaits handlers on the event loop"
        )
    if concurrency is not None and concurrency < 1:
        raise HandlerSignatureError(f"handler {name}: concurrency must be >= 1, got {concurrency}")
    if timeout_s is not None and timeout_s <= 0:
        raise HandlerSignatureError(f"handler {name}: timeout_s must be > 0, got {timeout_s}")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise HandlerSignatureError(
            f"handler {name}: cannot resolve its annotations ({exc}); "
            "import the annotated types where the handler is defined"
        ) from None

    payload_name: str | None = None
    message_name: str | None = None
    annotation: Any = inspect.Parameter.empty
    for parameter in inspect.signature(func).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise HandlerSignatureError(
                f"handler {name}: *args and **kwargs are not supported; "
                "declare one payload parameter and optionally one 'message: Message'"
            )
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise HandlerSignatureError(
                f"handler {name}: parameter {parameter.name!r} is positional-only; "
                "aiosqsq passes arguments by name"
            )
        hint = hints.get(parameter.name, inspect.Parameter.empty)
        if hint is Message:
            if message_name is not None:
                raise HandlerSignatureError(
                    f"handler {name}: more than one parameter is annotated Message "
                    f"({message_name!r} and {parameter.name!r})"
                )
            message_name = parameter.name
        elif payload_name is None:
            payload_name, annotation = parameter.name, hint
        else:
            raise HandlerSignatureError(
                f"handler {name}: more than one payload parameter ({payload_name!r} and "
                f"{parameter.name!r}); a handler takes at most one payload and one Message"
            )
    try:
        decoder = Decoder.for_annotation(annotation)
    except Exception as exc:
        raise HandlerSignatureError(
            f"handler {name}: cannot decode payloads into {annotation!r} ({exc})"
        ) from None
    return HandlerSpec(
        func=func,
        queue=queue,
        concurrency=concurrency,
        timeout_s=timeout_s,
        pollers=pollers,
        payload_name=payload_name,
        message_name=message_name,
        decoder=decoder,
    )
