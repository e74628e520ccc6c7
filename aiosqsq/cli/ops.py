"""What the operator commands (``queues``, ``send``, ``dlq``) share: the settings they read,
the SQS client they open, how a failure becomes an exit status, and where output goes.

They read the same ``QUEUE_*`` variables and ``.env`` as ``aiosqsq run`` (endpoint,
region, keys: the same rules, checked by the same code) and work on the queues they name.
``QUEUE_SQS_QUEUE_URL`` is not required: it names the queue a worker consumes by default,
and these commands have no default queue. ``QUEUE_BACKEND=memory`` (the default) is
refused: the memory backend's queues live inside the process that made them, so another
process cannot see them.

Results go to standard output; errors, warnings and progress bars to standard error (the
bars only on a terminal). Tables written to a pipe or a file are not squeezed to 80 columns.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aiosqsq.control_chars import escape_controls
from aiosqsq.errors import BackendError, ConfigurationError
from aiosqsq.exit_codes import ExitCode
from aiosqsq.logconfig import configure_logging
from aiosqsq.redaction import scrub
from aiosqsq.settings import QueueSettings

if TYPE_CHECKING:
    from aiosqsq.backends.sqs_admin import SQSAdmin

T = TypeVar("T")

# Stands in for QUEUE_SQS_QUEUE_URL, which QueueSettings requires with QUEUE_BACKEND=sqs;
# no operator command reads it (SQSBackend reads it only for a region in an AWS URL).
_NO_DEFAULT_QUEUE: Final = "-"

_PIPE_WIDTH: Final = 10_000  # columns for a table written to a pipe: no line is folded

# The exit status of an operator command that did part of its work: some messages were not
# sent or moved (the summary names them), or the user declined to go on.
INCOMPLETE: Final = ExitCode.UNEXPECTED_ERROR

MEMORY_REFUSED: Final = (
    "QUEUE_BACKEND is 'memory': the memory backend's queues live inside the process that "
    "made them, so this command cannot see them; set QUEUE_BACKEND=sqs, and "
    "QUEUE_SQS_ENDPOINT_URL for an emulator (e.g. http://127.0.0.1:4566) or QUEUE_AWS_REGION "
    "and credentials for Amazon SQS"
)

_EXITS = (
    (0, "done"),
    (1, "some messages were not sent or moved (the summary lists them), or declined"),
    (2, "bad usage or input (a --file line that is not JSON): nothing was done"),
    (4, "configuration error: a QUEUE_* setting is missing or invalid"),
    (5, "the queue service refused: a queue does not exist, access denied, bad credentials"),
    (130, "interrupted (Ctrl-C); --watch exits 0"),
)
EXIT_CODES: Final = "\b\nExit codes:\n" + "\n".join(f"{c:>5}  {text}" for c, text in _EXITS)


def operator_settings() -> QueueSettings:
    """``QueueSettings`` from the environment and ``.env``, for the SQS backend.

    Raises :class:`ConfigurationError` for a bad value (naming its variable) and for
    ``QUEUE_BACKEND=memory``.
    """
    # "memory" only gets past the QUEUE_SQS_QUEUE_URL check; every other value is read.
    configured = QueueSettings(backend="memory").sqs_queue_url
    settings = QueueSettings(sqs_queue_url=configured or _NO_DEFAULT_QUEUE)
    if settings.backend != "sqs":
        raise ConfigurationError(MEMORY_REFUSED)
    return settings


def run_operation(
    operation: Callable[[SQSAdmin], Awaitable[int]], *, interrupt_exits: int = 130
) -> int:
    """Run ``operation`` with an :class:`SQSAdmin` from :func:`operator_settings`; return
    the exit status it returns, or the one its failure maps to (printing ``Error: ...``).

    ``KeyboardInterrupt`` (Ctrl-C) exits ``interrupt_exits``: 130, as shells do, unless
    the command ends that way normally (``--watch``).
    """
    configure_logging("warning")  # the SDK's warnings, through the same secret scrubbing

    async def main() -> int:
        from aiosqsq.backends.sqs_admin import SQSAdmin  # imports aioboto3: only when asked

        admin = SQSAdmin(operator_settings())
        async with admin:
            return await operation(admin)

    try:
        return anyio.run(main)
    except ConfigurationError as exc:
        return fail(f"configuration error: {exc}", ExitCode.CONFIGURATION)
    except BackendError as exc:
        return fail(str(exc), ExitCode.QUEUE_ACCESS_LOST)
    except KeyboardInterrupt:
        if interrupt_exits:
            click.echo("Interrupted.", err=True)
        return interrupt_exits


def fail(message: str, code: int) -> int:
    """Print ``Error: message`` on standard error (as :func:`say` does) and return ``code``."""
    say(f"Error: {message}")
    return code


def say(message: str) -> None:
    """Print one line on standard error. ``message`` may quote a server's answer or a
    setting: secrets in it are masked (:func:`~aiosqsq.redaction.scrub`) and control
    characters escaped."""
    click.echo(escape_controls(scrub(message)), err=True)


def out() -> Console:
    """Standard output, for tables: as wide as the terminal, or, when it is a pipe or a file
    (and COLUMNS is not set), as wide as the table needs, so that no id is wrapped."""
    console = Console(soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH
    return console


def progress_bar() -> Progress:
    """A progress bar on standard error, drawn only when it is a terminal."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def chunks(items: Sequence[T], size: int = 10) -> Iterable[Sequence[T]]:
    """``items`` in slices of ``size``: SQS caps a batch at 10 entries."""
    return (items[start : start + size] for start in range(0, len(items), size))


def shown(labels: Sequence[str], limit: int = 10) -> str:
    """``a, b, c`` for a summary line, cut after ``limit`` with ``and N more``."""
    text = ", ".join(labels[:limit])
    return f"{text} and {len(labels) - limit} more" if len(labels) > limit else text


def count(n: int, noun: str = "message") -> str:
    """``1 message``, ``2 messages``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
