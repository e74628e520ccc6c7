"""aiosqsq: an asyncio framework for consuming Amazon SQS at high throughput."""

from aiosqsq.app import App
from aiosqsq.backends.base import QueueBackend, QueueMessage
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.codec import PayloadError
from aiosqsq.engine.settle import Fate
from aiosqsq.engine.stats import Statistics
from aiosqsq.envelopes import EventBridgeMetadata, S3Record, SNSMessageAttribute, SNSMetadata
from aiosqsq.errors import (
    AccessError,
    AiosqsqError,
    BackendError,
    ConfigurationError,
    HandlerSignatureError,
    LeaseError,
    MessageRefusedError,
    PayloadTooLargeError,
    QueueNotFoundError,
    Retry,
    StartupError,
)
from aiosqsq.message import Message
from aiosqsq.middleware import CallNext, MessageBatch, OutgoingMessage, SendNext
from aiosqsq.router import Router
from aiosqsq.service import QueueService
from aiosqsq.settings import QueueSettings

__all__ = [
    "AccessError",
    "AiosqsqError",
    "App",
    "BackendError",
    "CallNext",
    "ConfigurationError",
    "EventBridgeMetadata",
    "Fate",
    "HandlerSignatureError",
    "LeaseError",
    "MemoryBackend",
    "Message",
    "MessageBatch",
    "MessageRefusedError",
    "OutgoingMessage",
    "PayloadError",
    "PayloadTooLargeError",
    "QueueBackend",
    "QueueMessage",
    "QueueNotFoundError",
    "QueueService",
    "QueueSettings",
    "Retry",
    "Router",
    "S3Record",
    "SNSMessageAttribute",
    "SNSMetadata",
    "SendNext",
    "StartupError",
    "Statistics",
]
