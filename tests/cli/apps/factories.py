"""Factories for ``--factory``: one that works and three that do not."""

from __future__ import annotations

from aiosqsq import App


def make_app() -> App:
    app = App()

    @app.handler()
    async def handle(payload: str) -> None:
        pass

    return app


def make_nothing() -> None:
    return None


def make_broken() -> App:
    raise RuntimeError("no factory today")


settings = {"not": "an app"}
