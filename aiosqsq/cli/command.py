"""The ``aiosqsq`` command line: ``aiosqsq run MODULE:ATTRIBUTE [OPTIONS]``, and the
operator commands (``queues``, ``send``, ``dlq``: see :mod:`aiosqsq.cli.ops`), registered here.

Every option is also a ``QUEUE_*`` variable (``--log-format`` is ``QUEUE_LOG_FORMAT``): a
flag wins over the environment, which wins over ``.env`` in the current directory. Each
option is declared once, by :func:`_option`. Except three: ``.env`` may not set
``QUEUE_APP_DIR``, ``QUEUE_LOCAL`` or ``QUEUE_WIRE_DEBUG``, which change what code runs or
what is logged. A file in the working directory (a cloned repository's, say) is not trusted
with that: it takes a flag or the real environment, and a ``.env`` that sets one is ignored
for it, with a warning naming it. A ``QUEUE_*`` variable that is neither a setting nor an
option (``QUEUE_WAIT_TIME``) is warned about once, naming the closest one
(:mod:`aiosqsq.cli.unknown_settings`).

The options that are settings (``--concurrency``, ``--shutdown-timeout``) reach the app by
being written into the environment as their ``QUEUE_*`` variable before the app's module is
imported: ``App()`` then reads them like any setting, and ``QueueSettings`` validates them
(a bad value is a configuration error naming the variable). An app built with explicit
``QueueSettings(...)`` arguments keeps its own values. The command's own options are written
to the environment too, so that the worker processes of ``--workers`` and ``--reload`` see
the same ones.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import click
from dotenv import dotenv_values

from aiosqsq.cli.dlq import dlq
from aiosqsq.cli.local import run_locally
from aiosqsq.cli.local_command import local
from aiosqsq.cli.queues import queues
from aiosqsq.cli.send_command import send
from aiosqsq.cli.top import top
from aiosqsq.cli.unknown_settings import warnings_for
from aiosqsq.cli.worker import DOTENV, SUPERVISED_ENV, logger, run_worker, version_text
from aiosqsq.errors import ConfigurationError
from aiosqsq.exit_codes import ExitCode, exit_for
from aiosqsq.importer import Target, parse_target
from aiosqsq.logconfig import LEVELS, configure_logging
from aiosqsq.observability.endpoints import command_endpoint
from aiosqsq.settings import ENV_PREFIX, QueueSettings
from aiosqsq.supervisor import Supervisor

F = TypeVar("F", bound=Callable[..., Any])

# A worker gets this long past its own QUEUE_SHUTDOWN_TIMEOUT to cancel what still runs,
# hand it back and flush its deletes, before the supervisor kills it.
STOP_MARGIN_S = 10.0

_SETTINGS: set[str] = set()  # options that are QueueSettings fields
# The command's own options that .env may not set (see the module docstring).
_NOT_FROM_DOTENV: Final = frozenset({"app_dir", "local", "wire_debug"})


def _option(name: str, *, setting: bool = False, **kwargs: Any) -> Callable[[F], F]:
    """``--name``, also the variable ``QUEUE_<NAME>``.

    A ``setting`` is left for ``QueueSettings`` to read (and validate) from the environment
    and ``.env``; the command's own options are read by click: from the environment, then
    from ``.env`` through the context's ``default_map`` (see :func:`main`).
    """
    variable = f"{ENV_PREFIX}{name.upper()}"
    flag = f"--{name.replace('_', '-')}"
    if setting:
        _SETTINGS.add(name)
        kwargs["help"] = f"{kwargs['help']}  [env var: {variable}]"
        return click.option(flag, name, default=None, **kwargs)
    return click.option(flag, name, envvar=variable, show_envvar=True, **kwargs)


def _exit_codes() -> str:
    rows = "\n".join(f"  {code.value}  {code.meaning}" for code in ExitCode)
    return f"\b\nExit codes:\n{rows}"


def _target(ctx: click.Context, param: click.Parameter, value: str) -> Target:
    try:
        return parse_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="aiosqsq", prog_name="aiosqsq")
def cli() -> None:
    """Consume Amazon SQS with asyncio handlers: `aiosqsq run --help` tells how.

    The operator commands (queues, send, dlq) work on the queues of QUEUE_BACKEND=sqs with
    the same QUEUE_* settings and .env as `run`; `aiosqsq local` serves an SQS emulator for
    them (and for workers and producers) on a laptop.
    """


cli.add_command(queues)
cli.add_command(send)
cli.add_command(dlq)
cli.add_command(top)
cli.add_command(local)


@cli.command(epilog=_exit_codes())
@click.argument("target", metavar="MODULE:ATTRIBUTE", callback=_target)
@_option("factory", is_flag=True, help="ATTRIBUTE is a function that returns the App: call it.")
@_option(
    "app_dir",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="Import MODULE from this directory, put first on the import path.",
)
@_option(
    "concurrency",
    setting=True,
    type=int,
    help="Handler calls running at once, per handler that does not set its own.",
)
@_option(
    "shutdown_timeout",
    setting=True,
    type=float,
    metavar="SECONDS",
    help="On a graceful stop, wait this long for running handlers before cancelling them.",
)
@_option(
    "workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Worker processes, each with its own event loop and consumers.",
)
@_option(
    "reload",
    is_flag=True,
    help="Restart the worker when a .py file under --app-dir changes (for development).",
)
@_option("burst", is_flag=True, help="Exit 0 once the queues are empty and nothing is in flight.")
@_option(
    "log_level",
    default="info",
    show_default=True,
    type=click.Choice(LEVELS, case_sensitive=False),
)
@_option(
    "log_format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="text for people, json for machines (one object per line).",
)
@_option(
    "wire_debug",
    is_flag=True,
    help="With --log-level debug, also log the AWS SDK's wire traffic (never in production).",
)
@_option(
    "local",
    is_flag=True,
    help="Start an SQS emulator (moto) on 127.0.0.1 for this run, create the app's queues, "
    "each with a <name>-dlq after 5 receives, and point the app (every worker) at it: the "
    "SQS path with no AWS account. Prints the export line another shell needs to reach it. "
    "Needs: pip install 'aiosqsq[local]'.",
)
@_option(
    "local_port",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=65535),
    help="With --local: the server's port on 127.0.0.1 (0: a free one); a fixed port keeps "
    "the printed export line the same from run to run.",
)
@_option(
    "http_port",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=65535),
    help="Serve /metrics, /livez and /readyz on this port (0: off); with --workers, "
    "for all of them.",
)
@_option(
    "http_host",
    default="127.0.0.1",
    show_default=True,
    help="The address --http-port listens on (0.0.0.0 in a container).",
)
@click.pass_context
def run(
    ctx: click.Context,
    target: Target,
    factory: bool,
    app_dir: str,
    concurrency: int | None,
    shutdown_timeout: float | None,
    workers: int,
    reload: bool,
    burst: bool,
    log_level: str,
    log_format: str,
    wire_debug: bool,
    local: bool,
    local_port: int,
    http_port: int,
    http_host: str,
) -> None:
    """Run the App at MODULE:ATTRIBUTE (e.g. myproject.worker:app) until SIGINT or SIGTERM.

    The first signal stops gracefully: nothing new is received, unstarted messages are
    handed back at once, running handlers get QUEUE_SHUTDOWN_TIMEOUT to finish. A second
    signal cancels them (their messages are handed back too).

    Every option is also the QUEUE_* variable shown; a flag wins over the environment,
    which wins over .env. Settings options are passed to the app through their variable:
    an app built with explicit QueueSettings(...) arguments keeps its own values.
    """
    if reload and workers > 1:
        raise click.UsageError(
            f"--reload runs one worker: it cannot be combined with --workers {workers}"
        )
    _export(ctx)
    configure_logging(log_level, "json" if log_format == "json" else "text", wire_debug=wire_debug)
    if os.environ.get(SUPERVISED_ENV) != "1":  # a supervisor's workers: it has said so
        for variable, flag in _refused_in_dotenv():
            logger.warning(
                "%s sets %s: ignored, as a .env file may not choose what code runs or what is "
                "logged; pass %s, or set %s in the environment",
                os.path.abspath(DOTENV),
                variable,
                flag,
                variable,
            )
        dotenv = dotenv_values(DOTENV) if os.path.isfile(DOTENV) else {}
        for line in warnings_for(
            known_variables(), dotenv=dotenv, dotenv_path=os.path.abspath(DOTENV)
        ):
            logger.warning("%s", line)

    def start() -> int:
        if reload or workers > 1:
            return _supervise(target, workers, burst=burst, reload_dir=app_dir if reload else None)
        return run_worker(target, app_dir=app_dir, factory=factory, burst=burst)

    with contextlib.ExitStack() as serving:
        try:
            serving.enter_context(
                command_endpoint(
                    http_host,
                    http_port,
                    supervising=reload or workers > 1,
                    liveness_timeout_s=_liveness_timeout_s(),
                )
            )
        except ConfigurationError as exc:  # the port cannot be bound
            ctx.exit(int(exit_for(exc, logger)))
        code = (
            run_locally(target, app_dir=app_dir, factory=factory, port=local_port, run=start)
            if local
            else start()
        )
    ctx.exit(int(code))


def known_variables() -> set[str]:
    """Every ``QUEUE_*`` variable something reads: the settings' and every command's options'."""
    known = {f"{ENV_PREFIX}{field.upper()}" for field in QueueSettings.model_fields}
    commands: list[click.Command] = [cli]
    while commands:
        command = commands.pop()
        if isinstance(command, click.Group):
            commands.extend(command.commands.values())
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                known.add(param.envvar)
    return known


