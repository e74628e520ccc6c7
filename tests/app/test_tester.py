"""AppTester runs any app on the memory backend; the memory backend's warning."""

from __future__ import annotations

import logging

import pytest

from aiosqsq import App, QueueSettings
from aiosqsq.testing import AppTester

SQS_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"


async def test_an_sqs_app_is_tested_on_the_memory_backend_keeping_its_settings() -> None:
    settings = QueueSettings(
        backend="sqs", sqs_queue_url=SQS_URL, aws_region="eu-west-1", concurrency=3
    )
    app = App(settings)
    got: list[int] = []

    @app.handler
    async def handle(order: dict[str, int]) -> None:
        got.append(order["id"])

    tester = AppTester(app)
    await tester.send({"id": 1})
    drained = await tester.drain()
    assert got == [1]
    assert len(drained.succeeded) == 1
    assert app.settings.concurrency == 3  # the other settings are kept
    assert app.settings.backend == "sqs"


async def test_the_memory_backend_warns_once_outside_tests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(QueueSettings(backend="memory"))
    with caplog.at_level(logging.WARNING, logger="aiosqsq"):
        await app.send("one")
        await app.send("two")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("QUEUE_BACKEND=memory: queues live inside this process only")
    assert "'aiosqsq run APP --local'" in warnings[0]
    await app.aclose()

    tested = App(QueueSettings(backend="memory"))
    caplog.clear()

    @tested.handler
    async def handle(body: str) -> None: ...

    tester = AppTester(tested)
    with caplog.at_level(logging.WARNING, logger="aiosqsq"):
        await tester.send("x")
        await tester.drain()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_statistics_after_several_runs_count_totals_not_past_limits() -> None:
    app = App(QueueSettings(backend="memory", concurrency=3))

    @app.handler
    async def handle(body: str) -> None: ...

    tester = AppTester(app)
    for _ in range(3):
        await tester.send("x")
        await tester.drain()
    stats = app.statistics()
    assert stats.succeeded == 3
    assert stats.concurrency_limit == 0  # nothing runs now
    assert stats.in_flight == 0
