"""The SQS client's pool is sized so long polls never starve deletes and extensions."""

from __future__ import annotations

import pytest

from aiosqsq import App, ConfigurationError, QueueNotFoundError, QueueSettings
from aiosqsq.backends.sqs import SQSBackend


def _app_with_handlers(backend: SQSBackend, settings: QueueSettings, count: int) -> App:
    app = App(settings, backend=backend)
    for i in range(count):

        async def handle(payload: str) -> None: ...

        app.handler(queue=f"q{i}", concurrency=40)(handle)  # 4 pollers each
    return app


async def test_the_pool_grows_before_the_client_opens(sqs_settings: QueueSettings) -> None:
    backend = SQSBackend(sqs_settings)
    try:
        app = _app_with_handlers(backend, sqs_settings, 6)
        with pytest.raises(QueueNotFoundError):  # sized first, then the queues are looked up
            await app.run(burst=True, handle_signals=False)
        # 6 x (4 long polls + 8 acker batches + 1 heartbeat) + 10 for sends
        assert backend._max_connections == 88
    finally:
        await backend.aclose()


async def test_a_pool_already_open_and_too_small_is_refused(sqs_settings: QueueSettings) -> None:
    backend = SQSBackend(sqs_settings)
    try:
        await backend.create_queue("opens-the-client")
        app = _app_with_handlers(backend, sqs_settings, 6)
        with pytest.raises(ConfigurationError) as raised:
            await app.run(burst=True, handle_signals=False)
        assert str(raised.value).startswith(
            "the handlers need up to 88 concurrent SQS requests (long polls plus deletes, "
            "visibility changes and sends) but the SQS client was opened with 50 connections"
        )
    finally:
        url = await backend.get_queue_url("opens-the-client")
        await backend.delete_queue(url)
        await backend.aclose()
