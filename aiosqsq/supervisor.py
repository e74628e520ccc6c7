"""Worker processes for ``--workers N`` and ``--reload``: start them, keep them, stop them.

Each worker is a command (``python -P -m aiosqsq run MODULE:ATTRIBUTE``, options in its
``QUEUE_*`` environment): its own interpreter, event loop, App and consumers. Workers write
their logs straight to the supervisor's stderr. The supervisor:

* starts each worker in a session of its own, so that a terminal's Ctrl+C reaches only the
  supervisor, which forwards it once (a worker that got it twice would force its stop);
* forwards SIGINT and SIGTERM: the first stops every worker gracefully, a second one forces
  them; a worker still running ``stop_timeout_s`` after it was asked to stop is killed;
* restarts a worker that exits unasked, after a delay that doubles with each death within
  ``RestartPolicy.window_s`` (0.5 s, 1 s, 2 s, ... at most 30 s), and gives up when workers
  died ``max_deaths`` times within that window: it stops the others and returns
  ``WORKERS_KEEP_DYING``;
* never restarts a worker that exited with a code a restart cannot fix (bad usage, app not
  loadable, configuration, lost queue access): it stops the others and returns that code;
* with ``burst``, leaves a worker that exited 0 (its queues drained) stopped, and returns
  once all have;
* with ``reload_dir`` (one worker), restarts it when a ``.py`` file under that directory
  changes, and after a crash waits for the next change rather than restarting.

The result is 0 when every worker stopped cleanly, else the exit code that says why not.
A worker's standard input is a pipe the supervisor never writes: if the supervisor is
killed, the pipe closes and the workers stop gracefully by themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import Process, TaskGroup, TaskStatus

from aiosqsq.exit_codes import PERMANENT, ExitCode

logger = logging.getLogger("aiosqsq.supervisor")

_CLEAN_STOP = frozenset({0, -signal.SIGINT, -signal.SIGTERM})


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a worker that died, and when to give up."""

    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_deaths: int = 5
    window_s: float = 60.0

    def delay_s(self, recent_deaths: int) -> float:
        """The wait before a restart, given the deaths within the window (this one included)."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** max(0, recent_deaths - 1))


def describe_exit(code: int) -> str:
    """``exited with code 4 (configuration error)`` or ``was killed by SIGKILL``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    try:
        return f"exited with code {code} ({ExitCode(code).meaning})"
    except ValueError:
        return f"exited with code {code}"


