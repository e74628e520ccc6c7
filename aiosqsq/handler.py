"""Checking a handler's signature once, at registration.

A handler's parameters, by annotation:

* one annotated :class:`~aiosqsq.Message` (a batch handler: ``list[Message]``), optional;
* at most one payload, decoded from the body by its annotation (see :mod:`aiosqsq.codec`;
  a batch handler: ``list[X]``; an ``s3`` envelope: :class:`~aiosqsq.envelopes.S3Record`);
* any others are resources, injected from the lifespan's value by their annotation (a
  parameter annotated with the type the lifespan yields is always a resource).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from aiosqsq.codec import Decoder
from aiosqsq.envelopes import Envelope, S3Record, envelope_kind
from aiosqsq.errors import HandlerSignatureError
from aiosqsq.message import Message

HandlerFunc = Callable[..., Awaitable[Any]]

MAX_BATCH_SIZE = 1000


class HandlerOptions(TypedDict, total=False):
    """The options of ``@app.handler(...)`` and ``@router.handler(...)``.

    * ``concurrency``: its calls running at once (default: QUEUE_CONCURRENCY, or adaptive);
    * ``timeout_s``: past it a call is cancelled and its message retried later;
    * ``pollers``: receive loops for its queue;
    * ``batch``, ``max_batch_size``, ``max_wait_s``: a batch handler and how its batches
      are gathered (see :mod:`aiosqsq.engine.batch`);
    * ``envelope``: ``"sns"``, ``"eventbridge"`` or ``"s3"``;
    * ``max_payload_bytes``: the largest payload this handler loads from S3 (large
      payloads), in place of QUEUE_LARGE_PAYLOAD_MAX_BYTES; a larger one is refused, not
      loaded, and its message goes to the dead-letter queue.
    """

    concurrency: int | None
    timeout_s: float | None
    pollers: int | None
    batch: bool
    max_batch_size: int
    max_wait_s: float
    envelope: str | None
    max_payload_bytes: int | None


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How a batch handler's batches are gathered: up to ``max_batch_size`` messages,
    waiting at most ``max_wait_s`` after the first one."""

    max_batch_size: int
    max_wait_s: float


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
    resources: tuple[tuple[str, Any], ...] = ()  # (parameter, annotation), from the lifespan
    middleware: tuple[Any, ...] = ()  # the handler's own, innermost
    batch: BatchOptions | None = None
    envelope: Envelope | None = None
    max_payload_bytes: int | None = None  # None: QUEUE_LARGE_PAYLOAD_MAX_BYTES

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


def inspect_handler(
    func: Any,
    *,
    queue: str | None,
    middleware: Sequence[Any] = (),
    resource_types: Sequence[type] = (),
    **handler_options: Unpack[HandlerOptions],
) -> HandlerSpec:
    """Build a :class:`HandlerSpec`, or raise :class:`HandlerSignatureError` saying why not.

    ``resource_types`` are the types the app's lifespan yields, when known: parameters
    annotated with one are resources, never the payload.
    """
    name = getattr(func, "__qualname__", repr(func))
    _check_callable(func, name)
    concurrency = handler_options.get("concurrency")
    timeout_s = handler_options.get("timeout_s")
    batch = handler_options.get("batch", False)
    envelope = handler_options.get("envelope")
    max_payload_bytes = handler_options.get("max_payload_bytes")
    if concurrency is not None and concurrency < 1:
        raise HandlerSignatureError(f"handler {name}: concurrency must be >= 1, got {concurrency}")
    if timeout_s is not None and timeout_s <= 0:
        raise HandlerSignatureError(f"handler {name}: timeout_s must be > 0, got {timeout_s}")
    if max_payload_bytes is not None and max_payload_bytes < 1:
        raise HandlerSignatureError(
            f"handler {name}: max_payload_bytes must be >= 1, got {max_payload_bytes}"
        )
    options = _batch_options(
        name,
        batch,
        handler_options.get("max_batch_size", 10),
        handler_options.get("max_wait_s", 1.0),
    )
    kind = None
    if envelope is not None:
        try:
            kind = envelope_kind(envelope)
        except ValueError as exc:
            raise HandlerSignatureError(f"handler {name}: {exc}") from None
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise HandlerSignatureError(
            f"handler {name}: cannot resolve its annotations ({exc}); "
            "import the annotated types where the handler is defined"
        ) from None

    message_type: Any = list[Message] if batch else Message
    payload_name: str | None = None
    message_name: str | None = None
    annotation: Any = inspect.Parameter.empty
    resources: list[tuple[str, Any]] = []
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
        if hint == message_type or hint is Message:
            if hint != message_type:
                raise HandlerSignatureError(
                    f"handler {name}: a batch handler gets its messages as "
                    f"'{parameter.name}: list[Message]'"
                )
            if message_name is not None:
                raise HandlerSignatureError(
                    f"handler {name}: more than one parameter is annotated Message "
                    f"({message_name!r} and {parameter.name!r})"
                )
            message_name = parameter.name
        elif hint in resource_types or payload_name is not None:
            resources.append((parameter.name, hint))
        else:
            payload_name, annotation = parameter.name, hint
    decoder = _decoder(name, payload_name, annotation, batch=batch, envelope=kind)
    return HandlerSpec(
        func=func,
        queue=queue,
        concurrency=concurrency,
        timeout_s=timeout_s,
        pollers=handler_options.get("pollers"),
        payload_name=payload_name,
        message_name=message_name,
        decoder=decoder,
        resources=tuple(resources),
        middleware=tuple(middleware),
        batch=options,
        envelope=kind,
        max_payload_bytes=max_payload_bytes,
    )


