"""An App whose ``run`` fails with an error aiosqsq does not know: exit code 1."""

from __future__ import annotations

from aiosqsq import App, Statistics


class CrashingApp(App):
    async def run(self, *, burst: bool = False, handle_signals: bool = True) -> Statistics:
        raise RuntimeError("the consumer broke")


app = CrashingApp()


@app.handler()
async def handle(payload: str) -> None:
    pass
