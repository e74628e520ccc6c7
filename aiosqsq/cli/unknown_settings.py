"""``QUEUE_*`` variables that nothing reads: a misspelt setting (``QUEUE_WAIT_TIME=3`` for
``QUEUE_WAIT_TIME_SECONDS``) is otherwise ignored without a word, and the worker runs with
the default the user meant to change.

The known names are given by the caller: every ``QueueSettings`` field's variable and the
command line's own (``QUEUE_APP_DIR``, ``QUEUE_LOG_LEVEL``...), so a setting added to either
is known with no list to keep here. Names are compared upper-cased, as ``QueueSettings``
reads them.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping

from aiosqsq.control_chars import escape_controls
from aiosqsq.settings import ENV_PREFIX

_MAX_NAME_CHARS = 100  # a variable's name is printed: bound what a hostile one costs


def unknown_variables(
    environment: Mapping[str, str | None], dotenv: Mapping[str, str | None], dotenv_path: str
) -> list[tuple[str, str]]:
    """(name, where) of each ``QUEUE_*`` variable that is neither a setting nor an option;
    ``where`` is ``the environment`` or ``dotenv_path``. Call through :func:`warnings_for`."""
    found: dict[str, str] = {}
    for name in dotenv:
        found[name.upper()] = dotenv_path
    for name in environment:
        found[name.upper()] = "the environment"
    return sorted((name, where) for name, where in found.items() if name.startswith(ENV_PREFIX))


def warnings_for(
    known: Collection[str],
    environment: Mapping[str, str | None] | None = None,
    dotenv: Mapping[str, str | None] | None = None,
    dotenv_path: str = ".env",
) -> list[str]:
    """One warning line for each ``QUEUE_*`` variable not in ``known``, naming the closest
    known name (``difflib``) when there is one."""
    environment = os.environ if environment is None else environment
    known_upper = sorted({name.upper() for name in known})
    lines = []
    for name, where in unknown_variables(environment, dotenv or {}, dotenv_path):
        if name in known_upper:
            continue
        # Without the prefix every name shares: QUEUE_COLOUR is not close to QUEUE_POLLERS.
        suffixes = [known_name.removeprefix(ENV_PREFIX) for known_name in known_upper]
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1)
        advice = (
            f"did you mean {ENV_PREFIX}{close[0]}?"
            if close
            else "the settings are listed in the README and by aiosqsq run --help"
        )
        shown = escape_controls(
            name[:_MAX_NAME_CHARS] + ("..." if len(name) > _MAX_NAME_CHARS else "")
        )
        lines.append(f"{shown} (in {where}) is not an aiosqsq setting: ignored; {advice}")
    return lines
