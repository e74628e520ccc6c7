"""Counters a consumer keeps, and the frozen snapshot ``App.statistics()`` returns."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Statistics:
    """What a consumer (or a whole app) has done since it started.

    ``received`` counts deliveries, so a message delivered twice counts twice.
    ``released`` counts messages handed back unhandled (shutdown, FIFO group skipped).
    ``lease_lost`` counts handlers cancelled because their message's lease could not be
    kept. ``in_flight`` is the number of messages held right now, received and not yet
    deleted or handed back. ``concurrency_limit`` is the handler calls allowed to run at
    once now (an app's: the sum over its handlers), ``limit_changes`` how often an
    adaptive limit moved (each consumer keeps its latest changes with their reasons:
    ``Consumer.limit.changes``). :meth:`summary` leaves those two out.
    """

    received: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    released: int = 0
    lease_lost: int = 0
    heartbeats_sent: int = 0
    in_flight: int = 0
    concurrency_limit: int = 0
    limit_changes: int = 0

    def __add__(self, other: Statistics) -> Statistics:
        return Statistics(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def summary(self) -> str:
        """One status line: ``received=12 succeeded=10 ...``."""
        return " ".join(
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name not in _LIMIT
        )


_LIMIT = frozenset({"concurrency_limit", "limit_changes"})


class Counters:
    """The mutable counters behind :class:`Statistics` (single event loop: no locks)."""

    __slots__ = (
        "dead_lettered",
        "heartbeats_sent",
        "lease_lost",
        "received",
        "released",
        "retried",
        "succeeded",
    )

    def __init__(self) -> None:
        self.received = 0
        self.succeeded = 0
        self.retried = 0
        self.dead_lettered = 0
        self.released = 0
        self.lease_lost = 0
        self.heartbeats_sent = 0

    def snapshot(
        self, in_flight: int, *, concurrency_limit: int = 0, limit_changes: int = 0
    ) -> Statistics:
        return Statistics(
            received=self.received,
            succeeded=self.succeeded,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            released=self.released,
            lease_lost=self.lease_lost,
            heartbeats_sent=self.heartbeats_sent,
            in_flight=in_flight,
            concurrency_limit=concurrency_limit,
            limit_changes=limit_changes,
        )