def _check_callable(func: Any, name: str) -> None:
    if inspect.isasyncgenfunction(func):
        raise HandlerSignatureError(
            f"handler {name} is an async generator ('async def' with 'yield'): a handler "
            "returns once per message; remove the 'yield'"
        )
    if inspect.isgeneratorfunction(func):
        raise HandlerSignatureError(
            f"handler {name} is a generator ('def' with 'yield'): write it as "
            "'async def' without 'yield'"
        )
    if not inspect.iscoroutinefunction(func):
        raise HandlerSignatureError(
            f"handler {name} must be an 'async def' function: "
            "aiosqsq awaits handlers on the event loop"
        )


def _batch_options(
    name: str, batch: bool, max_batch_size: int, max_wait_s: float
) -> BatchOptions | None:
    if not batch:
        return None
    if not 1 <= max_batch_size <= MAX_BATCH_SIZE:
        raise HandlerSignatureError(
            f"handler {name}: max_batch_size must be from 1 to {MAX_BATCH_SIZE}, "
            f"got {max_batch_size}"
        )
    if max_wait_s < 0:
        raise HandlerSignatureError(f"handler {name}: max_wait_s must be >= 0, got {max_wait_s}")
    return BatchOptions(max_batch_size, max_wait_s)


_SUPPORTED = (
    "str, bytes, Any, a pydantic model, a dataclass, a TypedDict, or a JSON type such as "
    "dict[str, int]"
)


def _decoder(
    name: str, payload_name: str | None, annotation: Any, *, batch: bool, envelope: str | None
) -> Decoder:
    if payload_name is None:  # no payload asked for: any body will do, none is parsed
        return Decoder.for_annotation(str)
    item = annotation
    if batch:
        if typing.get_origin(annotation) is not list:
            raise HandlerSignatureError(
                f"handler {name}: a batch handler gets its payloads as a list: annotate "
                f"'{payload_name}: list[X]' (got {type_name(annotation)})"
            )
        (item,) = typing.get_args(annotation) or (Any,)
    if envelope == "s3":
        if payload_name is not None and item not in (S3Record, Any, inspect.Parameter.empty):
            raise HandlerSignatureError(
                f"handler {name}: an s3 envelope's payload is an S3 record: annotate "
                f"'{payload_name}: S3Record'" + (" inside list[...]" if batch else "")
            )
        return Decoder.for_annotation(Any)
    try:
        return Decoder.for_annotation(item)
    except Exception:
        raise HandlerSignatureError(
            f"handler {name}: parameter {payload_name!r} is annotated {type_name(item)}, which "
            f"aiosqsq cannot decode a payload into; use {_SUPPORTED}"
        ) from None


def type_name(annotation: Any) -> str:
    """How an annotation is named in error messages."""
    if annotation is inspect.Parameter.empty:
        return "nothing"
    return getattr(annotation, "__qualname__", None) or repr(annotation)
