"""Observing an app while it consumes: the instruments installed once per app, and what
runs beside its consumers (the loop tick, the queue statistics, the workers' health
files). ``App.serve`` enters :func:`observe`; nothing here is needed by hand, except
:func:`instrument` to choose the registry the metrics go to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio

from aiosqsq.backends.base import QueueBackend
from aiosqsq.errors import Retry
from aiosqsq.observability import health as health_module
from aiosqsq.observability import log_context
from aiosqsq.observability.health import Health
from aiosqsq.observability.recorder import CANCELLED, RAISED, RAN, RETRY, Recorder, queue_name

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from aiosqsq.app import App
    from aiosqsq.observability.tracing import Tracing

Sent = Mapping[str, str | int | float | bytes] | None

logger = logging.getLogger("aiosqsq.observability")

TICK_S: Final = 0.25
_SYNC_EVERY: Final = 4  # ticks between two reads of the consumers' counters
_INSTRUMENTED: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()


def prometheus_available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class Instruments:
    """What observes one app: its metrics recorder (None when metrics are off) and the
    log-context middleware."""

    def __init__(self, app: App, registry: CollectorRegistry | None) -> None:
        settings = app.settings
        self.app = app
        self.recorder: Recorder | None = None
        self.emf: Any = None
        self.health: Health | None = None  # while the app consumes
        if settings.metrics != "off" and prometheus_available():
            from prometheus_client import REGISTRY, CollectorRegistry

            from aiosqsq.observability.metrics import metrics_for

            if settings.metrics == "emf" and registry is None:
                registry = CollectorRegistry()
            self.recorder = Recorder(metrics_for(registry or REGISTRY))
            if settings.metrics == "emf":
                from aiosqsq.observability.emf import EmfWriter

                self.emf = EmfWriter(registry or REGISTRY)
        self.tracing: Tracing | None = None
        if settings.tracing == "on" and tracing_available():
            from aiosqsq.observability.tracing import Tracing

            self.tracing = Tracing()
            app.add_observer(self.tracing.observe)
        app.middleware(self.middleware)
        if self.recorder is not None:
            app.add_observer(self.recorder.observe)

    async def middleware(self, message: Any, call_next: Any) -> Any:
        """Set the log context, note the call for liveness and metrics, and trace it
        (when tracing is on)."""
        batch = isinstance(message, list)
        messages = message if batch else (message,)
        if not messages:
            return await call_next()
        first = messages[0]
        queue = queue_name(first.queue)
        if not batch:
            log_context.set_message(first.message_id, queue, first.receive_count)
        health, recorder, tracing = self.health, self.recorder, self.tracing
        key = object()
        if health is not None:
            health.call_started(key, first.message_id, queue)
        if recorder is not None:
            recorder.begin(messages)
        started = time.perf_counter()
        seen = RAISED
        try:
            if tracing is None:
                result = await call_next()
            else:
                result = await tracing.middleware(message, call_next)
            seen = RAN
            return result
        except Retry:
            seen = RETRY
            raise
        except anyio.get_cancelled_exc_class():
            seen = CANCELLED
            raise
        finally:
            if health is not None:
                health.call_ended(key)
            if recorder is not None:
                recorder.end(messages, queue, time.perf_counter() - started, seen)


def tracing_available() -> bool:
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def sending(app: App, queue: str | None, count: int) -> Iterator[Callable[[Sent], Sent]]:
    """Around one ``send``/``send_batch`` call: the PRODUCER span, and what adds its
    context to a message's attributes (nothing without tracing)."""
    tracing = instrument(app).tracing
    if tracing is None:
        yield _unchanged
        return
    with tracing.sending(queue or app.settings.default_queue, count):
        yield tracing.inject


def _unchanged(attributes: Sent) -> Sent:
    return attributes


def instrument(app: App, *, registry: CollectorRegistry | None = None) -> Instruments:
    """Install the instruments on ``app`` (once; before it starts), with the metrics in
    ``registry`` (default: prometheus-client's global one). Raises RuntimeError once the
    app has started."""
    found = _INSTRUMENTED.get(app)
    if found is None:
        found = _INSTRUMENTED[app] = Instruments(app, registry)
    return found


