"""``aiosqsq run --local``: an SQS-compatible server for this run, so that a newcomer runs
the real SQS path (aioboto3, the wire protocol, redrive) with no AWS account.

1. moto's server (the ``aiosqsq[local]`` extra: ``moto[server]``) starts in this process,
   in a thread, on 127.0.0.1 and ``--local-port`` (0, the default: a port the kernel picks);
2. the environment points the app at it, before the app's module is imported:
   ``QUEUE_BACKEND=sqs``, ``QUEUE_SQS_ENDPOINT_URL``, the emulator's keys, and
   ``QUEUE_SQS_QUEUE_URL`` as a queue name (``default`` when unset; a URL's last part);
3. the app is imported here once to learn its queues, and each is created with a
   dead-letter queue ``<name>-dlq`` after 5 receives (what the memory backend does);
4. the ``export QUEUE_...`` line another shell needs to reach the server (a producer,
   ``aiosqsq queues``, ``send``, ``dlq``) is printed on standard error, whatever the log
   level (:func:`print_reach_lines`);
5. the app runs: in this process, or in the workers of ``--workers``/``--reload``, which
   inherit the environment and so all use this one server;
6. the server stops when the run ends, and its queues and messages with it.

``aiosqsq local`` (:mod:`aiosqsq.cli.local_command`) does steps 1 to 4 and serves until
stopped, with no worker.

The server runs one request at a time (aiosqsq/cli/local_server.py): stock moto's threaded
server can deliver a message twice or bring back a deleted one under concurrent calls.
moto is still an emulator, for trying things: see "The local emulator's limits" in the
README.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable, Sequence

import anyio
import click

from aiosqsq.app import App
from aiosqsq.backends.provisioning import (
    DEFAULT_MAX_RECEIVE_COUNT,
    create_with_dead_letter_queue,
    dead_letter_queue_name,
)
from aiosqsq.backends.queue_address import queue_name
from aiosqsq.cli.local_server import LocalSQS
from aiosqsq.errors import BackendError, ConfigurationError
from aiosqsq.exit_codes import ExitCode, exit_for
from aiosqsq.importer import AppLoadError, Target, load_app
from aiosqsq.settings import QueueSettings

logger = logging.getLogger("aiosqsq.cli")


def run_locally(
    target: Target, *, app_dir: str, factory: bool, port: int, run: Callable[[], int]
) -> int:
    """Start the server on ``port`` (0: a free one), point the environment at it, create
    the app's queues, print how to reach it, ``run()`` the app, stop the server; return the
    exit code (never raises)."""
    server = start_server(port)
    if isinstance(server, ExitCode):
        return server
    try:
        default_queue = point_environment_at(server.endpoint_url)
        code = _create_queues(target, server.endpoint_url, app_dir=app_dir, factory=factory)
        if code is not None:
            return code
        # run's options are in the environment (aiosqsq.cli.command): --log-format's too
        json_logs = os.environ.get("QUEUE_LOG_FORMAT") == "json"
        print_reach_lines(server.endpoint_url, default_queue, json_logs=json_logs)
        return run()
    except KeyboardInterrupt:
        logger.info("interrupted while starting: nothing was consumed")
        return ExitCode.OK
    finally:
        stop_server(server)


def start_server(port: int) -> LocalSQS | ExitCode:
    """The emulator on 127.0.0.1:``port``, or the exit code of why it cannot start (logged)."""
    try:
        server = LocalSQS(port)
    except ConfigurationError as exc:
        logger.error("configuration error: %s", exc)
        return ExitCode.CONFIGURATION
    logger.info("local SQS server (moto) at %s, for this run only", server.endpoint_url)
    return server


def stop_server(server: LocalSQS) -> None:
    """Stop the emulator, saying what that means."""
    server.stop()
    logger.info("local SQS server stopped: its queues and messages are gone")


def emulator_environment(endpoint_url: str, default_queue: str) -> dict[str, str]:
    """The ``QUEUE_*`` variables that point a process at the emulator: what this process
    sets, and what the printed ``export`` line gives another shell."""
    return {
        "QUEUE_BACKEND": "sqs",
        "QUEUE_SQS_ENDPOINT_URL": endpoint_url,
        "QUEUE_AWS_REGION": "us-east-1",
        # The emulator's keys (moto takes any): the developer's own, from the environment
        # or .env, are never sent to it (an empty variable here hides one in .env).
        "QUEUE_AWS_ACCESS_KEY_ID": "aiosqsq-local",
        "QUEUE_AWS_SECRET_ACCESS_KEY": "aiosqsq-local",
        "QUEUE_AWS_SESSION_TOKEN": "",
        "QUEUE_SQS_QUEUE_URL": default_queue,
    }


def point_environment_at(endpoint_url: str, default_queue: str | None = None) -> str:
    """Point this process (and the workers it starts) at the emulator; return the default
    queue's name: ``default_queue``, else QUEUE_SQS_QUEUE_URL's, else ``default``."""
    if default_queue is None:
        try:
            default_queue = QueueSettings(backend="memory").sqs_queue_url or "default"
        except ConfigurationError:  # a bad setting: the worker reports it, naming it
            default_queue = "default"
    name = queue_name(default_queue)
    os.environ.update(emulator_environment(endpoint_url, name))
    # The workers of --workers and --reload use this server, not one of their own.
    os.environ["QUEUE_LOCAL"] = "false"
    return name


def reach_lines(endpoint_url: str, default_queue: str) -> list[str]:
    """What another shell pastes to reach the emulator: a comment, then one ``export``."""
    variables = emulator_environment(endpoint_url, default_queue)
    return [
        f"# local SQS server at {endpoint_url}; to send to it or run aiosqsq queues, send "
        "or dlq against it from another shell:",
        "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items()),
    ]


def print_reach_lines(endpoint_url: str, default_queue: str, *, json_logs: bool) -> None:
    """Print :func:`reach_lines` on standard error whatever the log level: a user who runs
    at ``--log-level warning`` needs them as much as anyone. As they are, to be pasted;
    with ``json_logs``, as one log object each (the log stays JSON lines)."""
    lines = reach_lines(endpoint_url, default_queue)
    if not json_logs:
        for line in lines:
            click.echo(line, err=True)
        return
    for line in lines:  # through the handlers, past the level (only loggers filter by it)
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "%s", (line,), None)
        for handler in logging.getLogger().handlers:
            handler.handle(record)


def _create_queues(
    target: Target, endpoint_url: str, *, app_dir: str, factory: bool
) -> ExitCode | None:
    """Create the app's queues; None to go on, or the exit code of what stops the run."""
    try:
        app = load_app(target, app_dir=app_dir, factory=factory)
    except (AppLoadError, ConfigurationError):
        return None  # the worker loads it again and says why it cannot, with its exit code
    try:
        create_queues(app.settings, queues_of(app, endpoint_url))
    except (ConfigurationError, BackendError) as exc:
        return exit_for(exc, logger)
    return None


