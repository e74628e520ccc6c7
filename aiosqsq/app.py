"""The ``App``: handler registration, consuming (``run`` / ``async with``) and sending."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from anyio import CancelScope
from anyio.abc import TaskGroup, TaskStatus

from aiosqsq.backends.base import QueueBackend, QueueMessage
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.config import ConsumerConfig
from aiosqsq.engine.consumer import Consumer, connections_needed
from aiosqsq.engine.settle import Fate, Observer
from aiosqsq.engine.stats import Statistics
from aiosqsq.engine.watchdog import LoopWatchdog
from aiosqsq.errors import ConfigurationError, HandlerSignatureError
from aiosqsq.handler import HandlerFunc, HandlerSpec, inspect_handler
from aiosqsq.preflight import preflight
from aiosqsq.service import QueueService
from aiosqsq.settings import QueueSettings

logger = logging.getLogger("aiosqsq")

F = TypeVar("F", bound=HandlerFunc)

# Room in the SQS connection pool for sends, dead-letter moves and Message.extend calls.
_SENDER_CONNECTIONS = 10


class App:
    """An SQS consumer application: handlers, the queues they consume, and a producer.

    Each handler consumes one queue with its own pollers and its own concurrency limit
    (``QUEUE_CONCURRENCY`` unless the handler sets one), so one slow queue never starves
    another. Delivery is at-least-once. A message's fate:

    ==========================================  =============================================
    the handler...                              the message...
    ==========================================  =============================================
    returns                                     is deleted (in batches of up to 10)
    raises ``Retry(delay_s=N)``                 is visible again after N seconds
    raises anything else, or exceeds            is visible again after a backoff that grows
    ``timeout_s`` (it is cancelled)             with the receive count (exponential, jittered,
                                                at most QUEUE_RETRY_MAX_DELAY), until the
                                                queue's redrive policy moves it to its DLQ
    is never called: the body does not decode  is moved at once to the dead-letter queue with
    or validate                                 the reason in its ``aiosqsq-error`` attribute;
                                                with no DLQ, it is hidden for
                                                QUEUE_RETRY_MAX_DELAY, left to the queue's
                                                redrive or retention, and one error is logged
    calls ``message.release(delay_s)``          is visible again after ``delay_s``
    is still running at shutdown's deadline     is visible again at once (it is cancelled)
    is not started before shutdown              is visible again at once
    ==========================================  =============================================

    A message is never deleted unless its handler returned (or it was copied to the
    dead-letter queue first).
    """

    def __init__(
        self, settings: QueueSettings | None = None, *, backend: QueueBackend | None = None
    ) -> None:
        self.settings = settings if settings is not None else QueueSettings()
        self.service = QueueService(self.settings, backend=backend)
        self._handlers: list[HandlerSpec] = []
        self._consumers: list[Consumer] = []
        self._finished = Statistics()
        self._observers: list[Observer] = []
        self._stopping = False
        self._background: TaskGroup | None = None

    def __repr__(self) -> str:
        queues = ", ".join(spec.queue or self.settings.default_queue for spec in self._handlers)
        return f"<App backend={self.settings.backend} queues=[{queues}]>"

    # -- registration ------------------------------------------------------------------

    def handler(
        self,
        queue: str | None = None,
        *,
        concurrency: int | None = None,
        timeout_s: float | None = None,
        pollers: int | None = None,
    ) -> Callable[[F], F]:
        """Register an ``async def`` as the handler of ``queue`` (a name or URL; None is
        the default queue). Returns the function unchanged.

        The handler takes at most one payload parameter, decoded from the body by its
        annotation (see :mod:`aiosqsq.codec`), and optionally one parameter annotated
        :class:`~aiosqsq.Message`. ``concurrency`` bounds its running calls (default
        QUEUE_CONCURRENCY); past ``timeout_s`` a call is cancelled and retried later.
        Raises :class:`~aiosqsq.errors.HandlerSignatureError` at import time when the
        function cannot be served.
        """

        def register(func: F) -> F:
            spec = inspect_handler(
                func, queue=queue, concurrency=concurrency, timeout_s=timeout_s, pollers=pollers
            )
            for other in self._handlers:
                if other.queue == queue:
                    raise HandlerSignatureError(
                        f"handler {func.__qualname__}: queue "
                        f"{queue or self.settings.default_queue!r} already has the handler "
                        f"{other.func.__qualname__}; one queue has one handler"
                    )
            self._handlers.append(spec)
            return func

        return register

    # -- producing ---------------------------------------------------------------------

    async def send(
        self,
        payload: Any,
        queue: str | None = None,
        *,
        delay_s: int = 0,
        attributes: Mapping[str, str | int | float | bytes] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send ``payload`` (str and bytes as is, anything else as JSON); return the
        MessageId. FIFO queues need ``group_id`` (and ``deduplication_id`` unless the
        queue deduplicates by content)."""
        return await self.service.enqueue(
            payload,
            queue,
            delay_s=delay_s,
            attributes=attributes,
            group_id=group_id,
            deduplication_id=deduplication_id,
        )

    async def send_batch(
        self,
        payloads: Sequence[Any],
        queue: str | None = None,
        *,
        delay_s: int = 0,
        attributes: Mapping[str, str | int | float | bytes] | None = None,
        group_id: str | None = None,
    ) -> list[str]:
        """Send many payloads in batches of 10; return their MessageIds in order."""
        return await self.service.enqueue_batch(
            payloads, queue, delay_s=delay_s, attributes=attributes, group_id=group_id
        )

    # -- consuming ---------------------------------------------------------------------

    def statistics(self) -> Statistics:
        """A frozen snapshot of every consumer's counters since the app was created."""
        live = Statistics()
        for consumer in self._consumers:
            live = live + consumer.statistics()
        return self._finished + live

    def stop(self) -> None:
        """Begin a graceful stop: ``run()`` returns (``async with`` exits) when done."""
        self._stopping = True
        for consumer in self._consumers:
            consumer.stop()

    async def run(self, *, burst: bool = False, handle_signals: bool = True) -> Statistics:
        """Consume until :meth:`stop`, SIGINT/SIGTERM or cancellation; return the counts.

        With ``burst``, return once every queue is empty and nothing is held. A first
        signal stops gracefully; a second one cancels the running handlers at once
        (their messages are still handed back). The backend is closed on return.

        Raises the error that stopped consuming when it cannot go on (for example
        :class:`~aiosqsq.errors.QueueNotFoundError`, or a BackendError for denied
        access); transient failures (throttling, 5xx, network) are retried instead.
        """
        if not self._handlers:
            raise ConfigurationError(
                "the app has no handlers: decorate an async function with @app.handler()"
            )
        try:
            async with anyio.create_task_group() as tg:
                if handle_signals and threading.current_thread() is threading.main_thread():
                    # started, not start_soon: a signal that comes once consuming has
                    # begun must find the graceful handling in place
                    await tg.start(self._watch_signals, tg.cancel_scope)
                await self._serve(burst=burst)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _sole_error(group) from None
        finally:
            with anyio.CancelScope(shield=True):
                await self.service.aclose()
        return self.statistics()

    async def __aenter__(self) -> Self:
        """Start consuming in the background of the current task."""
        consumers = await self._prepare()
        self._background = anyio.create_task_group()
        await self._background.__aenter__()
        self._background.start_soon(self._run_consumers, consumers, False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop gracefully (see :meth:`run`) and close the backend."""
        assert self._background is not None, "__aexit__ without __aenter__"
        self.stop()
        try:
            return await self._background.__aexit__(exc_type, exc, tb)
        finally:
            self._background = None
            with anyio.CancelScope(shield=True):
                await self.service.aclose()

    async def _serve(self, *, burst: bool) -> None:
        await self._run_consumers(await self._prepare(), burst)

    def consumer_config(self, spec: HandlerSpec) -> ConsumerConfig:
        """The limits and timings ``spec``'s consumer runs with under this app's settings."""
        settings = self.settings
        concurrency = spec.concurrency or settings.concurrency
        return ConsumerConfig(
            concurrency=concurrency,
            pollers=spec.pollers or settings.pollers_for(concurrency),
            max_messages=settings.max_messages,
            wait_time_s=settings.wait_time_seconds,
            visibility_timeout_s=settings.visibility_timeout,
            shutdown_timeout_s=settings.shutdown_timeout,
            retry_base_delay_s=settings.retry_base_delay,
            retry_max_delay_s=settings.retry_max_delay,
        )

    async def _prepare(self) -> list[Consumer]:
        self._stopping = False
        backend = self.service.backend
        configs = [self.consumer_config(spec) for spec in self._handlers]
        # a pool too small lets long polls starve the deletes
        backend.ensure_connections(
            sum(connections_needed(config) for config in configs) + _SENDER_CONNECTIONS
        )
        clock = backend.clock if isinstance(backend, MemoryBackend) else time.monotonic
        consumers = []
        for spec, config in zip(self._handlers, configs, strict=True):
            info = await self.service.queue_info(spec.queue)
            for finding in preflight(spec, info, self.settings):
                logger.warning("%s", finding)
            consumers.append(
                Consumer(
                    spec.name,
                    spec.process,
                    backend,
                    info,
                    config,
                    timeout_s=spec.timeout_s,
                    observer=self._notify,
                    clock=clock,
                )
            )
        return consumers

    async def _run_consumers(self, consumers: list[Consumer], burst: bool) -> None:
        self._consumers = consumers
        started = time.monotonic()
        for consumer in consumers:
            logger.info(
                "consuming %s with %s: backend=%s concurrency=%d pollers=%d "
                "visibility_timeout=%gs dead_letter_queue=%s",
                consumer.info.name,
                consumer.name,
                self.settings.backend,
                consumer.config.concurrency,
                consumer.config.pollers,
                consumer.visibility_timeout_s,
                consumer.info.dead_letter_queue_url or "none",
            )
        watchdog = LoopWatchdog([spec.func.__code__ for spec in self._handlers])
        try:
            async with anyio.create_task_group() as watching:
                watching.start_soon(watchdog.run)
                async with anyio.create_task_group() as tg:
                    for consumer in consumers:
                        if self._stopping:
                            consumer.stop()
                        tg.start_soon(partial(consumer.run, burst=burst))
                watching.cancel_scope.cancel()
        finally:
            stats = Statistics()
            for consumer in consumers:
                stats = stats + consumer.statistics()
            self._finished = self._finished + stats
            self._consumers = []
            logger.info("stopped after %.1f s: %s", time.monotonic() - started, stats.summary())

    async def _watch_signals(
        self, scope: CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self._stopping:
                    logger.info("%s received: stopping gracefully (again to force)", name)
                    self.stop()
                else:
                    logger.warning("%s received again: cancelling running handlers", name)
                    scope.cancel()
                    return

    def _notify(self, fate: Fate, message: QueueMessage) -> None:
        for observer in self._observers:
            observer(fate, message)


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
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
