"""A reply that is not SQS's (a proxy's HTML page, a body in another charset, broken
base64) is a backend error the engine retries or reports, never an exception that ends
the consumer: on both transports, against a server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pydantic import SecretStr

from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.backends.sqs_config import SQSConfig
from aiosqsq.errors import BackendError

REPLIES = {
    "html-200": (200, b"<!DOCTYPE html><p>a captive portal</p>"),
    "latin1-403": (403, b"Acc\xe8s refus\xe9"),
    "bad-base64-200": (
        200,
        b'{"Messages":[{"MessageId":"a","ReceiptHandle":"r","Body":"x","MessageAttributes":'
        b'{"k":{"DataType":"Binary","BinaryValue":"!!not base64"}}}]}',
    ),
}


@pytest.fixture
async def endpoint(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    status, body = REPLIES[request.param]

    async def reply(incoming: web.Request) -> web.Response:
        await incoming.read()
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_post("/", reply)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("transport", ["lean", "botocore"])
@pytest.mark.parametrize("endpoint", list(REPLIES), indirect=True)
async def test_a_reply_that_is_not_sqs_is_a_backend_error_or_nothing(
    endpoint: str, transport: str
) -> None:
    """A BackendError (the poller retries it or stops cleanly), or no message (botocore
    reads an HTML 200 as an empty answer); anything else would end the consumer."""
    config = SQSConfig(
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id=SecretStr("AKIDEXAMPLE"),
        secret_access_key=SecretStr("not-a-real-secret"),
        transport=transport,  # type: ignore[arg-type]
    )
    backend = SQSBackend(config)
    try:
        received = await backend.receive(
            f"{endpoint}/123456789012/q", max_messages=1, wait_time_s=0
        )
    except BackendError:
        received = []
    finally:
        await backend.aclose()
    assert received == []
