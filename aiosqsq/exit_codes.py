"""The exit status of ``aiosqsq run``: what a supervisor, a shell or an orchestrator reads.

====  ======================  ==================================================================
code  name                    meaning
====  ======================  ==================================================================
0     ``OK``                  stopped gracefully: a signal (SIGINT/SIGTERM, even one that came
                              before consuming began), or ``--burst`` found the queues drained
1     ``UNEXPECTED_ERROR``    an unexpected error stopped the app; its traceback is logged
2     ``USAGE``               bad command-line usage (click's own code): a malformed
                              ``MODULE:ATTRIBUTE``, an unknown option, ``--reload`` with
                              ``--workers``
3     ``APP_NOT_LOADED``      ``MODULE:ATTRIBUTE`` cannot be loaded: the module or a module it
                              imports is missing, importing it raised, the attribute is missing
                              or is not an App
4     ``CONFIGURATION``       a ``QUEUE_*`` setting is missing or invalid (the message names
                              the variable), or the app has no handlers
5     ``QUEUE_ACCESS_LOST``   the queue backend refused to go on: the queue does not exist,
                              access was denied, the credentials are invalid or expired
6     ``WORKERS_KEEP_DYING``  ``--workers``: children died too often; the supervisor gave up
7     ``STARTUP_FAILED``      the app's lifespan raised before it yielded: nothing was received
====  ======================  ==================================================================

A graceful stop on SIGINT or SIGTERM exits 0, not 130 or 143; a process killed by a signal
it cannot handle (SIGKILL) reports what the shell makes of it (137). Under ``--workers``, a
worker exiting with 2, 3, 4, 5 or 7 stops every worker and the supervisor exits with that
code: restarting cannot fix those.
"""

from __future__ import annotations

import logging
from enum import IntEnum

from aiosqsq.errors import BackendError, ConfigurationError


class ExitCode(IntEnum):
    """Exit status of ``aiosqsq run`` (see the module docstring for the table)."""

    OK = 0
    UNEXPECTED_ERROR = 1
    USAGE = 2
    APP_NOT_LOADED = 3
    CONFIGURATION = 4
    QUEUE_ACCESS_LOST = 5
    WORKERS_KEEP_DYING = 6
    STARTUP_FAILED = 7

    @property
    def meaning(self) -> str:
        """A few words for log lines: ``exit code 4 (configuration error)``."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "stopped gracefully",
    ExitCode.UNEXPECTED_ERROR: "unexpected error",
    ExitCode.USAGE: "bad usage",
    ExitCode.APP_NOT_LOADED: "the app cannot be loaded",
    ExitCode.CONFIGURATION: "configuration error",
    ExitCode.QUEUE_ACCESS_LOST: "lost access to the queue",
    ExitCode.WORKERS_KEEP_DYING: "workers keep dying",
    ExitCode.STARTUP_FAILED: "the app's startup failed",
}

# Exits that a restart cannot fix: the same code, settings and credentials fail again.
PERMANENT = frozenset(
    {
        ExitCode.USAGE,
        ExitCode.APP_NOT_LOADED,
        ExitCode.CONFIGURATION,
        ExitCode.QUEUE_ACCESS_LOST,
        ExitCode.STARTUP_FAILED,
    }
)


def exit_for(exc: ConfigurationError | BackendError, logger: logging.Logger) -> ExitCode:
    """Log ``exc`` as the operator's one line and return the exit code it means."""
    if isinstance(exc, ConfigurationError):
        logger.error("configuration error: %s", exc)
        return ExitCode.CONFIGURATION
    logger.error("lost access to the queue: %s", exc)
    return ExitCode.QUEUE_ACCESS_LOST
