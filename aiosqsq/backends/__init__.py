"""Queue backends: ``memory`` (in-process, SQS semantics) and ``sqs`` (Amazon SQS)."""

from __future__ import annotations

from aiosqsq.backends.base import QueueBackend
from aiosqsq.backends.sqs_config import SQSConfig


def create_backend(name: str, sqs: SQSConfig | None = None) -> QueueBackend:
    """The backend ``name`` (QUEUE_BACKEND: ``memory`` or ``sqs``); ``sqs`` configures
    the SQS backend and is required for it. Raises :class:`ValueError` for another name."""
    if name == "sqs":
        if sqs is None:
            raise ValueError("the sqs backend needs an SQSConfig")
        from aiosqsq.backends.sqs import SQSBackend  # imports aioboto3: only when asked

        return SQSBackend(sqs)
    if name == "memory":
        from aiosqsq.backends.memory import MemoryBackend

        return MemoryBackend()
    raise ValueError(f"backend {name!r}: expected memory or sqs")
