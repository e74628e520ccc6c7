"""One worker in this process: load the app, consume until stopped, turn the outcome into an
exit code (:mod:`aiosqsq.exit_codes`) with one log line that says what happened.

Signals: SIGINT and SIGTERM stop gracefully at any time, a second one forces (the App's own
handling while it runs; before that, loading is interrupted and the exit is 0 all the same).
A worker started by a supervisor (``AIOSQSQ_SUPERVISED=1``) also stops gracefully when its
standard input closes: the supervisor holds the other end, so a supervisor that was killed
leaves no orphan consuming.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from types import FrameType

import anyio

from aiosqsq.errors import BackendError, ConfigurationError, StartupError
from aiosqsq.exit_codes import ExitCode, exit_for
from aiosqsq.importer import AppLoadError, Target, load_app

SUPERVISED_ENV = "AIOSQSQ_SUPERVISED"
DOTENV = ".env"  # in the working directory, as QueueSettings reads it
_STDIN_FD = 0

logger = logging.getLogger("aiosqsq.cli")


def run_worker(target: Target, *, app_dir: str, factory: bool, burst: bool) -> ExitCode:
    """Load ``target`` and run it in this process until it stops; never raises."""
    if os.environ.get(SUPERVISED_ENV) == "1":
        threading.Thread(target=_stop_when_stdin_closes, daemon=True).start()
    if os.path.isfile(DOTENV):  # QueueSettings reads it: say which one
        logger.info("QUEUE_* settings also read from %s", os.path.abspath(DOTENV))
    try:
        with sigterm_interrupts():
            app = load_app(target, app_dir=app_dir, factory=factory)
            logger.info(
                "aiosqsq %s running %s on the %s backend%s",
                version_text(),
                target,
                app.settings.backend,
                " (burst: exits once the queues are drained)" if burst else "",
            )
            anyio.run(partial(app.run, burst=burst))
    except KeyboardInterrupt:
        logger.info("interrupted while starting: nothing was consumed")
        return ExitCode.OK
    except AppLoadError as exc:
        logger.error("%s", exc, exc_info=exc.cause)
        return ExitCode.APP_NOT_LOADED
    except StartupError:
        return ExitCode.STARTUP_FAILED  # the app logged its one line: what startup raised
    except (ConfigurationError, BackendError) as exc:
        return exit_for(exc, logger)
    except Exception:
        logger.exception("the app stopped on an unexpected error")
        return ExitCode.UNEXPECTED_ERROR
    return ExitCode.OK


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM interrupts like SIGINT does until ``App.run`` takes both over (and after)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_when_stdin_closes() -> None:
    # os.read, not sys.stdin: a daemon thread blocked in a buffered read aborts the
    # interpreter's shutdown (it cannot take the buffer's lock).
    with contextlib.suppress(OSError):
        while os.read(_STDIN_FD, 4096):
            pass
    logger.warning("the supervisor is gone (standard input closed): stopping gracefully")
    os.kill(os.getpid(), signal.SIGTERM)


def version_text() -> str:
    """The installed aiosqsq version, for start lines."""
    try:
        return version("aiosqsq")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "(not installed)"
