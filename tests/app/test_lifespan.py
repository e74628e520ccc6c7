"""The lifespan: once per run, before the first receive and after the last delete."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from aiosqsq import (
    App,
    HandlerSignatureError,
    Message,
    QueueNotFoundError,
    QueueSettings,
    StartupError,
)
from aiosqsq.backends.base import QueueMessage
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue


@dataclass
class Resources:
    events: list[str] = field(default_factory=list)


class Other:
    pass


class _Recording(MemoryBackend):
    """Records, in the shared event list, when receives and deletes happen."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    async def receive(self, queue_url: str, **options: object) -> list[QueueMessage]:
        self.events.append("receive")
        return await super().receive(queue_url, **options)  # type: ignore[arg-type]

    async def delete_batch(self, queue_url, entries):
        self.events.append("delete")
        return await super().delete_batch(queue_url, entries)


async def test_startup_before_the_first_receive_shutdown_after_the_last_delete() -> None:
    events: list[str] = []
    backend = _Recording(events)
    await make_queue(backend)

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[Resources]:
        events.append("startup")
        await app.send({"n": 1})  # a producer warming up works inside the lifespan
        yield Resources(events)
        events.append("shutdown")

    app = make_app(backend, lifespan=lifespan)
    seen: list[Resources] = []

    @app.handler()
    async def handle(payload: dict[str, int], res: Resources, message: Message) -> None:
        seen.append(res)
        await app.send({"n": 2}) if payload["n"] == 1 else None  # and inside handlers

    with pytest.raises(RuntimeError, match=r"app\.state is set while the app runs"):
        _ = app.state
    drained = await AppTester(app).drain()

    assert len(drained.succeeded) == 2
    assert seen
    assert all(res is seen[0] for res in seen)
    assert events[0] == "startup"
    assert events.index("receive") > 0
    assert events[-1] == "shutdown"
    assert "delete" in events
    assert max(i for i, e in enumerate(events) if e == "delete") < events.index("shutdown")
    with pytest.raises(RuntimeError, match=r"app\.state is set while the app runs"):
        _ = app.state


async def test_a_failing_startup_receives_nothing_and_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []
    backend = _Recording(events)
    await make_queue(backend)

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        raise ConnectionRefusedError("database down")
        yield

    app = make_app(backend, lifespan=lifespan)

    @app.handler()
    async def handle(payload: str) -> None: ...

    with caplog.at_level(logging.INFO, logger="aiosqsq"), pytest.raises(StartupError) as raised:
        await app.run(handle_signals=False)
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert "receive" not in events
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["application startup failed: ConnectionRefusedError: database down"]


async def test_shutdown_runs_when_consuming_failed() -> None:
    backend = MemoryBackend()  # the queue does not exist and is not created: a bad URL
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = make_app(backend, lifespan=lifespan, sqs_queue_url="memory://nowhere/missing")

    @app.handler()
    async def handle(payload: str) -> None: ...

    with pytest.raises(Exception):  # noqa: B017, PT011 - whichever error the backend gives
        await app.run(handle_signals=False)
    assert events == ["startup", "shutdown"]


async def test_a_resource_the_lifespan_does_not_yield_fails_at_start_naming_both() -> None:
    backend = MemoryBackend()
    await make_queue(backend)

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[Resources]:
        yield Resources()

    app = make_app(backend, lifespan=lifespan)

    @app.handler()
    async def handle(payload: str, other: Other) -> None: ...

    with pytest.raises(HandlerSignatureError) as raised:
        await AppTester(app).drain()
    assert str(raised.value).endswith(
        "handle: parameter 'other' asks for Other, but the app's lifespan yields Resources: "
        "annotate it with the type the lifespan yields"
    )


async def test_a_parameter_of_the_yielded_type_alone_is_a_resource_not_the_payload() -> None:
    backend = MemoryBackend()
    await make_queue(backend)

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[Resources]:
        yield Resources()

    app = make_app(backend, lifespan=lifespan)
    got: list[Resources] = []

    @app.handler
    async def handle(res: Resources) -> None:
        got.append(res)

    await app.send("anything")
    await AppTester(app).drain()
    assert len(got) == 1
    assert isinstance(got[0], Resources)


async def test_async_with_raises_the_same_error_as_run(
    sqs_settings: QueueSettings, moto_endpoint: str
) -> None:
    """Not a nested ExceptionGroup: the one error that stopped consuming."""
    missing = f"{moto_endpoint}/123456789012/missing-queue"

    async def handle(payload: str) -> None: ...

    run_app = App(sqs_settings.model_copy(update={"sqs_queue_url": missing}))
    run_app.handler(handle)
    with pytest.raises(QueueNotFoundError) as by_run:
        await run_app.run(handle_signals=False)
    with_app = App(sqs_settings.model_copy(update={"sqs_queue_url": missing}))
    with_app.handler(handle)
    with pytest.raises(QueueNotFoundError) as by_with:
        async with with_app:
            pass
    assert str(by_with.value) == str(by_run.value)
