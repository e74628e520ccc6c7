"""Start-up checks of a handler's settings against its queue's attributes.

Each finding is a sentence for the operator's log: none stops the app, since each
configuration can be deliberate, but each has bitten users of other SQS consumers.
"""

from __future__ import annotations

from aiosqsq.backends.base import QueueInfo
from aiosqsq.backends.provisioning import DEFAULT_MAX_RECEIVE_COUNT
from aiosqsq.handler import HandlerSpec
from aiosqsq.settings import QueueSettings

# AWS's usual advice: graceful stops hand messages back, and each hand-back is a receive.
RECOMMENDED_MAX_RECEIVE_COUNT = DEFAULT_MAX_RECEIVE_COUNT


def preflight(spec: HandlerSpec, info: QueueInfo, settings: QueueSettings) -> list[str]:
    """What looks wrong in consuming ``info`` with ``spec`` under ``settings``."""
    findings: list[str] = []
    visibility_s = (
        info.visibility_timeout_s
        if settings.visibility_timeout is None
        else float(settings.visibility_timeout)
    )
    if info.dead_letter_queue_url is None:
        findings.append(
            f"queue {info.name} has no dead-letter queue (RedrivePolicy): failing messages "
            "are retried until the queue's retention drops them, and undecodable ones "
            "cannot be moved aside"
        )
    elif info.max_receive_count is not None:
        if info.max_receive_count < RECOMMENDED_MAX_RECEIVE_COUNT:
            findings.append(
                f"queue {info.name} dead-letters after maxReceiveCount="
                f"{info.max_receive_count}: messages handed back at shutdown count as "
                f"receives, so use at least {RECOMMENDED_MAX_RECEIVE_COUNT}"
            )
        needed_s = least_backoff_s(info.max_receive_count, settings)
        if needed_s > info.message_retention_s:
            findings.append(
                f"queue {info.name}: retrying with QUEUE_RETRY_BASE_DELAY="
                f"{settings.retry_base_delay:g} and QUEUE_RETRY_MAX_DELAY="
                f"{settings.retry_max_delay:g} takes at least {needed_s:.0f} s to reach "
                f"maxReceiveCount={info.max_receive_count}, longer than the queue's "
                f"retention of {info.message_retention_s:.0f} s: failing messages expire "
                "instead of reaching the dead-letter queue"
            )
    if spec.timeout_s is not None and spec.timeout_s > visibility_s:
        findings.append(
            f"handler {spec.name} may run {spec.timeout_s:g} s, longer than queue "
            f"{info.name}'s visibility timeout of {visibility_s:g} s: the heartbeat keeps "
            "its messages hidden, but if this process dies they come back only after "
            "the visibility timeout"
        )
    if visibility_s == 0:
        findings.append(
            f"queue {info.name} is consumed with a visibility timeout of 0 s: a message is "
            "visible again as soon as it is received, so other receives get it again "
            "while its handler runs (duplicates); set QUEUE_VISIBILITY_TIMEOUT, or the "
            "queue's VisibilityTimeout, to more than a handler call takes"
        )
    elif visibility_s < 2:
        findings.append(
            f"queue {info.name} has a visibility timeout of {visibility_s:g} s: the "
            "heartbeat must extend it every fraction of a second, and any event-loop "
            "stall longer than that causes duplicate deliveries"
        )
    return findings


def least_backoff_s(max_receive_count: int, settings: QueueSettings) -> float:
    """The shortest total backoff before receive number ``max_receive_count`` (the jitter
    draws at least half of each exponential step)."""
    total = 0.0
    for receive_count in range(1, max_receive_count):
        step = settings.retry_base_delay * 2.0 ** min(receive_count - 1, 32)
        total += min(settings.retry_max_delay, step) / 2
    return total
