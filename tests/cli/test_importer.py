"""``aiosqsq run MODULE:ATTRIBUTE``: every way loading fails, its exit code and its exact text.

The modules are written into the test's own current directory (``--app-dir`` defaults to
``.``); ``tests/cli/apps/factories.py`` holds the factories.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.harness import APPS_DIR, Record, records, run_cli

MEMAPP = """\
from aiosqsq import App

app = App()


@app.handler()
async def handle(payload: str) -> None:
    pass
"""

MODULES = {
    "memapp.py": MEMAPP,
    "broken.py": "import json\nx = 1 / 0\n",
    "needsdep.py": "import not_installed_dep\n",
    "holder.py": "class Holder:\n    pass\n\n\nholder = Holder()\n",
}

NOT_FOUND = (
    "no module named {missing!r} in the app directory ('.') or on the Python path; check "
    "the name, or pass --app-dir with the directory that contains it"
)


@pytest.fixture(autouse=True)
def _modules() -> None:
    for name, text in MODULES.items():
        Path(name).write_text(text)


def _error(target: str, *options: str) -> Record:
    """Run the command, expect exit code 3 and one error line from the CLI: return it."""
    result = run_cli("run", target, *options)
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    (error,) = [r for r in records(result.stderr) if r.level == "ERROR"]
    assert error.logger == "aiosqsq.cli"
    return error


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "nothere:app",
            "could not import module 'nothere': " + NOT_FOUND.format(missing="nothere"),
        ),
        (
            "nopkg.worker:app",
            "could not import module 'nopkg.worker': " + NOT_FOUND.format(missing="nopkg"),
        ),
        (
            "memapp:ap",
            "module 'memapp' has no attribute 'ap'; App instances in module 'memapp': app",
        ),
        (
            "holder:holder.app",
            "module 'holder' has no attribute 'holder.app'; module 'holder' has no App at "
            "module level",
        ),
        (
            "memapp:handle",
            "'memapp:handle' is not an aiosqsq App (its type is function): name the App "
            "instance, or pass --factory if memapp:handle builds and returns one; "
            "App instances in module 'memapp': app",
        ),
        (
            "os:system",
            "'os:system' is not an aiosqsq App (its type is builtin_function_or_method): name "
            "the App instance; module 'os' has no App at module level",
        ),
    ],
)
def test_a_missing_module_attribute_or_app_is_named(target: str, message: str) -> None:
    assert _error(target).message == message


def test_a_missing_dependency_of_the_module_is_told_apart_with_its_traceback() -> None:
    result = run_cli("run", "needsdep:app")
    assert result.returncode == 3
    assert [r.message for r in records(result.stderr) if r.level == "ERROR"] == [
        "could not import module 'needsdep': it imports a module that cannot be found "
        "(No module named 'not_installed_dep'); install it in the environment aiosqsq runs "
        "in, or fix the import"
    ]
    traceback = result.stderr.split("\n", 1)[1]
    assert traceback.startswith("  Traceback (most recent call last):\n")
    assert f'File "{Path("needsdep.py").resolve()}", line 1, in <module>' in traceback
    assert "ModuleNotFoundError: No module named 'not_installed_dep'" in traceback


def test_an_exception_while_importing_shows_the_users_traceback_only() -> None:
    result = run_cli("run", "broken:app")
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert records(lines[0])[0].message == (
        "could not import module 'broken': it raised ZeroDivisionError: division by zero"
    )
    assert lines[1:4] == [
        "  Traceback (most recent call last):",
        f'    File "{Path("broken.py").resolve()}", line 2, in <module>',
        "      x = 1 / 0",
    ]
    assert lines[-1] == "  ZeroDivisionError: division by zero"
    assert "importlib" not in result.stderr
    assert "aiosqsq/importer.py" not in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "factories:make_nothing",
            "the factory 'factories:make_nothing' returned NoneType, not an aiosqsq App "
            "(it must be a plain function that returns the App)",
        ),
        (
            "factories:settings",
            "'factories:settings' is not callable (its type is dict): --factory needs a "
            "function that returns an App",
        ),
        ("memapp:app", "'memapp:app' is an App, not a factory: drop --factory"),
    ],
)
def test_factory_errors(target: str, message: str) -> None:
    options = ("--factory", "--app-dir", str(APPS_DIR) if "factories" in target else ".")
    assert _error(target, *options).message == message


def test_a_factory_that_raises_shows_its_traceback() -> None:
    result = run_cli("run", "factories:make_broken", "--factory", "--app-dir", str(APPS_DIR))
    assert result.returncode == 3
    assert records(result.stderr)[0].message == (
        "calling the factory 'factories:make_broken' raised RuntimeError: no factory today"
    )
    assert f'File "{APPS_DIR / "factories.py"}"' in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: no factory today")


def test_a_factory_that_returns_an_app_runs_it() -> None:
    result = run_cli(
        "run", "factories:make_app", "--factory", "--app-dir", str(APPS_DIR), "--burst"
    )
    assert result.returncode == 0, result.stderr
    assert "consuming default with factories.make_app.<locals>.handle" in result.stderr


@pytest.mark.parametrize("target", ["memapp", "memapp:", ":app", "memapp:app.__class__", "a;b:c"])
def test_a_malformed_target_is_bad_usage(target: str) -> None:
    result = run_cli("run", target)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for 'MODULE:ATTRIBUTE': {target!r} is not MODULE:ATTRIBUTE: "
        "expected dotted Python names without dunders, e.g. myproject.worker:app"
    )


@pytest.mark.parametrize(
    ("target", "meant"), [("worker.app", "worker:app"), ("pkg.worker.app", "pkg.worker:app")]
)
def test_a_dot_for_the_colon_is_pointed_out(target: str, meant: str) -> None:
    result = run_cli("run", target)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for 'MODULE:ATTRIBUTE': {target!r} is not MODULE:ATTRIBUTE: "
        f"expected dotted Python names without dunders, e.g. myproject.worker:app; did you "
        f"mean {meant!r}?"
    )


def test_the_app_dir_alone_decides_where_the_module_is_imported_from() -> None:
    Path("src").mkdir()
    Path("src/insrc.py").write_text(MEMAPP)
    assert run_cli("run", "insrc:app", "--app-dir", "src", "--burst").returncode == 0
    # memapp.py is in the current directory, which python -m would put on sys.path:
    # with --app-dir src, it is not.
    assert _error("memapp:app", "--app-dir", "src").message == (
        "could not import module 'memapp': no module named 'memapp' in the app directory "
        "('src') or on the Python path; check the name, or pass --app-dir with the "
        "directory that contains it"
    )


def test_a_stray_module_in_the_app_dir_cannot_shadow_a_dependency() -> None:
    # reliability.md T29: run as documented (`python -P -m aiosqsq` or the aiosqsq script),
    # aiosqsq's own dependencies are imported before --app-dir joins the import path.
    Path("orjson.py").write_text("open('canary', 'w').close()\n")
    result = run_cli("run", "memapp:app", "--burst", python_flags=("-P",))
    assert result.returncode == 0, result.stderr
    assert not Path("canary").exists()
