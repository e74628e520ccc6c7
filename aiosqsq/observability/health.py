"""Liveness and readiness of the apps consuming in this process (``/livez``, ``/readyz``).

* live: the event loop ticked within the liveness bound (a handler that blocks the loop
  stops the ticks), no handler call has run longer than it (a stuck handler), and every
  queue's pollers made a receive within it (a long poll in progress counts);
* ready: every queue has been received from (start-up checks passed, the lifespan
  started) and no stop was asked for (503 while draining).

Under ``--workers`` each worker writes its state to a file in a directory the supervisor
gave it (:data:`HEALTH_DIR_ENV`), and the supervisor answers for all of them
(:func:`workers_health`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiosqsq.backends.base import MAX_WAIT_TIME_S

HEALTH_DIR_ENV: Final = "AIOSQSQ_HEALTH_DIR"
_FILE_PREFIX: Final = "health_"


@dataclass(frozen=True, slots=True)
class Verdict:
    """An answer to a probe: ``ok`` and the reason when not."""

    ok: bool
    reason: str = "ok"


class Health:
    """One app's liveness and readiness, fed by its event loop and its receives."""

    def __init__(
        self,
        queues: Iterable[str],
        *,
        liveness_timeout_s: float,
        stopping: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._timeout_s = liveness_timeout_s
        self._stopping = stopping
        now = clock()
        self.last_tick = now
        self._queues = tuple(dict.fromkeys(queues))
        self._received: dict[str, float] = {}  # queue -> the last receive's start or end
        self._polling: dict[str, int] = {}  # queue -> receives in progress
        self._running: dict[object, tuple[float, str, str]] = {}  # calls: start, id, queue
        self._started_at = now

    def tick(self) -> None:
        """The event loop is running (called from it)."""
        self.last_tick = self._clock()

    def receive_started(self, queue: str) -> None:
        self._received[queue] = self._clock()
        self._polling[queue] = self._polling.get(queue, 0) + 1

    def receive_ended(self, queue: str) -> None:
        self._received[queue] = self._clock()
        self._polling[queue] -= 1

    def call_started(self, key: object, message_id: str, queue: str) -> None:
        """A handler call began on ``message_id`` (``key`` names this call)."""
        self._running[key] = (self._clock(), message_id, queue)

    def call_ended(self, key: object) -> None:
        self._running.pop(key, None)

    def liveness(self) -> Verdict:
        now = self._clock()
        stalled_s = now - self.last_tick
        if stalled_s > self._timeout_s:
            return Verdict(False, f"the event loop has not run for {stalled_s:.1f} s")
        if self._running:
            started, message_id, queue = min(self._running.values())
            if now - started > self._timeout_s:
                return Verdict(
                    False,
                    f"a handler has run for {now - started:.1f} s on message {message_id} "
                    f"from {queue} (stuck?)",
                )
        for queue in self._queues:
            since = now - self._received.get(queue, self._started_at)
            # a long poll in progress is activity, up to SQS's longest wait
            allowed_s = self._timeout_s + (MAX_WAIT_TIME_S if self._polling.get(queue) else 0)
            if since > allowed_s:
                return Verdict(
                    False,
                    f"no receive from {queue} for {since:.1f} s (handlers stuck on every "
                    "slot, or a poller that died)",
                )
        return Verdict(True)

    def readiness(self) -> Verdict:
        if self._stopping():
            return Verdict(False, "draining: a stop was asked for")
        waiting = [queue for queue in self._queues if queue not in self._received]
        if waiting:
            return Verdict(False, f"starting: not yet receiving from {', '.join(waiting)}")
        return Verdict(True)

    def state(self) -> dict[str, Any]:
        """What a worker writes for its supervisor."""
        live, ready = self.liveness(), self.readiness()
        reason = ready.reason if live.ok else live.reason
        return {"live": live.ok, "ready": ready.ok, "reason": reason, "written": time.time()}


_HEALTHS: list[Health] = []


def register(health: Health) -> None:
    _HEALTHS.append(health)


def unregister(health: Health) -> None:
    if health in _HEALTHS:
        _HEALTHS.remove(health)


def process_health() -> tuple[Verdict, Verdict]:
    """(liveness, readiness) of every app consuming in this process; not ready (and
    live) while none is."""
    healths = list(_HEALTHS)
    if not healths:
        return Verdict(True), Verdict(False, "no app is consuming yet")
    return _first_failed(h.liveness() for h in healths), _first_failed(
        h.readiness() for h in healths
    )


def _first_failed(verdicts: Iterable[Verdict]) -> Verdict:
    for verdict in verdicts:
        if not verdict.ok:
            return verdict
    return Verdict(True)


def write_state(directory: str, state: dict[str, Any]) -> None:
    """Write this worker's state atomically (a rename) into ``directory``."""
    final = Path(directory) / f"{_FILE_PREFIX}{os.getpid()}.json"
    temporary = final.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(final)


def workers_health(directory: str, *, stale_s: float) -> tuple[Verdict, Verdict]:
    """(liveness, readiness) of the workers whose state files are in ``directory``: a
    worker whose file is older than ``stale_s`` is not live (its loop is stuck); files
    of processes gone are removed."""
    states: list[tuple[int, dict[str, Any]]] = []
    for path in Path(directory).glob(f"{_FILE_PREFIX}*.json"):
        pid = int(path.stem.removeprefix(_FILE_PREFIX))
        if not process_alive(pid):
            path.unlink(missing_ok=True)
            continue
        try:
            states.append((pid, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # replaced as it was read: the next probe reads it
    if not states:
        return Verdict(True), Verdict(False, "no worker is consuming yet")
    now = time.time()
    live, ready = Verdict(True), Verdict(True)
    for pid, state in sorted(states):
        age_s = now - float(state.get("written", 0))
        if live.ok and age_s > stale_s:
            live = Verdict(False, f"worker pid {pid} has not reported for {age_s:.1f} s")
        elif live.ok and not state.get("live"):
            live = Verdict(False, f"worker pid {pid}: {state.get('reason')}")
        if ready.ok and not state.get("ready"):
            ready = Verdict(False, f"worker pid {pid}: {state.get('reason')}")
    return live, ready


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
