"""``aiosqsq local [MODULE:ATTRIBUTE] [--queue NAME]...``: the emulator of ``run --local``
alone, so that producers and the operator commands (``queues``, ``send``, ``dlq``) have a
target on a laptop, and workers can come and go while its queues and messages stay.

It serves until SIGINT or SIGTERM (exit 0). The queues: the app's, each ``--queue``, or
``default`` when neither is given; each with a ``<name>-dlq`` after 5 receives. The default
queue of the printed ``export`` line (``QUEUE_SQS_QUEUE_URL``) is the app's, else the first
``--queue``.
"""

from __future__ import annotations

import signal
import threading

import click

from aiosqsq.cli.local import (
    create_queues,
    is_url,
    point_environment_at,
    print_reach_lines,
    queues_of,
    start_server,
    stop_server,
)
from aiosqsq.cli.worker import logger, sigterm_interrupts
from aiosqsq.errors import BackendError, ConfigurationError
from aiosqsq.exit_codes import ExitCode, exit_for
from aiosqsq.importer import AppLoadError, Target, load_app, parse_target
from aiosqsq.logconfig import LEVELS, configure_logging
from aiosqsq.settings import QueueSettings

_STOPS = (signal.SIGINT, signal.SIGTERM)


def _target(ctx: click.Context, param: click.Parameter, value: str | None) -> Target | None:
    if value is None:
        return None
    try:
        return parse_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command("local")
@click.argument("target", metavar="[MODULE:ATTRIBUTE]", required=False, callback=_target)
@click.option(
    "--queue",
    "queue_names",
    multiple=True,
    metavar="NAME",
    help="Create this queue too (repeatable); with no app, the first is the default queue.",
)
@click.option(
    "--port",
    envvar="QUEUE_LOCAL_PORT",
    show_envvar=True,
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=65535),
    help="Listen on 127.0.0.1 and this port (0: a free one).",
)
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="Import MODULE from this directory.",
)
@click.option("--factory", is_flag=True, help="ATTRIBUTE is a function that returns the App.")
@click.option(
    "--log-level",
    envvar="QUEUE_LOG_LEVEL",
    show_envvar=True,
    default="info",
    show_default=True,
    type=click.Choice(LEVELS, case_sensitive=False),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="text for people, json for machines (one object per line, the export line too). "
    "Not read from QUEUE_LOG_FORMAT, which is the workers'.",
)
@click.pass_context
def local(
    ctx: click.Context,
    target: Target | None,
    queue_names: tuple[str, ...],
    port: int,
    app_dir: str,
    factory: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Serve an SQS emulator (moto) on 127.0.0.1 until SIGINT or SIGTERM, with the queues
    of the App at MODULE:ATTRIBUTE and each --queue (or one queue, default), each with a
    <name>-dlq after 5 receives.

    Prints the export line that points another shell at it: workers (aiosqsq run without
    --local), producers, and aiosqsq queues, send and dlq. Its queues and messages are
    gone when it stops. Needs: pip install 'aiosqsq[local]'.
    """
    for name in queue_names:
        if is_url(name):
            raise click.BadParameter(f"{name!r} is not a queue name", ctx, param_hint="--queue")
    configure_logging(log_level, "json" if log_format == "json" else "text")
    server = start_server(port)
    if isinstance(server, ExitCode):
        ctx.exit(int(server))
    try:
        with sigterm_interrupts():
            code = _serve(
                server.endpoint_url,
                target,
                queue_names,
                app_dir,
                factory,
                json_logs=log_format == "json",
            )
    except KeyboardInterrupt:
        code = ExitCode.OK
    finally:
        # A second Ctrl-C (or a SIGTERM sent beside it) must not abort the stop half-way.
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOPS}
        try:
            stop_server(server)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    ctx.exit(int(code))


def _serve(
    endpoint_url: str,
    target: Target | None,
    queue_names: tuple[str, ...],
    app_dir: str,
    factory: bool,
    *,
    json_logs: bool,
) -> ExitCode:
    """Create the queues, print the export line, wait for a signal (KeyboardInterrupt);
    the exit code of what went wrong first, if anything did."""
    first = queue_names[0] if queue_names and target is None else None
    default_queue = point_environment_at(endpoint_url, first)
    try:
        names = set(queue_names)
        if target is not None:
            app = load_app(target, app_dir=app_dir, factory=factory)
            names.update(queues_of(app, endpoint_url))
        create_queues(QueueSettings(), sorted(names or {default_queue}))
    except AppLoadError as exc:
        logger.error("%s", exc, exc_info=exc.cause)
        return ExitCode.APP_NOT_LOADED
    except (ConfigurationError, BackendError) as exc:
        return exit_for(exc, logger)
    print_reach_lines(endpoint_url, default_queue, json_logs=json_logs)
    logger.info("serving until SIGINT or SIGTERM (Ctrl-C)")
    threading.Event().wait()  # a signal's KeyboardInterrupt ends it
    return ExitCode.OK  # pragma: no cover - the wait never returns
