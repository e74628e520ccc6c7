"""``aiosqsq send NAME [BODY]`` and ``aiosqsq send NAME --file FILE.jsonl``.

Every line of the file is checked before anything is sent (JSON, SQS's characters and
size), so a bad line costs nothing but a message naming it. Then the lines go out in
batches of 10 (:mod:`aiosqsq.cli.batch_sender`), each body exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

import click
import orjson

from aiosqsq.backends.base import MAX_DELAY_S, MAX_MESSAGE_BYTES, SendEntry, message_size
from aiosqsq.backends.limits import message_problem
from aiosqsq.cli.batch_sender import pack, send_batch
from aiosqsq.cli.ops import EXIT_CODES, INCOMPLETE, count, fail, progress_bar, run_operation, shown
from aiosqsq.exit_codes import ExitCode

if TYPE_CHECKING:
    from aiosqsq.backends.sqs_admin import SQSAdmin


@dataclass
class _Tally:
    """What happened to each labelled body ("line 3", or "BODY")."""

    total: int
    sent: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (label, SQS's reason)
    done: int = 0  # bodies sent or refused, in order


@click.command("send", epilog=EXIT_CODES)
@click.argument("name")
@click.argument("body", required=False)
@click.option(
    "--file",
    "file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE.jsonl",
    help="Send every line of this JSON Lines file ('-': standard input), each line as it is; "
    "blank lines are skipped.",
)
@click.option("--group-id", metavar="ID", help="MessageGroupId: required by FIFO queues.")
@click.option(
    "--delay",
    "delay_s",
    type=click.IntRange(0, MAX_DELAY_S),
    default=0,
    metavar="SECONDS",
    help="Keep the messages hidden this long after sending (standard queues).",
)
@click.pass_context
def send(
    ctx: click.Context,
    name: str,
    body: str | None,
    file: IO[str] | None,
    group_id: str | None,
    delay_s: int,
) -> None:
    """Send BODY, exactly as given, to the queue NAME; or with --file, one message per line.

    The file's lines are all checked first: a line that is not JSON, or that SQS would
    refuse for its characters or its size, stops the command before anything is sent.
    Then they are sent in batches of 10. A line SQS refuses does not stop the others: the
    summary names each refused line, and the exit status is 1.
    """
    if (body is None) == (file is None):
        raise click.UsageError("give a BODY to send, or --file FILE.jsonl (not both)")
    if body is not None and (problem := _problem(body)) is not None:
        raise click.BadParameter(f"{problem}: nothing was sent", param_hint="BODY")
    bodies = {"BODY": body} if body is not None else _read_lines(file)
    tally = _Tally(total=len(bodies))

    async def operation(admin: SQSAdmin) -> int:
        url = await admin.get_queue_url(name)
        info = await admin.get_queue_info(url)
        if info.fifo and group_id is None:
            raise click.UsageError(f"queue {name!r} is a FIFO queue: pass --group-id")
        if info.fifo and delay_s:
            raise click.UsageError(
                f"queue {name!r} is a FIFO queue, which takes no per-message --delay"
            )
        labels = list(bodies)
        entries = [SendEntry(label, bodies[label], delay_s, {}, group_id) for label in labels]
        try:
            with progress_bar() as progress:
                task = progress.add_task(f"sending to {name}", total=len(entries))
                for batch in pack(entries):
                    batch_labels = labels[tally.done : tally.done + len(batch)]
                    result = await send_batch(admin, url, batch)
                    tally.sent += len(result.successful)
                    for failure in result.failed:
                        label = batch_labels[int(failure.id)]
                        tally.refused.append((label, f"{failure.code}: {failure.message}"))
                    tally.done += len(batch)
                    progress.advance(task, len(batch))
        finally:
            if tally.done < tally.total:  # stopped by an error or Ctrl-C: say what is left
                click.echo(f"sent {tally.sent} of {tally.total} messages to {name}")
                unsent = shown(labels[tally.done :])
                click.echo(f"not sent: {unsent}", err=True)
        return _report(tally, name)

    ctx.exit(run_operation(operation))


def _read_lines(file: IO[str] | None) -> dict[str, str]:
    assert file is not None
    lines: dict[str, str] = {}
    for number, line in enumerate(file, start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            where = f"{file.name} line {number}, column {exc.colno}"
            raise _bad_file(f"{where}, is not JSON ({exc.msg})") from None
        if (problem := _problem(text)) is not None:
            raise _bad_file(f"{file.name} line {number} cannot be sent: {problem}")
        lines[f"line {number}"] = text
    if not lines:
        raise _bad_file(f"{file.name} has no lines to send")
    return lines


def _problem(text: str) -> str | None:
    """Why SQS would refuse this body whatever the queue, or None."""
    size = message_size(text, {})
    if size > MAX_MESSAGE_BYTES:
        return f"it is {size} bytes, over SQS's limit of {MAX_MESSAGE_BYTES}"
    found = message_problem(text, {})
    return None if found is None else f"{found[0]}: {found[1]}"


def _bad_file(message: str) -> click.BadParameter:
    return click.BadParameter(f"{message}: nothing was sent", param_hint="'--file'")


def _report(tally: _Tally, name: str) -> int:
    if not tally.refused:
        click.echo(f"sent {count(tally.sent)} to {name}")
        return ExitCode.OK
    for label, reason in tally.refused:
        click.echo(f"refused: {label}: {reason}", err=True)
    click.echo(f"sent {tally.sent} of {tally.total} messages to {name}")
    refused = [label for label, _ in tally.refused]
    return fail(f"{count(len(refused))} not sent: {shown(refused)}", INCOMPLETE)
