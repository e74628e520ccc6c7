"""Fixtures for the fault tests: queues on moto, the ledger the worker's app writes, and
the fault proxies in front of the session's moto server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aiosqsq.settings import QueueSettings
from tests.faults.ledger import Ledger
from tests.faults.proxy import FaultProxy
from tests.faults.queues import FaultQueues
from tests.faults.tcp_proxy import TcpProxy


@pytest.fixture
def queues(sqs_settings: QueueSettings) -> Iterator[FaultQueues]:
    """Queues on moto (reached directly, not through a proxy), removed after the test."""
    made = FaultQueues(sqs_settings)
    yield made
    made.delete_all()


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """Where the worker's app records its handler calls (LEDGER_PATH)."""
    return Ledger(tmp_path / "ledger.jsonl")


@pytest.fixture
def fault_proxy(moto_endpoint: str, tmp_path: Path) -> Iterator[FaultProxy]:
    """The HTTP fault proxy in front of moto, served from a background thread; its
    request log is left in the test's ``proxy.jsonl`` for a failure's post-mortem."""
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy
    proxy.write_jsonl(tmp_path / "proxy.jsonl")


@pytest.fixture
def tcp_proxy(moto_endpoint: str) -> Iterator[TcpProxy]:
    """The TCP fault proxy in front of moto, served from a background thread."""
    port = urlsplit(moto_endpoint).port
    assert port is not None
    with TcpProxy(port) as proxy:
        yield proxy
