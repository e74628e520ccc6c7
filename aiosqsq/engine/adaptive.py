"""The adaptive concurrency limit: finds how many handler calls a queue and its
downstream allow, without being told.

It watches, in windows of at least :data:`MIN_WINDOW_S`, :data:`MIN_WINDOW_CALLS` calls
and :data:`MIN_WINDOW_RECEIVES` receives (or :data:`MAX_WINDOW_S`), the handler's mean
latency, its failures, the receives (full or not) and throttling, and moves the limit
(:class:`~aiosqsq.engine.limiter.ConcurrencyLimit`):

* **grow** while the limit binds and the latency stays within :data:`GROW_TOLERANCE` of
  its unloaded value. It binds when calls wait for it; or when receives come back full
  while the pollers that follow the limit can still be added, and then only while each
  growth pays: the throughput rose by at least :data:`MIN_GAIN` of the step (a step
  that did not pay is taken back, and probed again :data:`COOLDOWN_WINDOWS` later).
  Steps are x2 until the first sign of saturation ("slow start"), then +10%: a
  steady state swings by about one step;
* **shrink** multiplicatively when the latency passes :data:`SHRINK_TOLERANCE` of its
  unloaded value (x0.9: the downstream queues), when at least :data:`ERROR_SHARE` of
  the calls (and :data:`MIN_FAILURES`) failed or timed out (x0.7), or at once when SQS
  throttles a receive (x0.5). After a shrink for failures or throttling, slow start
  returns to the limit held before;
* **hold** otherwise (a queue drained, a limit that does not bind, a latency between
  the tolerances).

The unloaded latency is the lowest window mean of the last :data:`BASELINE_WINDOWS`
windows, plus :data:`LATENCY_SLACK_S` of event-loop jitter (a no-op handler's latency is
noise). When shrinks for latency do not lower it (:data:`REBASE_AFTER` in a row), the
downstream got slower for every call (not congested): the latency now becomes the
unloaded one. The window after a
change is not judged but for failures (it mixes both limits). Bounds are
:class:`~aiosqsq.engine.config.LimitBounds`. All timing reads the consumer's clock, so a
fake clock drives it exactly. Costs two clock readings and a few additions per message;
the decision runs once per window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from aiosqsq.backends.base import MAX_RECEIVE_MESSAGES
from aiosqsq.engine.config import LimitBounds
from aiosqsq.engine.limiter import ConcurrencyLimit

MIN_WINDOW_S = 0.1
MIN_WINDOW_CALLS = 10
MIN_WINDOW_RECEIVES = 10  # throughput over fewer receives is too noisy to compare
MAX_WINDOW_S = 1.0  # ... unless this long passed
GROW_TOLERANCE = 1.05  # grow only while the latency is within 5% of its unloaded value
SHRINK_TOLERANCE = 1.15  # shrink once it is 15% above
LATENCY_SLACK_S = 0.001
ERROR_SHARE = 0.1  # shrink once 10% of a window's calls failed or timed out
MIN_FAILURES = 3  # ... and at least 3 (one poison message is not an overload)
SLOW_START_STEP = 1.0
PROBE_STEP = 0.1
MIN_GAIN = 0.3  # a growth pays when throughput rose by 30% of the step, or more
SLOW_START_LOSS = 0.1  # a slow-start step is taken back only if throughput fell by this
COOLDOWN_WINDOWS = 10
BASELINE_WINDOWS = 1000
REBASE_AFTER = 2  # shrinks for latency in a row that did not lower it: rebase
LATENCY_SHRINK = 0.9
ERROR_SHRINK = 0.7
THROTTLE_SHRINK = 0.5


class AdaptiveLimit:
    """Moves ``limit`` within ``bounds`` from what one consumer's calls and receives show.

    ``next_poller_at(limit)``: the smallest limit that runs one more receive loop than
    ``limit`` does, or None when no loop can be added (full receives with idle handlers
    mean the receives bind, and only more pollers help).
    """

    def __init__(
        self,
        limit: ConcurrencyLimit,
        bounds: LimitBounds,
        *,
        clock: Callable[[], float],
        next_poller_at: Callable[[int], int | None] = lambda limit: None,
    ) -> None:
        self._gate = limit
        self._bounds = bounds
        self._clock = clock
        self._next_poller_at = next_poller_at
        self._means: deque[float] = deque(maxlen=BASELINE_WINDOWS)
        self._ssthresh = bounds.maximum  # slow start up to here
        # (limit before a growth, its throughput, the gain the growth should bring)
        self._probe: tuple[int, float, float] | None = None
        self._cooldown = 0
        self._settling = True  # the first window after a change is not measured
        self._throttled_at = -math.inf
        self._shrunk_from: float | None = None  # the latency the first of shrinks saw
        self._flat_shrinks = 0  # shrinks for latency since then that did not lower it
        self._begin(clock())

    def _begin(self, now: float) -> None:
        self._started = now
        self._calls = 0
        self._failures = 0
        self._latency_s = 0.0
        self._receives = 0
        self._full_receives = 0
        self._bound = False  # calls had to wait for the limit

    # -- what the consumer reports -----------------------------------------------------

    def finished(self, latency_s: float, *, failed: bool) -> None:
        """A handler call ended after ``latency_s`` (``failed``: raised or timed out)."""
        self._calls += 1
        self._latency_s += latency_s
        if failed:
            self._failures += 1
        if self._gate.waiting:
            self._bound = True
        if self._calls >= MIN_WINDOW_CALLS:
            now = self._clock()
            elapsed = now - self._started
            # enough receives for a steady throughput, unless failures cannot wait
            if (
                elapsed >= MIN_WINDOW_S
                and elapsed >= 2 * self._latency_s / self._calls
                and (
                    self._receives >= MIN_WINDOW_RECEIVES
                    or elapsed >= MAX_WINDOW_S
                    or self._failures >= max(MIN_FAILURES, ERROR_SHARE * self._calls)
                )
            ):
                self._decide(now, elapsed)

    def received(self, asked: int, got: int) -> None:
        """A receive asked for ``asked`` messages and brought ``got``."""
        self._receives += 1
        if got >= asked:
            self._full_receives += 1

    def throttled(self) -> None:
        """SQS throttled a receive: shrink at once (once per window: the pollers that were
        throttled together count once)."""
        now = self._clock()
        if now - self._throttled_at < MIN_WINDOW_S:
            return
        self._throttled_at = now
        self._shrink(THROTTLE_SHRINK, "SQS throttled a receive", now, slow_start=True)

    # -- deciding ----------------------------------------------------------------------

    def _decide(self, now: float, elapsed: float) -> None:
        limit = self._gate.limit
        mean = self._latency_s / self._calls
        throughput = self._calls / elapsed
        errors = self._failures / self._calls
        if errors >= ERROR_SHARE and self._failures >= MIN_FAILURES:
            reason = f"{self._failures} of {self._calls} calls failed or timed out"
            self._shrink(ERROR_SHRINK, reason, now, slow_start=True)
            return
        if self._settling:  # the window after a change mixes both limits: not judged
            self._settling = False
            self._begin(now)
            return
        self._means.append(mean)
        unloaded = min(self._means)
        if self._shrunk_from is not None and mean >= self._shrunk_from:
            self._flat_shrinks += 1
            if self._flat_shrinks >= REBASE_AFTER:
                # Fewer calls at once did not make them faster: the downstream got slower
                # for every call, not congested. Its latency now is the unloaded one.
                self._means.clear()
                self._means.append(mean)
                unloaded = mean
        if mean > unloaded * SHRINK_TOLERANCE + LATENCY_SLACK_S:
            reason = f"latency {mean * 1e3:.1f} ms, unloaded {unloaded * 1e3:.1f} ms"
            self._shrink(LATENCY_SHRINK, reason, now, slow_start=False)
            if self._shrunk_from is None:
                self._shrunk_from, self._flat_shrinks = mean, 0
            return
        self._shrunk_from = None
        if self._probe is not None:
            before, before_throughput, step = self._probe
            self._probe = None
            if throughput < before_throughput * (1 + MIN_GAIN * step):
                gain = throughput / before_throughput - 1 if before_throughput else 0.0
                self._cooldown = COOLDOWN_WINDOWS
                if limit < self._ssthresh and gain > -SLOW_START_LOSS:
                    # slow start ends here; one noisy window does not take the step back
                    self._ssthresh = limit
                    self._begin(now)
                    return
                self._ssthresh = before
                self._set(before, f"growth to {limit} did not pay (throughput {gain:+.0%})", now)
                return
        if self._cooldown:
            self._cooldown -= 1
            self._begin(now)
            return
        bound = self._bound
        next_poller_at = self._next_poller_at(limit)
        receive_bound = (
            self._receives > 0
            and self._full_receives * 2 >= self._receives
            and next_poller_at is not None
        )
        near_unloaded = mean <= unloaded * GROW_TOLERANCE + LATENCY_SLACK_S
        if limit < self._bounds.maximum and near_unloaded and (bound or receive_bound):
            step = SLOW_START_STEP if limit < self._ssthresh else PROBE_STEP
            new = min(self._bounds.maximum, limit + max(1, math.ceil(limit * step)))
            if limit < self._ssthresh:
                new = min(new, max(self._ssthresh, limit + 1))
            # Calls that wait for the limit say it binds: with the latency flat, a larger
            # one runs more at once. Receives that come back full only say that another
            # poller might help: the growth adds one, and the next window says if it paid.
            self._probe = None
            if not bound and next_poller_at is not None:
                new = min(self._bounds.maximum, max(new, next_poller_at))
                pollers = max(1, limit // MAX_RECEIVE_MESSAGES)  # as many, more: the gain
                added = max(1, new // MAX_RECEIVE_MESSAGES) - pollers
                self._probe = (limit, throughput, added / pollers)
            why = "calls waited for the limit" if bound else "receives came back full"
            self._set(new, f"{why}, latency {mean * 1e3:.1f} ms near unloaded", now)
            return
        self._begin(now)

    def _shrink(self, factor: float, reason: str, now: float, *, slow_start: bool) -> None:
        limit = self._gate.limit
        self._probe = None
        if slow_start:  # come back quickly to the highest limit held before the shrinks
            self._ssthresh = max(self._ssthresh, limit)
        else:
            self._ssthresh = max(self._bounds.minimum, int(limit * factor))
        self._set(max(self._bounds.minimum, int(limit * factor)), reason, now)

    def _set(self, new: int, reason: str, now: float) -> None:
        self._gate.set(new, reason, at=now)
        self._settling = True
        self._begin(now)