class Supervisor:
    """Runs ``workers`` copies of ``command`` until they stop (see the module docstring)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        workers: int,
        env: Mapping[str, str],
        stop_timeout_s: float,
        burst: bool = False,
        reload_dir: str | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        if reload_dir is not None and workers != 1:
            raise ValueError("reloading runs exactly one worker")
        self._command = list(command)
        self._workers = workers
        self._env = dict(env)
        self._stop_timeout_s = stop_timeout_s
        self._burst = burst
        self._reload_dir = reload_dir
        self._policy = policy or RestartPolicy()
        self._children: dict[int, Process] = {}
        self._deaths: deque[float] = deque()
        self._result = ExitCode.OK.value
        self._stopping = False
        self._stop_requested = anyio.Event()
        self._changed = anyio.Event()  # reload: a watched file changed (or stopping)
        self._reload_requested = False
        self._tasks: TaskGroup | None = None

    def run(self) -> int:
        """Run until every worker has stopped; return the exit code (0 when all is well)."""
        return anyio.run(self._run)

    async def _run(self) -> int:
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            await tasks.start(self._watch_signals)
            if self._reload_dir is not None:
                tasks.start_soon(self._watch_files, self._reload_dir)
            async with anyio.create_task_group() as slots:
                for slot in range(1, self._workers + 1):
                    slots.start_soon(self._keep_running, slot)
            tasks.cancel_scope.cancel()
        logger.info("all workers stopped")
        return self._result

    async def _keep_running(self, slot: int) -> None:
        while not self._stopping:
            pid, code = await self._run_child(slot)
            if self._stopping:
                if code not in _CLEAN_STOP:
                    logger.warning(
                        "worker %d (pid %d) %s while stopping", slot, pid, describe_exit(code)
                    )
                    self._fail(code if code > 0 else ExitCode.UNEXPECTED_ERROR)
                return
            if self._reload_requested:
                self._reload_requested = False
                continue
            if self._reload_dir is not None:
                logger.log(
                    logging.INFO if code == 0 else logging.ERROR,
                    "worker %d (pid %d) %s: waiting for a change to restart it",
                    slot,
                    pid,
                    describe_exit(code),
                )
                await self._changed.wait()
                continue
            if self._burst and code == 0:
                logger.info("worker %d (pid %d) drained its queues and stopped", slot, pid)
                return
            if code in PERMANENT:
                logger.error(
                    "worker %d (pid %d) %s: a restart cannot fix that; stopping the other workers",
                    slot,
                    pid,
                    describe_exit(code),
                )
                self._fail(code)
                self._begin_stop(signal.SIGTERM)
                return
            await self._after_death(slot, pid, code)

    async def _run_child(self, slot: int) -> tuple[int, int]:
        process = await anyio.open_process(
            self._command,
            stdin=subprocess.PIPE,  # never written: closes when the supervisor goes
            stdout=None,
            stderr=None,
            env=self._env,
            start_new_session=True,
        )
        async with process:
            self._children[slot] = process
            logger.info("worker %d started (pid %d)", slot, process.pid)
            if self._stopping:  # the stop came while it was starting
                self._signal(process, signal.SIGTERM)
            try:
                code = await process.wait()
            finally:
                del self._children[slot]
        return process.pid, code

    async def _after_death(self, slot: int, pid: int, code: int) -> None:
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths[0] < now - self._policy.window_s:
            self._deaths.popleft()
        deaths, window_s = len(self._deaths), self._policy.window_s
        if deaths >= self._policy.max_deaths:
            logger.error(
                "worker %d (pid %d) %s; workers died %d times within %g s: giving up",
                slot,
                pid,
                describe_exit(code),
                deaths,
                window_s,
            )
            self._fail(ExitCode.WORKERS_KEEP_DYING)
            self._begin_stop(signal.SIGTERM)
            return
        delay_s = self._policy.delay_s(deaths)
        logger.warning(
            "worker %d (pid %d) %s; restarting it in %g s (%d of %d deaths allowed within %g s)",
            slot,
            pid,
            describe_exit(code),
            delay_s,
            deaths,
            self._policy.max_deaths - 1,
            window_s,
        )
        with anyio.move_on_after(delay_s):
            await self._stop_requested.wait()

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self._stopping:
                    logger.info(
                        "%s received: stopping the workers gracefully (again to force)", name
                    )
                    self._begin_stop(signum)
                else:
                    logger.warning(
                        "%s received again: the workers cancel their running handlers", name
                    )
                    for process in self._children.values():
                        self._signal(process, signum)

    async def _watch_files(self, directory: str) -> None:
        from watchfiles import PythonFilter, awatch

        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we say what changed
        logger.info("watching %s for changes to .py files", directory)
        async for changes in awatch(
            directory, watch_filter=PythonFilter(), stop_event=self._stop_requested
        ):
            paths = sorted(path.removeprefix(directory + os.sep) for _, path in changes)
            logger.info("%s changed: restarting the worker", ", ".join(paths))
            self._reload_requested = bool(self._children)
            for process in self._children.values():
                self._signal(process, signal.SIGTERM, deadline=True)
            self._changed.set()
            self._changed = anyio.Event()

    def _begin_stop(self, signum: int) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_requested.set()
        self._changed.set()
        for process in self._children.values():
            self._signal(process, signum, deadline=True)

    def _signal(self, process: Process, signum: int, *, deadline: bool = False) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.Signals(signum))
        if deadline and self._tasks is not None:
            self._tasks.start_soon(self._kill_if_still_running, process)

    async def _kill_if_still_running(self, process: Process) -> None:
        await anyio.sleep(self._stop_timeout_s)
        if process.returncode is None:
            logger.error(
                "worker pid %d still running %g s after it was asked to stop: killing it",
                process.pid,
                self._stop_timeout_s,
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def _fail(self, code: int) -> None:
        if self._result == ExitCode.OK:  # the first reason is the one reported
            self._result = int(code)
