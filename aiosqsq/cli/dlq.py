"""``aiosqsq dlq inspect|redrive``: look at a dead-letter queue's messages, move them back.

What ``inspect`` shows comes from the queue, and anyone who can send to it chooses it: the
body and every attribute, ``aiosqsq-error`` and ``aiosqsq-source`` included. The table
prints each of them as literal text (never Rich markup: ``[link=...]`` stays as written),
with control characters escaped (a carriage return shows as ``\\r``). A message whose body
is a large payload's S3 pointer gets a ``payload`` column: the pointer and the object's
size (a HEAD request through ``QUEUE_S3_ENDPOINT_URL``, the object is never read).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from aiosqsq.backends.base import QueueMessage
from aiosqsq.backends.object_store import create_object_store
from aiosqsq.cli.ops import (
    EXIT_CODES,
    INCOMPLETE,
    count,
    fail,
    operator_settings,
    out,
    progress_bar,
    run_operation,
    say,
    shown,
)
from aiosqsq.cli.peek import HOLD_S, peeking
from aiosqsq.cli.redrive import MoveTally, copy_messages, move_tasks
from aiosqsq.control_chars import escape_controls
from aiosqsq.exit_codes import ExitCode
from aiosqsq.large_payload import describe_pointer, is_pointer_message
from aiosqsq.message import ERROR_ATTRIBUTE, SOURCE_ATTRIBUTE

if TYPE_CHECKING:
    from aiosqsq.backends.sqs_admin import MoveTask, SQSAdmin

DEFAULT_COPY_RATE = 100  # messages a second, when --rate is not given
MAX_TASK_RATE = 500  # StartMessageMoveTask's MaxNumberOfMessagesPerSecond cap
_BODY_CHARS = 60


@click.group(epilog=EXIT_CODES)
def dlq() -> None:
    """Look at the messages of a dead-letter queue, and move them back."""


@dlq.command(epilog=EXIT_CODES)
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts, with whole bodies.")
@click.pass_context
def inspect(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """Show up to --limit messages of the queue NAME, with the error aiosqsq recorded when
    it dead-lettered them (aiosqsq-error), the queue they came from and their id there
    (aiosqsq-source: the copy in NAME has an id of its own), without consuming them.

    Reading a message is receiving it: the messages are made visible again as soon as they
    are shown (within 60 s if the command is killed), and each one's receive count goes
    up by one.
    """

    async def operation(admin: SQSAdmin) -> int:
        url = await admin.get_queue_url(name)
        async with peeking(admin, url, limit) as messages:
            rows = [_row(message) for message in messages]
            await _add_payloads(rows, messages)
        if as_json:
            click.echo(json.dumps(rows))
        elif not rows:
            click.echo(f"no visible messages in {name}")
        else:
            out().print(_table(rows))
        return ExitCode.OK

    ctx.exit(run_operation(operation))


def _row(message: QueueMessage) -> dict[str, Any]:
    def text(attribute: str) -> str | None:
        value = message.message_attributes.get(attribute)
        return value.get("StringValue") if value is not None else None

    sent_ms = message.attributes.get("SentTimestamp")
    sent_at = datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else None
    source = text(SOURCE_ATTRIBUTE)
    # "<queue name> <original MessageId>": the id the message had before aiosqsq copied it
    # here (the copy has its own); what the worker's log line names.
    source_queue, _, original_id = (source or "").partition(" ")
    return {
        "message_id": message.message_id,
        "original_message_id": original_id or None,
        "sent_at": sent_at.isoformat(timespec="seconds") if sent_at else None,
        "receive_count": message.receive_count,
        "group_id": message.group_id,
        "error": text(ERROR_ATTRIBUTE),
        "source": source,
        "source_queue": source_queue or None,
        "body": message.body,
    }


async def _add_payloads(rows: list[dict[str, Any]], messages: list[QueueMessage]) -> None:
    """A ``payload`` entry for each row whose message is an S3 pointer (see the module
    docstring); none when no message is one."""
    if not any(is_pointer_message(m.message_attributes) for m in messages):
        return
    settings = operator_settings()
    store = create_object_store(
        "sqs",
        settings.sqs_config(),
        region=settings.aws_region,
        endpoint_url=settings.s3_endpoint_url,
    )
    try:
        for row, message in zip(rows, messages, strict=True):
            info = await describe_pointer(store, message)
            row["payload"] = None if info is None else dataclasses.asdict(info)
    finally:
        await store.aclose()


def _table(rows: list[dict[str, Any]]) -> Table:
    grid = Table(show_edge=False, show_lines=True)
    columns = ["message id", "sent at", "receives", "error", "source", "original id", "body"]
    with_payload = any("payload" in row for row in rows)
    for column in [*columns, "payload"] if with_payload else columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        body = row["body"] if len(row["body"]) <= _BODY_CHARS else f"{row['body'][:_BODY_CHARS]}..."
        cells = [
            _literal(row["message_id"]),
            row["sent_at"] or "-",
            str(row["receive_count"]),
            _literal(row["error"] or "-"),
            _literal(row["source_queue"] or "-"),
            _literal(row["original_message_id"] or "-"),
            _literal(body),
        ]
        if with_payload:
            cells.append(_literal(_payload_cell(row.get("payload"))))
        grid.add_row(*cells)
    return grid


def _payload_cell(payload: dict[str, Any] | None) -> str:
    if payload is None:
        return "-"
    size = f"{payload['size']} bytes" if payload["size"] is not None else payload["problem"]
    return f"{payload['pointer']} ({size})" if payload["pointer"] else str(payload["problem"])


def _literal(value: str) -> Text:
    """A cell that shows ``value`` as it is: Rich never reads a ``Text`` as markup."""
    return Text(escape_controls(value))


@dlq.command(epilog=EXIT_CODES)
@click.argument("name")
@click.option(
    "--to",
    "to",
    metavar="NAME",
    help="The queue to move the messages to.  [default: the queue NAME is the dead-letter "
    "queue of]",
)
@click.option(
    "--rate",
    type=click.IntRange(1, MAX_TASK_RATE),
    help=f"At most this many messages a second.  [default: SQS's choice for its move task, "
    f"{DEFAULT_COPY_RATE} for a copy]",
)
@click.option(
    "--max",
    "max_messages",
    type=click.IntRange(min=1),
    help="Move at most this many, by copy (SQS's move task moves them all).  [default: the "
    "messages visible when it starts]",
)
@click.option(
    "--copy",
    is_flag=True,
    help="Copy (receive, send, delete), even where SQS's move task is available.",
)
@click.pass_context
def redrive(
    ctx: click.Context,
    name: str,
    to: str | None,
    rate: int | None,
    max_messages: int | None,
    copy: bool,
) -> None:
    """Move the messages of the dead-letter queue NAME back to a queue to be consumed again.

    Uses SQS's StartMessageMoveTask where the endpoint offers it (it checks first with
    ListMessageMoveTasks, which changes nothing), for standard queues; otherwise, or with
    --copy or --max, moves by copy: receive up to 10, send them to the target, then delete
    from NAME only those whose copy SQS confirmed. A message the target refuses stays in
    NAME; the summary lists it, and the exit status is 1.
    """

    async def operation(admin: SQSAdmin) -> int:
        url = await admin.get_queue_url(name)
        info = await admin.get_queue_info(url)
        target_url = await admin.get_queue_url(to) if to is not None else None
        if target_url == url:
            raise click.UsageError(f"--to {to} is the dead-letter queue itself")
        if not copy and not info.fifo and max_messages is None:
            found = await move_tasks(admin, info.arn)
            if isinstance(found, list):
                return await _start_task(admin, name, info.arn, target_url, to, rate, found)
            click.echo(
                f"this endpoint has no message move tasks (ListMessageMoveTasks: {found}): "
                "moving by copy",
                err=True,
            )
        if target_url is None:
            target_url = await _only_source(admin, name, url)
        target = await admin.get_queue_info(target_url)
        if target.fifo and not info.fifo:
            raise click.UsageError(
                f"{target.name} is a FIFO queue and {name} is not: its messages have no "
                "MessageGroupId to send them with"
            )
        depth = await admin.get_queue_depth(url)
        tally = MoveTally(limit=max_messages or depth.visible)
        try:
            with progress_bar() as bar:
                task = bar.add_task(f"moving to {target.name}", total=tally.limit)
                await copy_messages(
                    admin,
                    url,
                    target_url,
                    target_fifo=target.fifo,
                    rate=rate or DEFAULT_COPY_RATE,
                    tally=tally,
                    on_progress=lambda done: bar.update(task, completed=done),
                )
        finally:
            click.echo(f"moved {count(tally.moved)} from {name} to {target.name}")
        return _report(tally, name)

    ctx.exit(run_operation(operation))


async def _start_task(
    admin: SQSAdmin,
    name: str,
    arn: str,
    target_url: str | None,
    to: str | None,
    rate: int | None,
    tasks: list[MoveTask],
) -> int:
    running = [task for task in tasks if task.status == "RUNNING"]
    if running:
        return fail(
            f"a message move task from {name} is already running (handle {running[0].handle}); "
            "SQS runs one at a time per queue: wait for it to finish, or cancel it",
            INCOMPLETE,
        )
    target_arn = (await admin.get_queue_info(target_url)).arn if target_url else None
    handle = await admin.start_message_move_task(
        arn, destination_arn=target_arn, max_per_second=rate
    )
    where = to or "the queues they were dead-lettered from"
    click.echo(f"started SQS's message move task from {name} to {where} (handle {handle})")
    click.echo(f"SQS moves them in the background: follow with aiosqsq queues stats {name}")
    return ExitCode.OK


async def _only_source(admin: SQSAdmin, name: str, url: str) -> str:
    sources = await admin.dead_letter_sources(url)
    if len(sources) == 1:
        return sources[0]
    if not sources:
        raise click.UsageError(f"no queue has {name} as its dead-letter queue: pass --to NAME")
    names = ", ".join(sorted(url.rsplit("/", 1)[-1] for url in sources))
    raise click.UsageError(
        f"{name} is the dead-letter queue of several queues ({names}): pass --to NAME"
    )


def _report(tally: MoveTally, name: str) -> int:
    if tally.not_deleted:
        click.echo(
            f"{count(tally.not_deleted)} copied but still in {name} too (their "
            f"delete failed): they reappear within {HOLD_S} s, and another redrive would "
            "copy them again",
            err=True,
        )
    if not tally.refused:
        return ExitCode.OK
    for message_id, reason in tally.refused.items():
        say(f"refused: {message_id}: {reason}")
    refused = list(tally.refused)
    return fail(f"{count(len(refused))} not moved, still in {name}: {shown(refused)}", INCOMPLETE)