def main(args: Sequence[str] | None = None) -> None:
    """The ``aiosqsq`` script and ``python -m aiosqsq``; exits with an :class:`ExitCode`."""
    cli.main(args=args, prog_name="aiosqsq", default_map={"run": _dotenv_defaults()})


def _export(ctx: click.Context) -> None:
    """Write the options into the environment as their ``QUEUE_*`` variables."""
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        value = ctx.params[param.name]
        if param.name in _SETTINGS and value is None:
            continue  # not given: QueueSettings reads the environment and .env itself
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif param.name == "app_dir":
            value = os.path.abspath(value)
        os.environ[f"{ENV_PREFIX}{param.name.upper()}"] = str(value)


def _dotenv_defaults() -> dict[str, str]:
    """The command's own options found in ``.env``: below the environment, above defaults
    (but none of :data:`_NOT_FROM_DOTENV`)."""
    return {
        param.name: value
        for param, value in _options_in_dotenv()
        if param.name not in _NOT_FROM_DOTENV
    }


def _refused_in_dotenv() -> list[tuple[str, str]]:
    """(variable, flag) of each option ``.env`` sets but may not."""
    return [
        (str(param.envvar), param.opts[0])
        for param, _ in _options_in_dotenv()
        if param.name in _NOT_FROM_DOTENV
    ]


