"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from aiosqsq.settings import QueueSettings


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep the developer's QUEUE_*/AWS_* variables and .env out of every test."""
    for name in list(os.environ):
        if name.startswith(("QUEUE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of one moto server (requests serialised, see tests/moto_server.py) shared by
    the whole session; tests create uniquely named queues and delete them."""
    from tests.moto_server import start_moto_server

    server = start_moto_server()
    try:
        yield server.endpoint_url
    finally:
        server.stop()


@pytest.fixture
def sqs_settings(moto_endpoint: str) -> QueueSettings:
    """Settings for an SQSBackend talking to the session's moto server."""
    return QueueSettings(
        backend="sqs",
        sqs_queue_url="default",
        sqs_endpoint_url=moto_endpoint,
        aws_region="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scale each test's pytest-timeout (its ``timeout`` mark, else the ini's) by
    AIOSQSQ_TEST_SLOWDOWN, as every other wall-clock bound of the suite is."""
    from tests.helpers import slowdown

    factor = slowdown()
    if factor == 1:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = default
        if marker is not None:
            seconds = float(marker.kwargs.get("timeout", marker.args[0] if marker.args else 0))
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * factor), append=False)