def queues_of(app: App, endpoint_url: str) -> list[str]:
    """The names of the queues ``app`` consumes; ``ConfigurationError`` when its settings
    do not point at the emulator, or a handler consumes a URL."""
    settings = app.settings
    if settings.backend != "sqs" or settings.sqs_endpoint_url != endpoint_url:
        raise ConfigurationError(
            f"--local cannot point this app at its server ({endpoint_url}): its settings were "
            f"given in code (backend={settings.backend!r}, "
            f"sqs_endpoint_url={settings.sqs_endpoint_url!r}); build it with App(), which "
            "reads the QUEUE_* variables that --local sets"
        )
    names = sorted(set(app.queues))
    for name in names:
        if is_url(name):
            raise ConfigurationError(
                f"--local creates the app's queues by name, and a handler consumes {name!r}: "
                'give its queue= a name, e.g. queue="orders"'
            )
    return names


def is_url(queue: str) -> bool:
    """Whether ``queue`` is a URL or ARN rather than a name the emulator can create."""
    return queue.startswith(("https://", "http://", "arn:"))


def create_queues(settings: QueueSettings, names: Sequence[str]) -> None:
    """Create each queue with its dead-letter queue on the emulator ``settings`` point at.
    Raises ``BackendError`` as CreateQueue does (a name SQS refuses)."""
    anyio.run(_create, settings, names)


async def _create(settings: QueueSettings, names: Sequence[str]) -> None:
    from aiosqsq.backends.sqs import SQSBackend  # imports aioboto3: only when asked

    # Its own client: the app's backend must not be opened on this event loop.
    async with SQSBackend(settings) as backend:
        for name in names:
            await create_with_dead_letter_queue(
                backend, name, visibility_timeout_s=settings.visibility_timeout
            )
            logger.info(
                "local SQS: created queue %s, dead letters to %s after %d receives",
                name,
                dead_letter_queue_name(name),
                DEFAULT_MAX_RECEIVE_COUNT,
            )
