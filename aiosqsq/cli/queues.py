"""``aiosqsq queues create|stats|purge``: make a queue with its dead-letter queue, watch
queue depths, empty a queue."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import click
from rich.live import Live

from aiosqsq.backends.base import MAX_VISIBILITY_TIMEOUT_S
from aiosqsq.backends.limits import SQS_NAME
from aiosqsq.backends.provisioning import (
    DEFAULT_MAX_RECEIVE_COUNT,
    dead_letter_queue_name,
    redrive_policy,
)
from aiosqsq.backends.queue_address import queue_name
from aiosqsq.cli.ops import EXIT_CODES, INCOMPLETE, count, fail, out, run_operation
from aiosqsq.cli.queue_stats import AGE_COST, QueueStats, read_stats, table
from aiosqsq.errors import BackendError, QueueNotFoundError
from aiosqsq.exit_codes import ExitCode

if TYPE_CHECKING:
    from aiosqsq.backends.base import QueueInfo
    from aiosqsq.backends.sqs_admin import SQSAdmin

# SQS keeps a message's first enqueue time when it moves it to a standard dead-letter
# queue, and counts retention from it: a dead-letter queue needs the longest retention.
DLQ_RETENTION_S = 1_209_600  # 14 days, SQS's maximum
PURGE_IN_PROGRESS = "PurgeQueueInProgress"  # SQS's code for a second purge within 60 s
# CreateQueue's refusal of a name that exists with other attributes (the JSON and the query
# protocol's names)
_EXISTS = ("QueueAlreadyExists", "QueueNameExists")


@click.group(epilog=EXIT_CODES)
def queues() -> None:
    """Create queues, show their depths, purge them (QUEUE_BACKEND=sqs and its settings)."""


@queues.command(epilog=EXIT_CODES)
@click.argument("name")
@click.option("--fifo", is_flag=True, help="A FIFO queue; NAME must end in .fifo.")
@click.option(
    "--dlq",
    "dlq_name",
    metavar="NAME",
    help="Its dead-letter queue, created unless it exists.  [default: NAME-dlq]",
)
@click.option("--no-dlq", is_flag=True, help="No dead-letter queue, no redrive policy.")
@click.option(
    "--max-receive",
    type=click.IntRange(1, 1000),
    help=f"Receives before SQS moves a message to the dead-letter queue (maxReceiveCount).  "
    f"[default: {DEFAULT_MAX_RECEIVE_COUNT}]",
)
@click.option(
    "--visibility-timeout",
    "visibility_timeout_s",
    type=click.IntRange(0, MAX_VISIBILITY_TIMEOUT_S),
    metavar="SECONDS",
    help="The queue's VisibilityTimeout.  [default: SQS's, 30]",
)
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    fifo: bool,
    dlq_name: str | None,
    no_dlq: bool,
    max_receive: int | None,
    visibility_timeout_s: int | None,
) -> None:
    """Create the queue NAME and its dead-letter queue, with the redrive policy between them.

    A queue that exists with the same attributes is left as it is; one with other
    attributes is refused by SQS (exit 5), and the error names the attributes that differ.
    An existing dead-letter queue is used as it is.
    """
    fifo = fifo or name.endswith(".fifo")
    _check_name(name, fifo, "NAME")
    if no_dlq and (dlq_name is not None or max_receive is not None):
        raise click.UsageError("--no-dlq cannot be combined with --dlq or --max-receive")
    if not no_dlq and dlq_name is None:
        dlq_name = dead_letter_queue_name(name)  # a FIFO name ends in .fifo: checked above
    if dlq_name is not None:
        _check_name(dlq_name, fifo, "--dlq")
    max_receive_count = max_receive or DEFAULT_MAX_RECEIVE_COUNT
    base = {"FifoQueue": "true"} if fifo else {}

    async def operation(admin: SQSAdmin) -> int:
        attributes = dict(base)
        if visibility_timeout_s is not None:
            attributes["VisibilityTimeout"] = str(visibility_timeout_s)
        if dlq_name is not None:
            dlq_attributes = {**base, "MessageRetentionPeriod": str(DLQ_RETENTION_S)}
            dlq_url = await _ensure(admin, dlq_name, dlq_attributes, reuse=True)
            dlq_arn = (await admin.get_queue_info(dlq_url)).arn
            attributes["RedrivePolicy"] = redrive_policy(dlq_arn, max_receive_count)
        await _ensure(admin, name, attributes, reuse=False)
        if dlq_name is not None:
            click.echo(
                f"dead letters of {name} go to {dlq_name} after {max_receive_count} receives"
            )
        return ExitCode.OK

    ctx.exit(run_operation(operation))


async def _ensure(admin: SQSAdmin, name: str, attributes: dict[str, str], *, reuse: bool) -> str:
    """Create the queue ``name``; if it exists and ``reuse``, take it as it is, else ask
    CreateQueue anyway: SQS returns it if its attributes match and refuses otherwise."""
    try:
        url = await admin.get_queue_url(name)
    except QueueNotFoundError:
        url = await admin.create_queue(name, attributes)
        click.echo(f"created queue {name}: {url}")
        return url
    if not reuse:
        try:
            await admin.create_queue(name, attributes)
        except BackendError as exc:
            differences = []
            if exc.code.endswith(_EXISTS):
                differences = _differences(await admin.get_queue_info(url), attributes)
            if not differences:
                raise
            raise BackendError(
                exc.code,
                f"queue {name!r} exists with other attributes ({'; '.join(differences)}): "
                "pass the options it was created with, or change its attributes with "
                "SetQueueAttributes (the AWS console or CLI)",
            ) from None
    click.echo(f"queue {name} exists: {url}")
    return url


def _differences(info: QueueInfo, asked: dict[str, str]) -> list[str]:
    """How the existing queue differs from the attributes ``create`` asked for."""
    found = []
    if "VisibilityTimeout" in asked and float(asked["VisibilityTimeout"]) != (
        info.visibility_timeout_s
    ):
        found.append(
            f"VisibilityTimeout is {info.visibility_timeout_s:g}, not {asked['VisibilityTimeout']}"
        )
    if "RedrivePolicy" not in asked:  # SQS compares only the attributes given
        return found
    has = queue_name(info.dead_letter_queue_url) if info.dead_letter_queue_url else None
    policy = json.loads(asked["RedrivePolicy"])
    wanted = str(policy["deadLetterTargetArn"]).rsplit(":", 1)[-1]
    if has != wanted:
        found.append(f"its dead-letter queue is {has or 'none'}, not {wanted}")
    elif info.max_receive_count != policy["maxReceiveCount"]:
        found.append(
            f"maxReceiveCount is {info.max_receive_count}, not {policy['maxReceiveCount']}"
        )
    return found


def _check_name(name: str, fifo: bool, what: str) -> None:
    base = name.removesuffix(".fifo")
    if not SQS_NAME.fullmatch(base) or len(name) > 80:
        raise click.BadParameter(
            f"{name!r} is not a queue name: 1-80 characters from A-Z, a-z, 0-9, '-' and '_' "
            "(a FIFO queue's ending in .fifo)",
            param_hint=what,
        )
    if fifo and not name.endswith(".fifo"):
        raise click.BadParameter(
            f"a FIFO queue's name must end in .fifo: {name}.fifo", param_hint=what
        )
    if not fifo and name.endswith(".fifo"):
        raise click.BadParameter(
            f"{name!r} ends in .fifo, but the queue is a standard queue", param_hint=what
        )


@queues.command(epilog=EXIT_CODES)
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts (--watch: one line each).")
@click.option(
    "--watch",
    is_flag=True,
    help="Refresh every --interval seconds until Ctrl-C; to a pipe or a file, a table at each "
    "refresh, after the time it was read (UTC, ISO 8601).",
)
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.5),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
)
@click.option("--age", is_flag=True, help=AGE_COST)
@click.pass_context
def stats(
    ctx: click.Context,
    names: tuple[str, ...],
    as_json: bool,
    watch: bool,
    interval_s: float,
    age: bool,
) -> None:
    """Messages visible, in flight and delayed in each queue NAME (all queues if none),
    and in its dead-letter queue. Counts are SQS's approximate ones and change nothing.
    """
    if age and watch:
        raise click.UsageError(
            "--age cannot be combined with --watch: each sample raises the receive count of "
            "the messages it sees, and repeated samples would move them to the dead-letter queue"
        )

    async def operation(admin: SQSAdmin) -> int:
        urls = [await admin.get_queue_url(name) for name in names]
        if not names:
            urls = sorted(await admin.list_queues())
        if not watch:
            _show(await read_stats(admin, urls, age=age), as_json=as_json, age=age)
            return ExitCode.OK
        console = out()
        if as_json or not console.is_terminal:  # a pipe or a file: one table or line each
            while True:
                rows = await read_stats(admin, urls, age=False)
                if not as_json:  # when each table was read
                    click.echo(datetime.now(UTC).isoformat(timespec="seconds"))
                _show(rows, as_json=as_json, age=False)
                await anyio.sleep(interval_s)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                rows = await read_stats(admin, urls, age=False)
                caption = f"{time.strftime('%H:%M:%S')}, every {interval_s:g} s; Ctrl-C stops"
                live.update(table(rows, age=False, caption=caption), refresh=True)
                await anyio.sleep(interval_s)

    ctx.exit(run_operation(operation, interrupt_exits=ExitCode.OK if watch else 130))


def _show(rows: list[QueueStats], *, as_json: bool, age: bool) -> None:
    if as_json:
        click.echo(json.dumps([row.as_json() for row in rows]))
    elif not rows:
        click.echo("no queues")
    else:
        out().print(table(rows, age=age))


@queues.command(epilog=EXIT_CODES)
@click.argument("name")
@click.option("--yes", is_flag=True, help="Purge without asking.")
@click.pass_context
def purge(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete every message in the queue NAME, in flight ones too. Asks first, unless --yes.

    SQS takes up to 60 seconds to finish a purge, and refuses another purge of the same
    queue within 60 seconds.
    """

    async def operation(admin: SQSAdmin) -> int:
        url = await admin.get_queue_url(name)
        depth = await admin.get_queue_depth(url)
        held = depth.visible + depth.in_flight + depth.delayed
        question = f"Delete all {count(held)} of queue {name!r}? This cannot be undone."
        if not yes and not await anyio.to_thread.run_sync(_confirm, question):
            click.echo("Aborted: nothing was purged.", err=True)
            return INCOMPLETE
        try:
            await admin.purge_queue(url)
        except BackendError as exc:
            if not exc.code.endswith(PURGE_IN_PROGRESS):
                raise
            return fail(
                f"queue {name!r} was purged less than 60 seconds ago, and SQS allows one purge "
                f"of a queue every 60 seconds ({PURGE_IN_PROGRESS}): that purge may still be "
                "deleting messages; try again in a minute",
                INCOMPLETE,
            )
        click.echo(f"purged queue {name} ({count(held)})")
        return ExitCode.OK

    ctx.exit(run_operation(operation))


def _confirm(question: str) -> bool:
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:  # standard input closed: that is no
        click.echo("", err=True)
        return False
