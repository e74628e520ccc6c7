"""Logs each message it handles from its own logger; a body "bad" fails."""

from __future__ import annotations

import logging

from aiosqsq import App

app = App()
log = logging.getLogger("orders")


@app.handler()
async def handle(payload: str) -> None:
    log.info("handling %s", payload)
    if payload == "bad":
        raise ValueError("a bad order")
