"""Load the App a user names as ``MODULE:ATTRIBUTE``, importing that module and nothing else.

``parse_target`` accepts only dotted Python names without dunders (``pkg.worker:app``,
``pkg.worker:holder.app``); ``load_app`` puts the app directory first on ``sys.path``,
imports the module once with :func:`importlib.import_module`, walks the attribute with
``getattr`` and requires an :class:`~aiosqsq.App` (or, with ``factory``, calls the attribute
with no arguments and requires it to return one). There is no discovery: no entry points,
no guessing of module or attribute names.

Each way of failing has its own message, in :class:`AppLoadError`:

* the module itself is missing (``could not import module 'x': no module named ...``);
* a module it imports is missing (``... it imports a module that cannot be found``);
* importing it raised (``... it raised ZeroDivisionError: ...``, with the traceback);
* the attribute is missing, or is not an App, or a factory fails or returns something else.

:class:`~aiosqsq.errors.ConfigurationError` raised while importing (``App()`` reads the
``QUEUE_*`` settings) is not wrapped: it is a settings problem, not a loading one.

Everything aiosqsq itself depends on (orjson, pydantic, anyio, ...) is imported before the
app directory joins ``sys.path``, so a stray ``orjson.py`` there cannot shadow it. That
holds for the ``aiosqsq`` script and for ``python -P -m aiosqsq``, and for the workers of
``--workers`` and ``--reload``, always started with ``-P``; plain ``python -m`` puts the
current directory on the path before aiosqsq is imported (python/cpython#57684).
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import os
import sys
from dataclasses import dataclass
from types import ModuleType

from aiosqsq.app import App
from aiosqsq.errors import AiosqsqError, ConfigurationError

EXAMPLE = "myproject.worker:app"


@dataclass(frozen=True)
class Target:
    """A parsed ``MODULE:ATTRIBUTE``; ``str()`` gives it back."""

    module: str
    attribute: str

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}"


class AppLoadError(AiosqsqError):
    """The named app cannot be loaded; ``str()`` says why and what to do.

    ``cause`` is the exception raised by the user's code (an import or a factory call),
    whose traceback is worth showing, or None.
    """

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def parse_target(text: str) -> Target:
    """``'pkg.mod:app'`` → ``Target('pkg.mod', 'app')``; raises ``ValueError`` otherwise."""
    module, sep, attribute = text.partition(":")
    if not sep or not _is_dotted_name(module) or not _is_dotted_name(attribute):
        hint = ""
        if not sep and "." in text and _is_dotted_name(text):  # worker.app for worker:app
            hint = f"; did you mean {':'.join(text.rsplit('.', 1))!r}?"
        raise ValueError(
            f"{text!r} is not MODULE:ATTRIBUTE: expected dotted Python names without "
            f"dunders, e.g. {EXAMPLE}{hint}"
        )
    return Target(module, attribute)


def load_app(target: Target, *, app_dir: str, factory: bool = False) -> App:
    """Import ``target`` with ``app_dir`` first on ``sys.path`` and return its App.

    Raises :class:`AppLoadError` (see the module docstring) or the
    :class:`~aiosqsq.errors.ConfigurationError` that building the App raised.
    """
    sys.path.insert(0, os.path.abspath(app_dir))
    module = _import(target, app_dir)
    found: object = module
    for name in target.attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise AppLoadError(
                f"module {target.module!r} has no attribute {target.attribute!r}; "
                f"{_apps_in(module)}"
            ) from None
    if factory:
        found = _call_factory(target, found)
    if not isinstance(found, App):
        hint = ""
        if inspect.isfunction(found):
            hint = f", or pass --factory if {target} builds and returns one"
        raise AppLoadError(
            f"{str(target)!r} is not an aiosqsq App (its type is {type(found).__name__}): "
            f"name the App instance{hint}; {_apps_in(module)}"
        )
    return found


def _import(target: Target, app_dir: str) -> ModuleType:
    name = target.module
    try:
        return importlib.import_module(name)
    except ConfigurationError:
        raise
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(f"{missing}.")):
            raise AppLoadError(
                f"could not import module {name!r}: no module named {missing!r} in the app "
                f"directory ({app_dir!r}) or on the Python path; check the name, or pass "
                "--app-dir with the directory that contains it"
            ) from None
        raise AppLoadError(
            f"could not import module {name!r}: it imports a module that cannot be found "
            f"({exc}); install it in the environment aiosqsq runs in, or fix the import",
            cause=_without_machinery(exc),
        ) from None
    except Exception as exc:
        raise AppLoadError(
            f"could not import module {name!r}: it raised {type(exc).__name__}: {exc}",
            cause=_without_machinery(exc),
        ) from None


def _call_factory(target: Target, found: object) -> object:
    if isinstance(found, App):
        raise AppLoadError(f"{str(target)!r} is an App, not a factory: drop --factory")
    if not callable(found):
        raise AppLoadError(
            f"{str(target)!r} is not callable (its type is {type(found).__name__}): "
            "--factory needs a function that returns an App"
        )
    try:
        app = found()
    except ConfigurationError:
        raise
    except Exception as exc:
        raise AppLoadError(
            f"calling the factory {str(target)!r} raised {type(exc).__name__}: {exc}",
            cause=_without_machinery(exc),
        ) from None
    if inspect.iscoroutine(app):
        app.close()  # never awaited: close it rather than leave a warning behind
    if not isinstance(app, App):
        raise AppLoadError(
            f"the factory {str(target)!r} returned {type(app).__name__}, not an aiosqsq App "
            "(it must be a plain function that returns the App)"
        )
    return app


def _apps_in(module: ModuleType) -> str:
    names = sorted(name for name, value in vars(module).items() if isinstance(value, App))
    if not names:
        return f"module {module.__name__!r} has no App at module level"
    return f"App instances in module {module.__name__!r}: {', '.join(names)}"


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(
        part.isidentifier()
        and not keyword.iskeyword(part)
        and not (part.startswith("__") and part.endswith("__"))
        for part in text.split(".")
    )


_MACHINERY = frozenset({__file__, importlib.__file__})


def _without_machinery(exc: BaseException) -> BaseException:
    """``exc`` with the leading frames of this module and importlib cut from its traceback,
    so that the traceback shown starts in the user's code."""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename not in _MACHINERY and not filename.startswith("<frozen importlib"):
            break
        tb = tb.tb_next
    return exc.with_traceback(tb)
