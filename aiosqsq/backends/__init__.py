"""Queue backends: ``memory`` (in-process, SQS semantics) and ``sqs`` (aioboto3)."""

from __future__ import annotations

from aiosqsq.backends.base import QueueBackend
from aiosqsq.settings import QueueSettings


def create_backend(settings: QueueSettings) -> QueueBackend:
    """The backend QUEUE_BACKEND names, configured from ``settings``."""
    if settings.backend == "sqs":
        from aiosqsq.backends.sqs import SQSBackend  # imports aioboto3: only when asked

        return SQSBackend(settings)
    from aiosqsq.backends.memory import MemoryBackend

    return MemoryBackend()
