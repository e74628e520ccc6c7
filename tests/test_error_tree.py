"""The exception tree: every aiosqsq error is an ``AiosqsqError``, drawn in ``aiosqsq.errors``."""

from __future__ import annotations

import importlib

import pytest

import aiosqsq.errors
from aiosqsq.errors import AiosqsqError
from aiosqsq.importer import AppLoadError, Target, load_app

# Every module of the package that may define an error of its own.
MODULES = ("aiosqsq", "aiosqsq.codec", "aiosqsq.importer", "aiosqsq.cli")


def _subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_the_errors_docstring_draws_every_aiosqsq_error() -> None:
    for module in MODULES:
        importlib.import_module(module)
    doc = aiosqsq.errors.__doc__ or ""
    tree = doc.split("The tree::", 1)[1]
    names = {
        cls.__name__ for cls in _subclasses(AiosqsqError) if cls.__module__.startswith("aiosqsq")
    }
    assert "AppLoadError" in names
    assert [name for name in sorted(names) if f" {name} " not in tree] == []


def test_an_app_that_cannot_be_loaded_is_an_aiosqsq_error() -> None:
    with pytest.raises(AiosqsqError) as raised:
        load_app(Target("no_such_module_here", "app"), app_dir=".")
    assert isinstance(raised.value, AppLoadError)
