"""Handler registration: what is accepted, and the exact error for what is not."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from aiosqsq import App, HandlerSignatureError, Message, QueueSettings


class Order(BaseModel):
    id: int


@pytest.fixture
def app() -> App:
    return App(QueueSettings(backend="memory"))


def test_the_decorator_returns_the_function_unchanged(app: App) -> None:
    async def handle(order: Order, message: Message) -> None: ...

    assert app.handler()(handle) is handle


def test_payload_and_message_are_optional_and_found_by_annotation(app: App) -> None:
    async def only_message(msg: Message) -> None: ...

    async def nothing() -> None: ...

    app.handler(queue="a")(only_message)
    app.handler(queue="b")(nothing)
    specs = {spec.queue: spec for spec in app.handlers}
    assert (specs["a"].payload_name, specs["a"].message_name) == (None, "msg")
    assert (specs["b"].payload_name, specs["b"].message_name) == (None, None)


def _error(app: App, func: Any, **options: Any) -> str:
    with pytest.raises(HandlerSignatureError) as raised:
        app.handler(**options)(func)
    return str(raised.value)


def test_a_plain_function_is_refused(app: App) -> None:
    def handle(order: Order) -> None: ...

    assert _error(app, handle) == (
        "handler test_a_plain_function_is_refused.<locals>.handle must be an 'async def' "
        "function: aiosqsq awaits handlers on the event loop"
    )


def test_two_payload_parameters_are_refused(app: App) -> None:
    async def handle(order: Order, other: dict[str, int]) -> None: ...

    assert _error(app, handle) == (
        "handler test_two_payload_parameters_are_refused.<locals>.handle: more than one "
        "payload parameter ('order' and 'other'); a handler takes at most one payload and "
        "one Message, and resources from the app's lifespan (App(lifespan=...))"
    )


def test_two_message_parameters_are_refused(app: App) -> None:
    async def handle(a: Message, b: Message) -> None: ...

    assert "more than one parameter is annotated Message ('a' and 'b')" in _error(app, handle)


def test_var_args_are_refused(app: App) -> None:
    async def handle(*args: Any) -> None: ...

    assert "*args and **kwargs are not supported" in _error(app, handle)


def test_positional_only_is_refused(app: App) -> None:
    async def handle(order: Order, /) -> None: ...

    assert "parameter 'order' is positional-only" in _error(app, handle)


def test_unresolvable_annotation_is_refused(app: App) -> None:
    async def handle(order: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    assert "cannot resolve its annotations" in _error(app, handle)


def test_bad_options_are_refused(app: App) -> None:
    async def handle(order: Order) -> None: ...

    assert "concurrency must be >= 1, got 0" in _error(app, handle, concurrency=0)
    assert "timeout_s must be > 0, got -1" in _error(app, handle, timeout_s=-1)


def test_one_queue_has_one_handler(app: App) -> None:
    async def first(order: Order) -> None: ...

    async def second(order: Order) -> None: ...

    app.handler(queue="orders")(first)
    assert _error(app, second, queue="orders") == (
        "handler test_one_queue_has_one_handler.<locals>.second (tests.test_handler): queue "
        "'orders' already has the handler test_one_queue_has_one_handler.<locals>.first "
        "(tests.test_handler); one queue has one handler"
    )
