"""Kills its own process (SIGKILL) a moment after it is imported: a worker that keeps dying."""

from __future__ import annotations

import os
import signal
import threading

from aiosqsq import App

app = App()


@app.handler()
async def handle(payload: str) -> None:
    pass


threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()
