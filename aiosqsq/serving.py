"""From registered handlers to running consumers: each handler's limits and timings under
the settings, its consumer built with its pipeline (middleware, envelope, decoding, large
payloads), the start line logged, the signals watched, and the one error of a task group
taken out of its exception groups.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio
from anyio import CancelScope
from anyio.abc import TaskStatus

from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.batch import BatchConsumer
from aiosqsq.engine.config import (
    DEFAULT_INITIAL_LIMIT,
    ConsumerConfig,
    LimitBounds,
    pollers_following,
)
from aiosqsq.engine.consumer import Consumer, connections_needed
from aiosqsq.engine.settle import Observer
from aiosqsq.handler import HandlerSpec
from aiosqsq.middleware import Middleware
from aiosqsq.pipeline import build_batch_process, build_process
from aiosqsq.preflight import preflight
from aiosqsq.service import QueueService
from aiosqsq.settings import QueueSettings

logger = logging.getLogger("aiosqsq")

# Room in the SQS connection pool for sends, dead-letter moves and Message.extend calls.
SENDER_CONNECTIONS = 10


def consumer_config(spec: HandlerSpec, settings: QueueSettings) -> ConsumerConfig:
    """The limits and timings ``spec``'s consumer runs with under ``settings``: the
    handler's own concurrency and pollers first, else the settings'; with neither, an
    adaptive limit (pinned for batch handlers)."""
    concurrency = spec.concurrency or settings.concurrency
    adaptive: LimitBounds | None = None
    if concurrency is None and spec.batch is None:  # adaptive (batches: pinned)
        adaptive = LimitBounds.around(settings.concurrency_min, settings.concurrency_max)
        concurrency = adaptive.initial
    elif concurrency is None:
        concurrency = DEFAULT_INITIAL_LIMIT
    follow = adaptive is not None and not (spec.pollers or settings.pollers)
    return ConsumerConfig(
        concurrency=concurrency,
        pollers=spec.pollers
        or (pollers_following(adaptive.maximum) if follow and adaptive else 0)
        or settings.pollers_for(concurrency),
        adaptive=adaptive,
        pollers_follow_limit=follow,
        max_messages=settings.max_messages,
        wait_time_s=settings.wait_time_seconds,
        visibility_timeout_s=settings.visibility_timeout,
        shutdown_timeout_s=settings.shutdown_timeout,
        retry_base_delay_s=settings.retry_base_delay,
        retry_max_delay_s=settings.retry_max_delay,
    )


async def build_consumers(
    handlers: Sequence[HandlerSpec],
    configs: Sequence[ConsumerConfig],
    *,
    service: QueueService,
    middleware: Sequence[Middleware],
    resources_for: Callable[[HandlerSpec], Mapping[str, Any]],
    observer: Observer,
) -> list[Consumer]:
    """One consumer per handler, ready to run: the backend's connection pool sized for
    them all, the S3 client of large payloads opened, each queue looked up and its
    preflight findings logged. ``middleware`` is the app's (each handler's own goes
    inside it). Raises what looking a queue up raises (QueueNotFoundError, ...)."""
    backend = service.backend
    # a pool too small lets long polls starve the deletes
    backend.ensure_connections(
        sum(connections_needed(config) for config in configs) + SENDER_CONNECTIONS
    )
    clock = backend.clock if isinstance(backend, MemoryBackend) else time.monotonic
    large_payloads = service.large_payloads  # S3 pointers fetched before decoding
    if large_payloads is not None:
        await large_payloads.open()  # before any message is held
    # with cleanup, an S3 object is deleted once its message's delete succeeded
    on_deleted = (
        large_payloads.delete_objects
        if large_payloads is not None and large_payloads.cleanup
        else None
    )
    consumers: list[Consumer] = []
    for spec, config in zip(handlers, configs, strict=True):
        resources = resources_for(spec)
        info = await service.queue_info(spec.queue)
        for finding in preflight(spec, info, service.settings):
            logger.warning("%s", finding)
        layers = (*middleware, *spec.middleware)
        common: dict[str, Any] = {
            "timeout_s": spec.timeout_s,
            "observer": observer,
            "clock": clock,
            "on_deleted": on_deleted,
        }
        if spec.batch is None:
            process = build_process(spec, layers, resources, payloads=large_payloads)
            consumer = Consumer(spec.name, process, backend, info, config, **common)
        else:
            batch_process = build_batch_process(spec, layers, resources, payloads=large_payloads)
            consumer = BatchConsumer(
                spec.name,
                batch_process,
                backend,
                info,
                config,
                max_batch_size=spec.batch.max_batch_size,
                max_wait_s=spec.batch.max_wait_s,
                **common,
            )
        consumers.append(consumer)
    return consumers


def log_start(consumer: Consumer, backend_name: str) -> None:
    """The one line that says how ``consumer`` consumes its queue."""
    config = consumer.config
    bounds = config.adaptive
    adaptive = "" if bounds is None else f"adaptive={bounds.minimum}-{bounds.maximum} "
    logger.info(
        "consuming %s with %s: backend=%s concurrency=%d pollers=%d %s"
        "visibility_timeout=%gs dead_letter_queue=%s",
        consumer.info.name,
        consumer.name,
        backend_name,
        consumer.concurrency_limit,
        config.pollers_for(consumer.concurrency_limit),
        adaptive,
        consumer.visibility_timeout_s,
        consumer.info.dead_letter_queue_url or "none",
    )


class Stoppable(Protocol):
    """What stops gracefully: an :class:`~aiosqsq.App`."""

    @property
    def stopping(self) -> bool: ...

    def stop(self) -> None: ...


async def watch_signals(
    app: Stoppable,
    scope: CancelScope,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """On SIGINT or SIGTERM, stop ``app`` gracefully; on a second one, cancel ``scope``
    (the running handlers) and return."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if not app.stopping:
                logger.info("%s received: stopping gracefully (again to force)", name)
                app.stop()
            else:
                logger.warning("%s received again: cancelling running handlers", name)
                scope.cancel()
                return


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested task-group exception groups, or the group itself."""
    errors: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            errors.append(error)
    return errors[0] if len(errors) == 1 else group
