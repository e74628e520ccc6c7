"""aiosqsq: an asyncio framework for consuming Amazon SQS at high throughput."""

from aiosqsq.app import App
from aiosqsq.backends.base import QueueBackend, QueueMessage
from aiosqsq.engine.stats import Statistics
from aiosqsq.errors import (
    AccessError,
    AiosqsqError,
    BackendError,
    ConfigurationError,
    HandlerSignatureError,
    PayloadTooLargeError,
    QueueNotFoundError,
    Retry,
)
from aiosqsq.message import Message
from aiosqsq.service import QueueService
from aiosqsq.settings import QueueSettings

__all__ = [
    "AccessError",
    "AiosqsqError",
    "App",
    "BackendError",
    "ConfigurationError",
    "HandlerSignatureError",
    "Message",
    "PayloadTooLargeError",
    "QueueBackend",
    "QueueMessage",
    "QueueNotFoundError",
    "QueueService",
    "QueueSettings",
    "Retry",
    "Statistics",
]
