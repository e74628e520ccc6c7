"""Nothing a message carries stops a consumer: validators that raise anything, and the
last-resort guard around settling."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from aiosqsq.backends.base import BatchResult, SendEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester, error_of
from tests.helpers import make_app, make_queue


class Named(BaseModel):
    name: str

    @field_validator("name", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip()  # AttributeError for a number: pydantic lets it escape

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value == "lookup":
            return {"a": "b"}[value]  # KeyError
        return value


async def test_validators_raising_anything_dead_letter_and_healthy_messages_go_on() -> None:
    backend = MemoryBackend()
    await make_queue(backend)
    app = make_app(backend)
    handled: list[str] = []

    @app.handler()
    async def handle(named: Named) -> None:
        handled.append(named.name)

    healthy = [{"name": f" n{i} "} for i in range(20)]
    bad = [{"name": 5}, {"name": "lookup"}, {"name": [1]}]
    await app.send_batch([*healthy[:10], *bad, *healthy[10:]])
    drained = await AppTester(app).drain()

    assert sorted(handled) == sorted(f"n{i}" for i in range(20))
    assert len(drained.dead_lettered) == 3
    reasons = sorted(error_of(m) or "" for m in await AppTester(app).dead_letters())
    assert [r.split(":")[0] for r in reasons] == ["AttributeError", "AttributeError", "KeyError"]


class _DLQSendExplodes(MemoryBackend):
    """A backend whose DLQ send raises what no backend should: a bug's stand-in."""

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        if queue_url.endswith("-dlq"):
            raise RuntimeError("unexpected")
        return await super().send_batch(queue_url, entries)


async def test_an_unexpected_error_while_settling_retries_the_message_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = _DLQSendExplodes()
    url = await make_queue(backend)
    app = make_app(backend, retry_base_delay=0, retry_max_delay=0)
    handled: list[int] = []

    @app.handler()
    async def handle(payload: dict[str, int]) -> None:
        handled.append(payload["n"])

    await app.send_batch([{"n": 1}, "not json", {"n": 2}])
    with caplog.at_level(logging.ERROR, logger="aiosqsq"):
        drained = await AppTester(app).drain()

    assert sorted(handled) == [1, 2]
    # retried on every receive (the guard), then moved by the queue's own redrive policy
    assert len(drained.retried) == 5
    assert len(await AppTester(app).dead_letters()) == 1
    guard_lines = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(guard_lines) == 5
    assert all("RuntimeError" in r.getMessage() for r in guard_lines)
    assert (await backend.get_queue_depth(url)).visible == 0
