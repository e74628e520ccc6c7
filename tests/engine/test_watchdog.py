"""A handler that blocks the event loop is reported, by name, within a second."""

from __future__ import annotations

import logging
import time

import pytest

from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue


async def test_a_blocking_handler_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend()
    await make_queue(backend)
    app = make_app(backend)

    @app.handler()
    async def blocks_the_loop(payload: str) -> None:
        time.sleep(1.0)  # noqa: ASYNC251 - the mistake being detected

    await app.send("x")
    with caplog.at_level(logging.WARNING, logger="aiosqsq.watchdog"):
        started = time.time()
        await AppTester(app).drain()
    warnings = [r for r in caplog.records if r.name == "aiosqsq.watchdog"]
    assert len(warnings) == 1  # one report per stall
    message = warnings[0].getMessage()
    assert "the event loop has been blocked for" in message
    assert "in handler test_a_blocking_handler_is_named_in_a_warning.<locals>.blocks_the_loop" in (
        message
    )
    assert "test_watchdog.py:" in message
    # reported while the stall lasted (0.5 s threshold), not after
    assert warnings[0].created - started < 1.0


async def test_a_well_behaved_handler_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend()
    await make_queue(backend)
    app = make_app(backend)

    @app.handler()
    async def fine(payload: str) -> None: ...

    await app.send_batch([str(i) for i in range(200)])
    with caplog.at_level(logging.WARNING, logger="aiosqsq.watchdog"):
        await AppTester(app).drain()
    assert [r for r in caplog.records if r.name == "aiosqsq.watchdog"] == []
