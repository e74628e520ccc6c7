"""Start-up findings about a handler's settings against its queue."""

from __future__ import annotations

import logging

import pytest

from aiosqsq import App, QueueSettings
from aiosqsq.backends.base import QueueInfo
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.handler import inspect_handler
from aiosqsq.preflight import least_backoff_s, preflight
from tests.helpers import make_queue


async def _handler(payload: str) -> None: ...


def _spec(timeout_s: float | None = None):
    return inspect_handler(
        _handler, queue=None, concurrency=None, timeout_s=timeout_s, pollers=None
    )


def _info(**values: object) -> QueueInfo:
    base: dict[str, object] = {
        "url": "u",
        "name": "orders",
        "arn": "a",
        "visibility_timeout_s": 30.0,
        "fifo": False,
        "dead_letter_queue_url": "dlq",
        "max_receive_count": 5,
    }
    base.update(values)
    return QueueInfo(**base)  # type: ignore[arg-type]


def test_a_well_configured_queue_has_no_findings() -> None:
    assert preflight(_spec(timeout_s=10), _info(), QueueSettings()) == []


def test_no_dead_letter_queue() -> None:
    (finding,) = preflight(_spec(), _info(dead_letter_queue_url=None), QueueSettings())
    assert finding.startswith("queue orders has no dead-letter queue (RedrivePolicy)")


def test_a_low_max_receive_count() -> None:
    (finding,) = preflight(_spec(), _info(max_receive_count=1), QueueSettings())
    assert "maxReceiveCount=1" in finding
    assert "use at least 5" in finding


def test_backoff_that_outlives_the_retention() -> None:
    settings = QueueSettings(retry_base_delay=60, retry_max_delay=900)
    assert least_backoff_s(5, settings) == pytest.approx(30 + 60 + 120 + 240)
    (finding,) = preflight(_spec(), _info(message_retention_s=300), settings)
    assert "takes at least 450 s to reach maxReceiveCount=5" in finding
    assert "retention of 300 s" in finding


def test_a_handler_timeout_longer_than_the_visibility_timeout() -> None:
    (finding,) = preflight(_spec(timeout_s=120), _info(), QueueSettings())
    assert "may run 120 s, longer than queue orders's visibility timeout of 30 s" in finding


@pytest.mark.parametrize(
    ("setting", "queue_s"), [(0, 30.0), (None, 0.0)], ids=["the setting", "the queue's"]
)
def test_a_visibility_timeout_of_zero(setting: int | None, queue_s: float) -> None:
    settings = QueueSettings(visibility_timeout=setting)
    (finding,) = preflight(_spec(), _info(visibility_timeout_s=queue_s), settings)
    assert finding.startswith(
        "queue orders is consumed with a visibility timeout of 0 s: a message is visible "
        "again as soon as it is received"
    )


def test_the_setting_overrides_the_queues_visibility_timeout() -> None:
    (finding,) = preflight(
        _spec(), _info(visibility_timeout_s=0.0), QueueSettings(visibility_timeout=1)
    )
    assert "has a visibility timeout of 1 s" in finding
    assert (
        preflight(_spec(), _info(visibility_timeout_s=0.0), QueueSettings(visibility_timeout=30))
        == []
    )


async def test_findings_are_logged_at_start(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend()
    await make_queue(backend, max_receive_count=None)
    app = App(QueueSettings(sqs_queue_url="jobs"), backend=backend)
    app.handler()(_handler)
    with caplog.at_level(logging.WARNING):
        await app.run(burst=True, handle_signals=False)
    assert any("has no dead-letter queue" in r.message for r in caplog.records)
