"""``aiosqsq send NAME [BODY]`` and ``aiosqsq send NAME --file FILE.jsonl``.

Every line of the file is checked before anything is sent (JSON, SQS's characters and
size: :mod:`aiosqsq.cli.jsonl_file`, which reads it in bounded pieces), so bad lines cost
nothing but a message naming them. Then the file is read again and its lines go out in
batches of 10 (:mod:`aiosqsq.cli.batch_sender`), each body exactly as written.

With ``QUEUE_LARGE_PAYLOAD_BUCKET`` set, a body over ``QUEUE_LARGE_PAYLOAD_THRESHOLD``
(every body with ``QUEUE_LARGE_PAYLOAD_ALWAYS``; ``--offload``/``--no-offload`` decide
instead) goes to S3 as the app's producer sends it (:mod:`aiosqsq.large_payload`), and a
line may then be up to ``QUEUE_LARGE_PAYLOAD_MAX_BYTES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

import click

from aiosqsq.backends.base import MAX_DELAY_S, BatchResult, SendEntry
from aiosqsq.cli import jsonl_file
from aiosqsq.cli.batch_sender import send_all
from aiosqsq.cli.ops import (
    EXIT_CODES,
    INCOMPLETE,
    count,
    fail,
    operator_settings,
    progress_bar,
    run_operation,
    say,
    shown,
)
from aiosqsq.control_chars import escape_controls
from aiosqsq.errors import ConfigurationError
from aiosqsq.exit_codes import ExitCode
from aiosqsq.large_payload import LargePayloads, is_pointer_message

if TYPE_CHECKING:
    from aiosqsq.backends.sqs_admin import SQSAdmin
    from aiosqsq.settings import QueueSettings

_BODY_ID = "BODY"  # the entry id of a BODY argument; a line's is its number


@dataclass
class _Tally:
    """What happened to each labelled body ("line 3", or "BODY")."""

    total: int
    sent: int = 0
    offloaded: int = 0  # of those sent, the ones through S3
    refused: list[tuple[str, str]] = field(default_factory=list)  # (label, SQS's reason)
    done: int = 0  # bodies sent or refused, in order
    last_done: str = ""  # the label of the last of them


@click.command("send", epilog=EXIT_CODES)
@click.argument("name")
@click.argument("body", required=False)
@click.option(
    "--file",
    "file",
    type=click.File("rb"),
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
@click.option(
    "--offload/--no-offload",
    default=None,
    help="Put every body in S3 (QUEUE_LARGE_PAYLOAD_BUCKET), or none, instead of those over "
    "QUEUE_LARGE_PAYLOAD_THRESHOLD.",
)
@click.pass_context
def send(
    ctx: click.Context,
    name: str,
    body: str | None,
    file: BinaryIO | None,
    group_id: str | None,
    delay_s: int,
    offload: bool | None,
) -> None:
    """Send BODY, exactly as given, to the queue NAME; or with --file, one message per line.

    The file's lines are all checked first: a line that is not JSON, or that SQS would
    refuse for its characters or its size, stops the command before anything is sent (the
    error names the first 20 such lines). Then they are sent in batches of 10. A line SQS
    refuses does not stop the others: the summary names each refused line, and the exit
    status is 1.

    With QUEUE_LARGE_PAYLOAD_BUCKET set, bodies over QUEUE_LARGE_PAYLOAD_THRESHOLD are put
    in S3 and sent as pointers, and a line may be up to QUEUE_LARGE_PAYLOAD_MAX_BYTES.
    """
    if (body is None) == (file is None):
        raise click.UsageError("give a BODY to send, or --file FILE.jsonl (not both)")
    try:
        settings = operator_settings()
    except ConfigurationError as exc:
        ctx.exit(fail(f"configuration error: {exc}", ExitCode.CONFIGURATION))
    if offload and not settings.large_payload_bucket:
        raise click.UsageError(
            "--offload needs large payloads on: set QUEUE_LARGE_PAYLOAD_BUCKET to the S3 "
            "bucket that holds them; nothing was sent"
        )
    limit = _size_limit(settings, offload)
    if body is not None:
        if (problem := jsonl_file.body_problem(body, limit)) is not None:
            raise click.BadParameter(f"{problem}: nothing was sent", param_hint="BODY")
        given = [(_BODY_ID, body)]
        ctx.exit(_send(name, 1, lambda: iter(given), group_id, delay_s, offload, settings))
    assert file is not None
    shown_name = escape_controls(file.name)
    with jsonl_file.rereadable(file) as stream:
        try:
            total = jsonl_file.check(stream, shown_name, limit)
        except jsonl_file.NotText as exc:
            raise click.BadParameter(f"{exc}: nothing was sent", param_hint="'--file'") from None
        except jsonl_file.BadFile as exc:
            message = "\n  ".join([f"{exc}: nothing was sent", *exc.listed])
            raise click.BadParameter(message, param_hint="'--file'") from None

        def lines() -> Iterator[tuple[str, str]]:
            for number, line in jsonl_file.bodies(stream, shown_name, total, limit):
                yield str(number), line

        ctx.exit(_send(name, total, lines, group_id, delay_s, offload, settings))


def _size_limit(settings: QueueSettings, offload: bool | None) -> jsonl_file.SizeLimit:
    """How big a body may be: SQS's 1 MiB when it stays in the message, else up to
    QUEUE_LARGE_PAYLOAD_MAX_BYTES (or the threshold, up to which a body stays inline)."""
    if not settings.large_payload_bucket or offload is False:
        return jsonl_file.SQS_LIMIT
    most = settings.large_payload_max_bytes
    described = f"QUEUE_LARGE_PAYLOAD_MAX_BYTES ({most})"
    if not (offload or settings.large_payload_always):
        most = max(most, settings.large_payload_threshold)
    return jsonl_file.SizeLimit(most, described)


def _send(
    name: str,
    total: int,
    bodies: Callable[[], Iterator[tuple[str, str]]],
    group_id: str | None,
    delay_s: int,
    offload: bool | None,
    settings: QueueSettings,
) -> int:
    """Send ``bodies()``, (entry id, body) pairs, to the queue ``name``; the exit status."""
    tally = _Tally(total=total)

    async def operation(admin: SQSAdmin) -> int:
        url = await admin.get_queue_url(name)
        info = await admin.get_queue_info(url)
        if info.fifo and group_id is None:
            raise click.UsageError(f"queue {name!r} is a FIFO queue: pass --group-id")
        if info.fifo and delay_s:
            raise click.UsageError(
                f"queue {name!r} is a FIFO queue, which takes no per-message --delay"
            )
        entries = (SendEntry(key, text, delay_s, {}, group_id) for key, text in bodies())
        payloads = None if offload is False else LargePayloads.from_settings(settings, admin)
        try:
            with progress_bar() as progress:
                task = progress.add_task(f"sending to {name}", total=total)

                def sent(batch: Sequence[SendEntry], result: BatchResult) -> None:
                    _count(tally, batch, result)
                    progress.advance(task, len(batch))

                await send_all(admin, url, entries, sent, payloads=payloads, offload=offload)
        except jsonl_file.BadFile as exc:  # it changed between the check and the sending
            return fail(str(exc), INCOMPLETE)
        finally:
            if payloads is not None:
                await payloads.aclose()
            if tally.done < tally.total:  # stopped by an error or Ctrl-C: say what is left
                click.echo(f"sent {tally.sent} of {tally.total} messages to {name}{_via(tally)}")
                after = f" after {tally.last_done}" if tally.last_done else ""
                click.echo(f"not sent: {count(tally.total - tally.done)}{after}", err=True)
        return _report(tally, name)

    return run_operation(operation)


def _count(tally: _Tally, batch: Sequence[SendEntry], result: BatchResult) -> None:
    """Add what happened to ``batch`` to ``tally``."""
    successful = set(result.successful)
    tally.sent += len(successful)
    tally.offloaded += sum(
        1
        for entry in batch
        if entry.id in successful and is_pointer_message(entry.message_attributes)
    )
    for failure in result.failed:
        tally.refused.append((_label(failure.id), f"{failure.code}: {failure.message}"))
    tally.done += len(batch)
    tally.last_done = _label(batch[-1].id)


def _via(tally: _Tally) -> str:
    """`` (3 through S3)`` after the count of messages sent, when some were offloaded."""
    return f" ({tally.offloaded} through S3)" if tally.offloaded else ""


def _label(entry_id: str) -> str:
    return entry_id if entry_id == _BODY_ID else f"line {entry_id}"


def _report(tally: _Tally, name: str) -> int:
    if not tally.refused:
        click.echo(f"sent {count(tally.sent)} to {name}{_via(tally)}")
        return ExitCode.OK
    for label, reason in tally.refused:
        say(f"refused: {label}: {reason}")
    click.echo(f"sent {tally.sent} of {tally.total} messages to {name}{_via(tally)}")
    refused = [label for label, _ in tally.refused]
    return fail(f"{count(len(refused))} not sent: {shown(refused)}", INCOMPLETE)
