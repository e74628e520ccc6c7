"""``aiosqsq run --local``: an SQS-compatible server for this run, so that a newcomer runs
the real SQS path (aioboto3, the wire protocol, redrive) with no AWS account.

1. moto's server (the ``aiosqsq[local]`` extra: ``moto[server]``) starts in this process,
   in a thread, on 127.0.0.1 and a port the kernel picks;
2. the environment points the app at it, before the app's module is imported:
   ``QUEUE_BACKEND=sqs``, ``QUEUE_SQS_ENDPOINT_URL``, the emulator's keys, and
   ``QUEUE_SQS_QUEUE_URL`` as a queue name (``default`` when unset; a URL's last part);
3. the app is imported here once to learn its queues, and each is created with a
   dead-letter queue ``<name>-dlq`` after 5 receives (what the memory backend does);
4. the app runs: in this process, or in the workers of ``--workers``/``--reload``, which
   inherit the environment and so all use this one server;
5. the server stops when the run ends, and its queues and messages with it.

The server runs one request at a time (aiosqsq/cli/local_server.py): stock moto's threaded
server can deliver a message twice or bring back a deleted one under concurrent calls.
moto is still an emulator, for trying things: see "The local emulator's limits" in the
README.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import anyio

from aiosqsq.app import App
from aiosqsq.backends.provisioning import (
    DEFAULT_MAX_RECEIVE_COUNT,
    create_with_dead_letter_queue,
    dead_letter_queue_name,
)
from aiosqsq.cli.local_server import LocalSQS
from aiosqsq.errors import BackendError, ConfigurationError
from aiosqsq.exit_codes import ExitCode, exit_for
from aiosqsq.importer import AppLoadError, Target, load_app
from aiosqsq.settings import QueueSettings

logger = logging.getLogger("aiosqsq.cli")


def run_locally(target: Target, *, app_dir: str, factory: bool, run: Callable[[], int]) -> int:
    """Start the server, point the environment at it, create the app's queues, ``run()``
    the app, stop the server; return the exit code (never raises)."""
    try:
        server = LocalSQS()
    except ConfigurationError as exc:
        logger.error("configuration error: %s", exc)
        return ExitCode.CONFIGURATION
    logger.info("local SQS server (moto) at %s, for this run only", server.endpoint_url)
    try:
        _point_environment_at(server.endpoint_url)
        code = _create_queues(target, server.endpoint_url, app_dir=app_dir, factory=factory)
        return run() if code is None else code
    except KeyboardInterrupt:
        logger.info("interrupted while starting: nothing was consumed")
        return ExitCode.OK
    finally:
        server.stop()
        logger.info("local SQS server stopped: its queues and messages are gone")


def _point_environment_at(endpoint_url: str) -> None:
    try:
        default_queue = QueueSettings(backend="memory").sqs_queue_url or "default"
    except ConfigurationError:  # a bad setting: the worker reports it, naming it
        default_queue = "default"
    os.environ.update(
        {
            "QUEUE_BACKEND": "sqs",
            "QUEUE_SQS_ENDPOINT_URL": endpoint_url,
            "QUEUE_SQS_QUEUE_URL": _name(default_queue),
            "QUEUE_AWS_REGION": "us-east-1",
            # The emulator's keys (moto takes any): the developer's own, from the environment
            # or .env, are never sent to it (an empty variable here hides one in .env).
            "QUEUE_AWS_ACCESS_KEY_ID": "aiosqsq-local",
            "QUEUE_AWS_SECRET_ACCESS_KEY": "aiosqsq-local",
            "QUEUE_AWS_SESSION_TOKEN": "",
            # The workers of --workers and --reload use this server, not one of their own.
            "QUEUE_LOCAL": "false",
        }
    )


def _name(queue: str) -> str:
    """A queue URL's or ARN's last part: the queue's name."""
    return queue.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def _create_queues(
    target: Target, endpoint_url: str, *, app_dir: str, factory: bool
) -> ExitCode | None:
    """Create the app's queues; None to go on, or the exit code of what stops the run."""
    try:
        app = load_app(target, app_dir=app_dir, factory=factory)
    except (AppLoadError, ConfigurationError):
        return None  # the worker loads it again and says why it cannot, with its exit code
    try:
        names = _queues_of(app, endpoint_url)
        anyio.run(_create, app.settings, names)
    except (ConfigurationError, BackendError) as exc:
        return exit_for(exc, logger)
    return None


def _queues_of(app: App, endpoint_url: str) -> list[str]:
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
        if name.startswith(("https://", "http://", "arn:")):
            raise ConfigurationError(
                f"--local creates the app's queues by name, and a handler consumes {name!r}: "
                'give its queue= a name, e.g. queue="orders"'
            )
    return names


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