@contextlib.asynccontextmanager
async def observe(app: App) -> AsyncIterator[None]:
    """Observe ``app`` while the body consumes: health, loop lag, queue statistics."""
    instruments = instrument(app)
    settings = app.settings
    health = Health(
        [queue_name(q) for q in app.queues],
        liveness_timeout_s=settings.liveness_timeout,
        stopping=lambda: app.stopping,
    )
    backend = app.service.backend
    if instruments.recorder is not None:
        instruments.recorder.use_handlers(
            {queue_name(spec.queue or settings.default_queue): spec.name for spec in app.handlers}
        )
        instruments.recorder.instrument_backend(backend)
    untrack = _track_receives(backend, health)
    health_module.register(health)
    instruments.health = health
    failure: BaseException | None = None
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_tick, app, instruments, health)
            if instruments.recorder is not None and settings.queue_stats_interval > 0:
                tasks.start_soon(_poll_queue_stats, app, instruments, settings.queue_stats_interval)
            try:
                yield
            except BaseException as exc:  # raised as it is, not in a group
                failure = exc
            finally:
                tasks.cancel_scope.cancel()
    finally:
        untrack()
        health_module.unregister(health)
        if instruments.recorder is not None:
            instruments.recorder.sync(app.consumer_statistics())
            instruments.recorder.flush()
        if instruments.emf is not None:
            instruments.emf.flush()
    if failure is not None:
        raise failure


def _track_receives(backend: QueueBackend, health: Health) -> Callable[[], None]:
    """Tell ``health`` of every receive (wrapped on the instance); return what undoes it."""
    receive = backend.receive

    async def receive_tracked(queue_url: str, **kwargs: Any) -> Any:
        name = queue_name(queue_url)
        health.receive_started(name)
        try:
            return await receive(queue_url, **kwargs)
        finally:
            health.receive_ended(name)

    backend.receive = receive_tracked  # type: ignore[method-assign]

    def untrack() -> None:  # another app may use the backend next
        backend.receive = receive  # type: ignore[method-assign]

    return untrack


async def _tick(app: App, instruments: Instruments, health: Health) -> None:
    """Tick the loop (liveness, loop lag); every second, read the consumers' counters
    and, under a supervisor, write this worker's health for it."""
    health_dir = os.environ.get(health_module.HEALTH_DIR_ENV)
    recorder = instruments.recorder
    ticks = 0
    while True:
        expected = time.monotonic() + TICK_S
        await anyio.sleep(TICK_S)
        health.tick()
        ticks += 1
        if recorder is not None:
            recorder.metrics.loop_lag.set(max(0.0, time.monotonic() - expected))
            if ticks % _SYNC_EVERY == 0:
                recorder.sync(app.consumer_statistics())
                recorder.flush()
        if instruments.tracing is not None and ticks % _SYNC_EVERY == 0:
            instruments.tracing.sweep()
        if instruments.emf is not None and ticks % instruments.emf.every_ticks == 0:
            instruments.emf.flush()
        if health_dir and ticks % 2 == 0:
            try:
                health_module.write_state(health_dir, health.state())
            except OSError as exc:
                logger.warning("cannot write the worker's health file: %s", exc)


async def _poll_queue_stats(app: App, instruments: Instruments, interval_s: float) -> None:
    """``aiosqsq_queue_messages`` for each consumed queue and its dead-letter queue, every
    ``interval_s`` from the start."""
    assert instruments.recorder is not None
    gauge = instruments.recorder.metrics.queue_messages
    service = app.service
    while True:
        # after the interval, not at once: a consumer's start makes its own calls first
        await anyio.sleep(interval_s)
        for queue in dict.fromkeys(app.queues):
            try:
                info = await service.queue_info(queue)
                urls = [info.url]
                if info.dead_letter_queue_url:
                    urls.append(info.dead_letter_queue_url)
                for url in urls:
                    depth = await service.backend.get_queue_depth(url)
                    name = queue_name(url)
                    gauge.labels(name, "visible").set(depth.visible)
                    gauge.labels(name, "in_flight").set(depth.in_flight)
                    gauge.labels(name, "delayed").set(depth.delayed)
            except Exception as exc:  # statistics must never stop consuming
                logger.warning("cannot read the statistics of %s: %s", queue, exc)