def _options_in_dotenv() -> list[tuple[click.Option, str]]:
    values = dotenv_values(DOTENV) if os.path.isfile(DOTENV) else {}
    found = []
    for param in run.params:
        if isinstance(param, click.Option) and isinstance(param.envvar, str) and param.name:
            value = values.get(param.envvar)
            if value is not None:
                found.append((param, value))
    return found


def _supervise(target: Target, workers: int, *, burst: bool, reload_dir: str | None) -> int:
    # -P: python -m would put the current directory first on the import path, and a
    # click.py (or any module aiosqsq imports) there would run in every worker. The app
    # directory joins the path in the worker, after aiosqsq's imports (aiosqsq.importer).
    command = [sys.executable, "-P", "-m", "aiosqsq", "run", str(target)]
    env = {**os.environ, "QUEUE_WORKERS": "1", "QUEUE_RELOAD": "false", SUPERVISED_ENV: "1"}
    what = "1 worker, reloading on changes," if reload_dir else f"{workers} workers"
    logger.info("aiosqsq %s supervising %s of %s", version_text(), what, target)
    supervisor = Supervisor(
        command,
        workers=workers,
        env=env,
        stop_timeout_s=_shutdown_timeout_s() + STOP_MARGIN_S,
        burst=burst,
        reload_dir=os.path.abspath(reload_dir) if reload_dir else None,
    )
    return supervisor.run()


def _liveness_timeout_s() -> float:
    try:
        return QueueSettings().liveness_timeout
    except ConfigurationError:  # the workers will report it, with their exit code
        return float(QueueSettings.model_fields["liveness_timeout"].default)


def _shutdown_timeout_s() -> float:
    try:
        return QueueSettings().shutdown_timeout
    except ConfigurationError:  # the workers will report it, with their exit code
        default = QueueSettings.model_fields["shutdown_timeout"].default
        return float(default)
