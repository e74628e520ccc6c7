"""A body "block" blocks the worker's event loop for $BLOCK_S seconds (time.sleep in an
async handler: the mistake /livez must catch); other bodies are handled at once."""

from __future__ import annotations

import os
import time

from aiosqsq import App

app = App()


@app.handler()
async def handle(payload: str) -> None:
    if payload == "block":
        time.sleep(float(os.environ["BLOCK_S"]))  # noqa: ASYNC251 (the point)
