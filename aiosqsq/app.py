"""The ``App``: handler registration, lifespan, middleware, consuming (``run`` /
``async with``) and sending."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack, overload

import anyio
from anyio import CancelScope
from anyio.abc import TaskGroup, TaskStatus

from aiosqsq.backends.base import QueueBackend
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.burst import BurstTracker
from aiosqsq.engine.config import ConsumerConfig
from aiosqsq.engine.consumer import Consumer
from aiosqsq.engine.settle import Fate, Observer
from aiosqsq.engine.stats import Statistics
from aiosqsq.engine.watchdog import LoopWatchdog
from aiosqsq.errors import ConfigurationError, HandlerSignatureError
from aiosqsq.handler import (
    HandlerFunc,
    HandlerOptions,
    HandlerSpec,
    inspect_handler,
    type_name,
)
from aiosqsq.lifespan import Lifespan, LifespanRunner
from aiosqsq.middleware import (
    Middleware,
    OutgoingMessage,
    SendMiddleware,
    chain,
    check_middleware,
)
from aiosqsq.observability.runtime import instrument, observe, sending
from aiosqsq.router import Registration, Router, duplicate_message
from aiosqsq.service import QueueService
from aiosqsq.serving import (
    build_consumers,
    consumer_config,
    log_start,
    sole_error,
    watch_signals,
)
from aiosqsq.settings import QueueSettings

logger = logging.getLogger("aiosqsq")

F = TypeVar("F", bound=HandlerFunc)


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

    A message is never deleted unless its handler returned (or middleware settled it,
    or it was copied to the dead-letter queue first).

    ``lifespan``: an async context manager factory, entered once per process before the
    first receive and left after the last delete is flushed; the value it yields is
    :attr:`state` and is injected into handler parameters annotated with its type.
    """

    def __init__(
        self,
        settings: QueueSettings | None = None,
        *,
        backend: QueueBackend | None = None,
        lifespan: Lifespan | None = None,
    ) -> None:
        self.settings = settings if settings is not None else QueueSettings()
        self.service = QueueService(self.settings, backend=backend)
        # Messages on a memory backend the settings chose reach no other process: say so.
        self._memory_warning = backend is None and self.settings.backend == "memory"
        self._lifespan = LifespanRunner(lifespan)
        self._handlers: list[HandlerSpec] = []
        self._middleware: list[Middleware] = []
        self._send_middleware: list[SendMiddleware] = []
        self._consumers: list[Consumer] = []
        self._finished = Statistics()
        self._consumer_totals: dict[tuple[str, str], Statistics] = {}
        self._observers: list[Observer] = []
        self._stopping = False
        self._started = False
        self._background: TaskGroup | None = None
        self._background_scope: CancelScope | None = None

    def __repr__(self) -> str:
        return f"<App backend={self.settings.backend} queues=[{', '.join(self.queues)}]>"

    # -- registration ------------------------------------------------------------------

    @overload
    def handler(self, queue: F) -> F: ...

    @overload
    def handler(
        self,
        queue: str | None = None,
        *,
        middleware: Sequence[Middleware] = (),
        **options: Unpack[HandlerOptions],
    ) -> Callable[[F], F]: ...

    def handler(
        self,
        queue: str | F | None = None,
        *,
        middleware: Sequence[Middleware] = (),
        **options: Unpack[HandlerOptions],
    ) -> F | Callable[[F], F]:
        """Register an ``async def`` as the handler of ``queue`` (a name or URL; None, or
        ``@app.handler`` without parentheses, is the default queue). Returns the function
        unchanged.

        The handler takes at most one payload parameter, decoded from the body by its
        annotation (see :mod:`aiosqsq.codec`), optionally one parameter annotated
        :class:`~aiosqsq.Message`, and any number annotated with the type the lifespan
        yields. ``middleware`` wraps this handler only (inside the app's and the
        router's); the other options are :class:`~aiosqsq.handler.HandlerOptions`
        (``concurrency``, ``timeout_s``, ``batch=True``, ``envelope=``, ...).
        Raises :class:`~aiosqsq.errors.HandlerSignatureError` at import time when the
        function cannot be served, TypeError for an option there is not.
        """
        if callable(queue):  # used bare: @app.handler
            return self.handler()(queue)
        router = Router()
        register = router.handler(queue, middleware=middleware, **options)

        def add(func: F) -> F:
            register(func)
            self.include_router(router)
            return func

        return add

    def include_router(self, router: Router) -> None:
        """Add ``router``'s handlers. Raises HandlerSignatureError when one of its queues
        already has a handler (naming both) or a handler cannot be served."""
        self._refuse_when_started("include a router")
        specs = [self._inspect(registration) for registration in router.registrations]
        for spec in specs:
            for other in self._handlers:
                if other.queue == spec.queue:
                    raise HandlerSignatureError(
                        duplicate_message(spec.func, other.func, spec.queue)
                    )
        self._handlers.extend(specs)

    def middleware(self, middleware: Middleware) -> Middleware:
        """Add ``middleware`` around every handler (outermost first, in the order added);
        use as ``@app.middleware``. Raises RuntimeError once the app has started."""
        self._refuse_when_started("add middleware")
        check_middleware(middleware)
        self._middleware.append(middleware)
        return middleware

    def send_middleware(self, middleware: SendMiddleware) -> SendMiddleware:
        """Add ``middleware`` for every message :meth:`send` and :meth:`send_batch` send
        (see :mod:`aiosqsq.middleware`); use as ``@app.send_middleware``."""
        self._refuse_when_started("add send middleware")
        check_middleware(middleware, "send middleware")
        self._send_middleware.append(middleware)
        return middleware

    @property
    def handlers(self) -> tuple[HandlerSpec, ...]:
        """The registered handlers, the app's own and its routers', in order."""
        return tuple(self._handlers)

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues the handlers consume (names or URLs as given; the default queue's
        QUEUE_SQS_QUEUE_URL, or "default")."""
        return tuple(spec.queue or self.settings.default_queue for spec in self._handlers)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """The consumers running now, one per handler (empty before start and after stop):
        each has its ``registry`` of held messages and its ``statistics()``."""
        return tuple(self._consumers)

    @property
    def state(self) -> Any:
        """What the lifespan yielded, while the app runs.

        Raises RuntimeError before the lifespan started and after it ended.
        """
        return self._lifespan.state

    def add_observer(self, observer: Observer) -> None:
        """Have ``observer(fate, message)`` called as each message's fate is decided."""
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def _inspect(self, registration: Registration) -> HandlerSpec:
        spec = inspect_handler(
            registration.func,
            queue=registration.queue,
            middleware=registration.middleware,
            resource_types=self._lifespan.resource_types,
            **registration.options,
        )
        if spec.resources and self._lifespan.lifespan is None:
            first, *_ = spec.resources
            raise HandlerSignatureError(
                f"handler {registration.func.__qualname__}: more than one payload parameter "
                f"({spec.payload_name!r} and {first[0]!r}); a handler takes at most one "
                "payload and one Message, and resources from the app's lifespan "
                "(App(lifespan=...))"
            )
        return spec

    def use_backend(self, backend: QueueBackend) -> None:
        """Consume and send through ``backend`` instead of the one the settings name,
        keeping every other setting (:class:`~aiosqsq.testing.AppTester` passes a
        MemoryBackend). Raises RuntimeError once the app has started."""
        self._refuse_when_started("change the backend")
        memory = isinstance(backend, MemoryBackend)
        settings = self.settings.model_copy(update={"backend": "memory"}) if memory else None
        self.service = QueueService(settings or self.settings, backend=backend)
        self._memory_warning = False

    def quiet_memory_warning(self) -> None:
        """Do not warn that the memory backend reaches no other process (a test knows)."""
        self._memory_warning = False

    def _warn_if_in_memory(self) -> None:
        if self._memory_warning:
            self._memory_warning = False
            logger.warning(
                "QUEUE_BACKEND=memory: queues live inside this process only, so no other "
                "process can send to or receive from them, and what is still queued is "
                "lost when it exits. For SQS set QUEUE_BACKEND=sqs and "
                "QUEUE_SQS_QUEUE_URL; to try SQS on this machine, run the worker with "
                "'aiosqsq run APP --local'"
            )

    def _refuse_when_started(self, what: str) -> None:
        if self._started:
            raise RuntimeError(f"cannot {what} once the app has started: do it before")

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
        offload: bool | None = None,
    ) -> str:
        """Send ``payload`` (str and bytes as is, anything else as JSON); return the
        MessageId. FIFO queues need ``group_id`` (and ``deduplication_id`` unless the
        queue deduplicates by content). Send middleware runs first. With large payloads
        on, ``offload`` True or False overrides the threshold for this send."""
        self._warn_if_in_memory()
        with sending(self, queue, 1) as traced:  # a PRODUCER span, its context added
            attributes = traced(await self._outgoing(payload, queue, delay_s, attributes, group_id))
            return await self.service.enqueue(
                payload,
                queue,
                delay_s=delay_s,
                attributes=attributes,
                group_id=group_id,
                deduplication_id=deduplication_id,
                offload=offload,
            )

    async def send_batch(
        self,
        payloads: Sequence[Any],
        queue: str | None = None,
        *,
        delay_s: int = 0,
        attributes: Mapping[str, str | int | float | bytes] | None = None,
        group_id: str | None = None,
        offload: bool | None = None,
    ) -> list[str]:
        """Send many payloads in batches of up to 10 and 1 MiB; return their MessageIds
        in order. With send middleware, each message may carry attributes of its own;
        ``offload`` as for :meth:`send`."""
        self._warn_if_in_memory()
        with sending(self, queue, len(payloads)) as traced:  # one PRODUCER span per call
            each = (
                [  # per message: middleware may give each attributes of its own
                    traced(await self._outgoing(payload, queue, delay_s, attributes, group_id))
                    for payload in payloads
                ]
                if self._send_middleware
                else None
            )
            return await self.service.enqueue_batch(
                payloads,
                queue,
                delay_s=delay_s,
                attributes=traced(attributes) if each is None else None,
                group_id=group_id,
                each_attributes=each,
                offload=offload,
            )

    async def _outgoing(
        self,
        payload: Any,
        queue: str | None,
        delay_s: int,
        attributes: Mapping[str, str | int | float | bytes] | None,
        group_id: str | None,
    ) -> Mapping[str, str | int | float | bytes] | None:
        if not self._send_middleware:
            return attributes
        from aiosqsq.codec import encode

        message = OutgoingMessage(
            queue=queue or self.settings.default_queue,
            body=encode(payload),
            attributes=dict(attributes or {}),
            group_id=group_id,
            delay_s=delay_s,
        )

        async def accept() -> None:
            return None

        await chain(self._send_middleware, message, accept)()
        return message.attributes

    async def aclose(self) -> None:
        """Close the backend (its connections) of an app used only to send; an app that
        consumes closes it when :meth:`run` returns or ``async with`` ends."""
        await self.service.aclose()

    # -- consuming ---------------------------------------------------------------------

    def statistics(self) -> Statistics:
        """A frozen snapshot of every consumer's counters since the app was created."""
        live = Statistics()
        for consumer in self._consumers:
            live = live + consumer.statistics()
        return self._finished + live

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for (the app is draining, or stopped)."""
        return self._stopping

    def consumer_statistics(self) -> dict[tuple[str, str], Statistics]:
        """Each handler's counters since the app was created, by (queue name, handler
        name): the consumers running now and those that ran before."""
        totals = dict(self._consumer_totals)
        for consumer in self._consumers:
            key = (consumer.info.name, consumer.name)
            totals[key] = totals.get(key, Statistics()) + consumer.statistics()
        return totals

    def stop(self, *, force: bool = False) -> None:
        """Begin a graceful stop: ``run()`` returns (``async with`` exits) when done.

        ``force`` (a second signal) cancels the running handlers of an app consuming in
        the background (``async with app:``) at once; their messages are still handed
        back and pending deletes flushed.
        """
        self._stopping = True
        for consumer in self._consumers:
            consumer.stop()
        if force and self._background_scope is not None:
            self._background_scope.cancel()

    async def run(self, *, burst: bool = False, handle_signals: bool = True) -> Statistics:
        """Consume until :meth:`stop`, SIGINT/SIGTERM or cancellation; return the counts.

        With ``burst``, return once every queue is empty and nothing is held. A first
        signal stops gracefully; a second one cancels the running handlers at once
        (their messages are still handed back). The backend is closed on return.

        Raises the error that stopped consuming when it cannot go on (for example
        :class:`~aiosqsq.errors.QueueNotFoundError`, or a BackendError for denied
        access; :class:`~aiosqsq.errors.StartupError` when the lifespan failed to start);
        transient failures (throttling, 5xx, network) are retried instead.
        """
        try:
            async with anyio.create_task_group() as tg:
                if handle_signals and threading.current_thread() is threading.main_thread():
                    # started, not start_soon: a signal that comes once consuming has
                    # begun must find the graceful handling in place
                    await tg.start(watch_signals, self, tg.cancel_scope)
                await self.serve(burst=burst)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = sole_error(group)
            raise error from error.__cause__
        finally:
            with anyio.CancelScope(shield=True):
                await self.service.aclose()
        return self.statistics()

    async def serve(
        self, *, burst: bool = False, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the lifespan and consume until stopped (or, with ``burst``, drained),
        without handling signals or closing the backend: for a host that owns both (a
        test, or a service that starts consuming in its own task group).

        ``task_status.started()`` is called once every consumer is receiving. Raises as
        :meth:`run` does.
        """
        if not self._handlers:
            raise ConfigurationError(
                "the app has no handlers: decorate an async function with @app.handler()"
            )
        instrument(self)  # metrics, health, log context: aiosqsq.observability
        self._started = True
        self._stopping = False
        self._warn_if_in_memory()
        try:
            async with self._lifespan.running(self), observe(self):
                consumers = await self._prepare()
                task_status.started()
                await self._run_consumers(consumers, burst)
        except BaseExceptionGroup as group:
            error = sole_error(group)
            raise error from error.__cause__

    async def __aenter__(self) -> Self:
        """Start consuming in the background of the current task; return once every
        consumer is receiving (raises what stopped it from starting)."""
        self._background = anyio.create_task_group()
        await self._background.__aenter__()
        try:
            await self._background.start(self._serve_shielded)
        except BaseException as exc:
            await self._leave_background(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop gracefully, as a first signal does under ``run()``, also when the block
        is left by cancellation (Ctrl-C, a host shutting down): unstarted messages are
        handed back, running handlers get QUEUE_SHUTDOWN_TIMEOUT, deletes are flushed,
        shielded from the cancellation, which then goes on. Closes the backend."""
        self.stop()
        await self._leave_background(None, None, None)

    async def _leave_background(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._background is not None, "__aexit__ without __aenter__"
        try:
            # The consumers run shielded (_serve_shielded): a cancelled host waits here
            # for their graceful stop, bounded by QUEUE_SHUTDOWN_TIMEOUT and the flush.
            await self._background.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            error = sole_error(group)
            raise error from error.__cause__
        finally:
            self._background = None
            with anyio.CancelScope(shield=True):
                await self.service.aclose()

    async def _serve_shielded(self, *, task_status: TaskStatus[None]) -> None:
        # Shielded: cancelling the host task must not cut the graceful stop short.
        with anyio.CancelScope(shield=True) as scope:
            self._background_scope = scope
            await self.serve(task_status=task_status)

    def consumer_config(self, spec: HandlerSpec) -> ConsumerConfig:
        """The limits and timings ``spec``'s consumer runs with under this app's settings."""
        return consumer_config(spec, self.settings)

    async def _prepare(self) -> list[Consumer]:
        return await build_consumers(
            self._handlers,
            [self.consumer_config(spec) for spec in self._handlers],
            service=self.service,
            middleware=self._middleware,
            resources_for=self._resources_for,
            observer=self._notify,
        )

    def _resources_for(self, spec: HandlerSpec) -> dict[str, Any]:
        """The lifespan's value for each resource parameter of ``spec``; raises
        HandlerSignatureError naming both when the lifespan yields something else."""
        resources: dict[str, Any] = {}
        for name, annotation in spec.resources:
            state = self._lifespan.state
            if isinstance(annotation, type) and isinstance(state, annotation):
                resources[name] = state
                continue
            raise HandlerSignatureError(
                f"handler {spec.name}: parameter {name!r} asks for {type_name(annotation)}, "
                f"but the app's lifespan yields {type_name(type(state))}: annotate it "
                "with the type the lifespan yields"
            )
        return resources

    async def _run_consumers(self, consumers: list[Consumer], burst: bool) -> None:
        self._consumers = consumers
        started = time.monotonic()
        for consumer in consumers:
            log_start(consumer, self.settings.backend)
        watchdog = LoopWatchdog([spec.func.__code__ for spec in self._handlers])
        tracker = (
            BurstTracker(self.stop, loops=sum(c.config.pollers for c in consumers))
            if burst
            else False
        )
        errors: list[Exception] = []
        try:
            async with anyio.create_task_group() as watching:
                watching.start_soon(watchdog.run)
                async with anyio.create_task_group() as tg:
                    for consumer in consumers:
                        if self._stopping:
                            consumer.stop()
                        tg.start_soon(self._run_consumer, consumer, tracker, errors)
                watching.cancel_scope.cancel()
            if errors:  # every consumer was stopped gracefully first
                raise errors[0]
        finally:
            stats = Statistics()
            for consumer in consumers:
                stats = stats + consumer.statistics()
                key, totals = (consumer.info.name, consumer.name), self._consumer_totals
                totals[key] = totals.get(key, Statistics()) + consumer.statistics()
            # "now" figures of a run that ended are not carried into the totals
            self._finished = self._finished + replace(stats, concurrency_limit=0, in_flight=0)
            self._consumers = []
            logger.info("stopped after %.1f s: %s", time.monotonic() - started, stats.summary())

    async def _run_consumer(
        self, consumer: Consumer, burst: bool | BurstTracker, errors: list[Exception]
    ) -> None:
        """Run one consumer; when it cannot go on (its queue refused), stop every other
        one gracefully too, instead of letting the task group cancel their handlers."""
        try:
            await consumer.run(burst=burst)
        except Exception as exc:
            errors.append(exc)
            self.stop()

    def _notify(self, fate: Fate, message: Any) -> None:
        for observer in self._observers:
            observer(fate, message)
