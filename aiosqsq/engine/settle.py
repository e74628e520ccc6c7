"""Settling: turning what happened to a message into its fate, and carrying the fate out.

=====================  ================================================  ===============
outcome                what is done                                      fate
=====================  ================================================  ===============
``Succeeded``          deleted (batched by the acker)                    succeeded
``Failed(delay_s)``    visible again after ``delay_s`` (``None``: the    retried
                       backoff for its receive count), never past SQS's
                       12 hours after the receive; on the last receive
                       the queue's ``maxReceiveCount`` allows, moved to  dead_lettered
                       the DLQ at once with the error's class as reason
``BadPayload(error)``  copied to the dead-letter queue with the reason,  dead_lettered
                       then deleted; with no DLQ (or the copy failed),
                       hidden for the longest retry delay                (retried)
``HandedBack``         visible again at once, unhandled (shutdown, the   released
                       rest of a FIFO group)
=====================  ================================================  ===============

A message is settled once: later outcomes for it are ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from aiosqsq.backends.base import QueueBackend, QueueInfo, QueueMessage
from aiosqsq.codec import PayloadError
from aiosqsq.engine.acker import Acker
from aiosqsq.engine.backoff import retry_delay_s, visibility_left_s
from aiosqsq.engine.config import ConsumerConfig
from aiosqsq.engine.dead_letter import copy_to_dead_letter_queue
from aiosqsq.engine.registry import InFlight, InFlightRegistry, State
from aiosqsq.engine.stats import Counters

logger = logging.getLogger("aiosqsq.consumer")

Fate = Literal["succeeded", "retried", "dead_lettered", "released"]


class Observer(Protocol):
    """Told every message's fate as it is decided (:mod:`aiosqsq.testing` records them)."""

    def __call__(self, fate: Fate, message: QueueMessage, /) -> None: ...


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The handler returned (or middleware settled the message without it)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The handler raised, timed out or asked for a retry: try again after ``delay_s``
    (None: the backoff for the message's receive count). ``error_class`` names why, for
    the dead-letter queue's reason (never the exception's text)."""

    delay_s: float | None = None
    error_class: str | None = None


@dataclass(frozen=True, slots=True)
class BadPayload:
    """The body does not decode or validate: it will never succeed."""

    error: PayloadError


Outcome = Succeeded | Failed | BadPayload

SUCCEEDED = Succeeded()


class Settler:
    """Carries out the fate of one queue's messages through the acker."""

    def __init__(
        self,
        backend: QueueBackend,
        info: QueueInfo,
        config: ConsumerConfig,
        registry: InFlightRegistry,
        acker: Acker,
        counters: Counters,
        *,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._info = info
        self._config = config
        self._registry = registry
        self._acker = acker
        self._counters = counters
        self._observer = observer
        self._clock = clock

    def holds(self, entry: InFlight) -> bool:
        """Whether ``entry`` is still held and not yet settled."""
        return entry in self._registry and entry.state is not State.SETTLING

    async def settle(self, entry: InFlight, outcome: Outcome) -> Fate | None:
        """Carry out ``outcome`` for ``entry``; return its fate (None if already settled)."""
        if isinstance(outcome, Succeeded):
            return self.succeed(entry)
        if isinstance(outcome, Failed):
            if self._is_last_receive(entry.message):
                error = self._exhausted(entry.message, outcome)
                return await self._dead_letter(entry, error, exhausted=True)
            delay_s = self.backoff_s(entry.message) if outcome.delay_s is None else outcome.delay_s
            return self.retry(entry, delay_s)
        return await self._dead_letter(entry, outcome.error)

    def _is_last_receive(self, message: QueueMessage) -> bool:
        """Whether SQS's redrive policy would move ``message`` at its next receive: then
        it is moved now, with the reason, instead of silently by SQS."""
        limit = self._info.max_receive_count
        return (
            limit is not None
            and self._info.dead_letter_queue_url is not None
            and message.receive_count >= limit
        )

    def _exhausted(self, message: QueueMessage, outcome: Failed) -> PayloadError:
        return PayloadError(
            outcome.error_class or "Failed",
            f"failed on receive {message.receive_count}, the last the queue's "
            f"maxReceiveCount ({self._info.max_receive_count}) allows",
        )

    def succeed(self, entry: InFlight) -> Fate | None:
        """Delete the message: its handler succeeded (the common case, without an await)."""
        if not self.holds(entry):
            return None
        entry.state = State.SETTLING
        self._acker.delete(entry)
        self._counters.succeeded += 1
        return self._notify("succeeded", entry)

    def backoff_s(self, message: QueueMessage) -> float:
        """The retry delay for a failure at ``message``'s receive count."""
        return retry_delay_s(
            message.receive_count,
            base_s=self._config.retry_base_delay_s,
            max_s=self._config.retry_max_delay_s,
        )

    def retry(self, entry: InFlight, delay_s: float) -> Fate | None:
        """Make the message visible again after ``delay_s`` (within the 12-hour cap)."""
        return self._make_visible(entry, delay_s, "retried")

    def release(self, entry: InFlight, delay_s: float) -> Fate | None:
        """Hand the message back unhandled, visible again after ``delay_s``."""
        return self._make_visible(entry, delay_s, "released")

    def _make_visible(
        self, entry: InFlight, delay_s: float, fate: Literal["retried", "released"]
    ) -> Fate | None:
        if not self.holds(entry):
            return None
        entry.state = State.SETTLING
        self._acker.change_visibility(entry, self._capped(entry, delay_s))
        if fate == "retried":
            self._counters.retried += 1
        else:
            self._counters.released += 1
        return self._notify(fate, entry)

    def hand_back(self, entries: Iterable[InFlight]) -> None:
        """Hand every still-held entry back, visible again at once."""
        for entry in entries:
            self.release(entry, 0)

    def _capped(self, entry: InFlight, delay_s: float) -> float:
        return min(delay_s, visibility_left_s(entry.received_at, self._clock()))

    async def _dead_letter(
        self, entry: InFlight, error: PayloadError, *, exhausted: bool = False
    ) -> Fate | None:
        """Move a message that will never succeed to the dead-letter queue, with the
        reason in a message attribute: an undecodable one, or (``exhausted``) one that
        failed on its last allowed receive. An undecodable one that cannot be moved is
        hidden for the longest retry delay; an exhausted one is retried with backoff
        (SQS's redrive policy moves it at its next receive)."""
        if not self.holds(entry):
            return None
        message, info = entry.message, self._info
        if info.dead_letter_queue_url is not None:
            copy_id = await copy_to_dead_letter_queue(
                self._backend, message, info, info.dead_letter_queue_url, error
            )
            if copy_id is not None and self.holds(entry):
                entry.state = State.SETTLING
                self._acker.delete(entry, notify=False)  # the copy still needs its payload
                self._counters.dead_lettered += 1
                logger.error(
                    "message %s on %s was moved to the dead-letter queue as %s: %s",
                    message.message_id,
                    info.name,
                    copy_id,
                    f"{error.error_class}: {error.reason}" if exhausted else error.error_class,
                )
                return self._notify("dead_lettered", entry)
            if exhausted:  # SQS's redrive policy moves it at its next receive
                return self.retry(entry, self.backoff_s(message))
        logger.error(
            "message %s on %s cannot be decoded (%s) and %s; it stays hidden for %g s "
            "and is left to the queue's redrive policy or retention",
            message.message_id,
            info.name,
            error.error_class,
            "could not be moved" if info.dead_letter_queue_url else "the queue has no DLQ",
            self._config.retry_max_delay_s,
        )
        return self.retry(entry, self._config.retry_max_delay_s)

    def _notify(self, fate: Fate, entry: InFlight) -> Fate:
        if self._observer is not None:
            self._observer(fate, entry.message)
        return fate
