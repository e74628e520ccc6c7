"""The numbers ``aiosqsq queues stats`` shows for a queue, and how it shows them.

Depths come from ``GetQueueAttributes`` (SQS's approximate counts: free, and changing
nothing). The age of the oldest message is not a queue attribute: CloudWatch has it as
``ApproximateAgeOfOldestMessage``, which this command does not read. With ``--age`` it is
*sampled*: one ``ReceiveMessage`` of up to 10 visible messages with a visibility timeout
of 0, keeping the oldest ``SentTimestamp``. That costs something, and says less than
CloudWatch:

* each sampled message's receive count goes up by one, and that counts toward the queue's
  ``maxReceiveCount``: a message one receive short of it is moved to the dead-letter
  queue by the sample;
* SQS returns some visible messages, not the oldest ones, and in-flight or delayed ones
  never: the age shown is a lower bound (``>=``), 0 messages sampled shows nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import anyio
from rich.table import Table

from aiosqsq.backends.queue_address import queue_name

if TYPE_CHECKING:
    from aiosqsq.backends.sqs_admin import SQSAdmin

AGE_COST = (
    "Also sample the age of the oldest message: receives up to 10 visible messages with "
    "visibility timeout 0 and keeps the oldest SentTimestamp, a lower bound. Each sampled "
    "message's receive count goes up by one, which counts toward maxReceiveCount."
)
_AT_ONCE = 8  # queues read concurrently


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's counts; ``age_of_oldest_s`` is a sampled lower bound (None: not sampled,
    or nothing visible); the dead-letter fields are None without a RedrivePolicy."""

    queue: str
    url: str
    visible: int
    in_flight: int
    delayed: int
    age_of_oldest_s: float | None
    dead_letter_queue: str | None
    dead_letter_visible: int | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def read_stats(admin: SQSAdmin, urls: Sequence[str], *, age: bool) -> list[QueueStats]:
    """The stats of each queue in ``urls``, in that order."""
    found: dict[str, QueueStats] = {}
    limiter = anyio.CapacityLimiter(_AT_ONCE)

    async def read(url: str) -> None:
        async with limiter:
            found[url] = await _read_one(admin, url, age=age)

    async with anyio.create_task_group() as group:
        for url in urls:
            group.start_soon(read, url)
    return [found[url] for url in urls]


async def _read_one(admin: SQSAdmin, url: str, *, age: bool) -> QueueStats:
    info = await admin.get_queue_info(url)
    depth = await admin.get_queue_depth(url)
    dead_letter_visible = None
    if info.dead_letter_queue_url is not None:
        dead_letter_visible = (await admin.get_queue_depth(info.dead_letter_queue_url)).visible
    return QueueStats(
        queue=info.name,
        url=url,
        visible=depth.visible,
        in_flight=depth.in_flight,
        delayed=depth.delayed,
        age_of_oldest_s=await sample_age_s(admin, url) if age and depth.visible else None,
        dead_letter_queue=(
            queue_name(info.dead_letter_queue_url) if info.dead_letter_queue_url else None
        ),
        dead_letter_visible=dead_letter_visible,
    )


async def sample_age_s(admin: SQSAdmin, url: str) -> float | None:
    """Seconds since the oldest ``SentTimestamp`` among up to 10 visible messages, which
    stay visible (see the module docstring for what the sample costs)."""
    messages = await admin.receive(url, max_messages=10, wait_time_s=0, visibility_timeout_s=0)
    sent_ms = [
        int(m.attributes["SentTimestamp"]) for m in messages if "SentTimestamp" in m.attributes
    ]
    if not sent_ms:
        return None
    return max(0.0, time.time() - min(sent_ms) / 1000)


def table(stats: Sequence[QueueStats], *, age: bool, caption: str | None = None) -> Table:
    grid = Table(caption=caption, show_edge=False)
    grid.add_column("queue")
    for column in ("visible", "in flight", "delayed"):
        grid.add_column(column, justify="right")
    if age:
        grid.add_column("oldest (sampled)", justify="right")
    grid.add_column("dead-letter queue")
    grid.add_column("dead letters", justify="right")
    for row in stats:
        cells = [row.queue, str(row.visible), str(row.in_flight), str(row.delayed)]
        if age:
            cells.append(format_age(row.age_of_oldest_s))
        cells.append(row.dead_letter_queue or "-")
        cells.append("-" if row.dead_letter_visible is None else str(row.dead_letter_visible))
        grid.add_row(*cells)
    return grid


def format_age(seconds: float | None) -> str:
    """``>= 1h 02m``, ``>= 3m 05s``, ``>= 12s``; ``-`` for None."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f">= {hours}h {minutes:02d}m"
    if minutes:
        return f">= {minutes}m {secs:02d}s"
    return f">= {secs}s"
