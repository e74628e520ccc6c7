"""``aiosqsq run``: exit codes, where options come from, and stopping on a signal."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from tests.cli.harness import APPS_DIR, CliProcess, records, run_cli
from tests.cli.test_importer import MEMAPP


@pytest.fixture(autouse=True)
def _memapp() -> None:
    Path("memapp.py").write_text(MEMAPP)


def _errors(stderr: str) -> list[str]:
    return [r.message for r in records(stderr) if r.level == "ERROR"]


def test_exit_codes_are_documented_in_help() -> None:
    result = run_cli("run", "--help")
    assert result.returncode == 0
    table = result.stdout.split("Exit codes:\n", 1)[1]
    assert table.splitlines() == [f"    {code.value}  {code.meaning}" for code in ExitCode]
    assert [code.value for code in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_reload_with_workers_is_bad_usage() -> None:
    result = run_cli("run", "memapp:app", "--reload", "--workers", "2")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.splitlines()[-1] == (
        "Error: --reload runs one worker: it cannot be combined with --workers 2"
    )


@pytest.mark.parametrize(
    ("env", "options"),
    [({"QUEUE_CONCURRENCY": "0"}, ()), ({"QUEUE_CONCURRENCY": "7"}, ("--concurrency", "0"))],
    ids=["environment", "flag-over-environment"],
)
def test_an_invalid_setting_is_a_configuration_error(
    env: dict[str, str], options: tuple[str, ...]
) -> None:
    result = run_cli("run", "memapp:app", *options, env=env)
    assert result.returncode == ExitCode.CONFIGURATION
    assert _errors(result.stderr) == [
        "configuration error: QUEUE_CONCURRENCY='0' is invalid: expected an integer from 1 to 10000"
    ]


def test_an_app_without_handlers_is_a_configuration_error() -> None:
    Path("empty.py").write_text("from aiosqsq import App\n\napp = App()\n")
    result = run_cli("run", "empty:app")
    assert result.returncode == ExitCode.CONFIGURATION
    assert _errors(result.stderr) == [
        "configuration error: the app has no handlers: decorate an async function with "
        "@app.handler()"
    ]


def test_a_missing_queue_is_lost_access(sqs_env: dict[str, str]) -> None:
    name = f"cli-missing-{uuid.uuid4().hex[:8]}"
    result = run_cli("run", "memapp:app", env={**sqs_env, "QUEUE_SQS_QUEUE_URL": name})
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert _errors(result.stderr) == [
        "lost access to the queue: AWS.SimpleQueueService.NonExistentQueue: queue "
        f"{name!r} does not exist (sqs:GetQueueUrl refused): create it or check the name, "
        "region and account"
    ]


def test_an_unexpected_error_exits_1_with_its_traceback() -> None:
    result = run_cli("run", "crashing:app", "--app-dir", str(APPS_DIR))
    assert result.returncode == ExitCode.UNEXPECTED_ERROR
    assert _errors(result.stderr) == ["the app stopped on an unexpected error"]
    assert "Traceback (most recent call last):" in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: the consumer broke")


def test_a_flag_wins_over_the_environment_which_wins_over_dotenv() -> None:
    # One setting (--concurrency, read by QueueSettings) and two of the command's own
    # options (--log-format, --burst, read by click), from each of the three places.
    Path(".env").write_text("QUEUE_CONCURRENCY=3\nQUEUE_LOG_FORMAT=json\nQUEUE_BURST=true\n")

    from_dotenv = run_cli("run", "memapp:app")
    assert from_dotenv.returncode == 0, from_dotenv.stderr
    lines = [json.loads(line) for line in from_dotenv.stderr.splitlines()]
    assert any("concurrency=3 " in line["message"] for line in lines)

    env = {"QUEUE_CONCURRENCY": "4", "QUEUE_LOG_FORMAT": "text"}
    from_env = run_cli("run", "memapp:app", env=env)
    assert from_env.returncode == 0, from_env.stderr
    assert any("concurrency=4 " in r.message for r in records(from_env.stderr))

    from_flags = run_cli("run", "memapp:app", "--concurrency", "5", "--log-format", "json", env=env)
    assert from_flags.returncode == 0, from_flags.stderr
    lines = [json.loads(line) for line in from_flags.stderr.splitlines()]
    assert any("concurrency=5 " in line["message"] for line in lines)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_gracefully_and_exits_0(signum: signal.Signals) -> None:
    with CliProcess("run", "memapp:app") as worker:
        worker.wait_for(r"aiosqsq: consuming default with memapp\.handle")
        worker.send_signal(signum)
        assert worker.wait() == ExitCode.OK
    messages = [r.message for r in worker.records()]
    assert f"{signum.name} received: stopping gracefully (again to force)" in messages
    assert messages[-1].startswith("stopped after ")


def test_dotenv_may_not_choose_the_app_dir_the_emulator_or_the_wire_logs() -> None:
    Path("elsewhere").mkdir()
    Path("elsewhere", "memapp.py").write_text("open('planted', 'w').close()\n" + MEMAPP)
    Path(".env").write_text(
        "QUEUE_APP_DIR=elsewhere\nQUEUE_LOCAL=true\nQUEUE_WIRE_DEBUG=true\nQUEUE_CONCURRENCY=3\n"
    )
    result = run_cli("run", "memapp:app", "--burst")
    assert result.returncode == ExitCode.OK, result.stderr
    assert not Path("planted").exists()  # memapp.py was imported from ., not elsewhere/
    dotenv = Path(".env").resolve()
    lines = records(result.stderr)
    assert [r.message for r in lines if r.level != "INFO" and not _in_memory(r.message)] == [
        f"{dotenv} sets {variable}: ignored, as a .env file may not choose what code runs or "
        f"what is logged; pass {flag}, or set {variable} in the environment"
        for variable, flag in [
            ("QUEUE_APP_DIR", "--app-dir"),
            ("QUEUE_WIRE_DEBUG", "--wire-debug"),
            ("QUEUE_LOCAL", "--local"),
        ]
    ]
    messages = [r.message for r in lines]
    assert messages[3] == f"QUEUE_* settings also read from {dotenv}"  # then the worker starts
    assert any("backend=memory concurrency=3 " in m for m in messages)  # the rest of it counts
    assert not [m for m in messages if "local SQS" in m]


MEMORY_WARNING = (
    "QUEUE_BACKEND=memory: queues live inside this process only, so no other process can "
    "send to or receive from them, and what is still queued is lost when it exits. For SQS "
    "set QUEUE_BACKEND=sqs and QUEUE_SQS_QUEUE_URL; to try SQS on this machine, run the "
    "worker with 'aiosqsq run APP --local'"
)


def _in_memory(message: str) -> bool:
    return message == MEMORY_WARNING


def test_the_environment_may_still_choose_them() -> None:
    Path("elsewhere").mkdir()
    Path("elsewhere", "memapp.py").write_text("open('planted', 'w').close()\n" + MEMAPP)
    env = {"QUEUE_APP_DIR": "elsewhere", "QUEUE_WIRE_DEBUG": "true"}
    result = run_cli("run", "memapp:app", "--burst", env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert Path("planted").exists()
    assert [r.message for r in records(result.stderr) if r.level == "WARNING"] == [
        "wire debug logging is on: the AWS SDK logs every request and response (bodies and "
        "receipt handles included; key material is masked); do not use it in production",
        MEMORY_WARNING,  # memapp runs on the memory backend: the worker says so, once
    ]


def test_a_queue_variable_that_is_no_setting_is_warned_about_once_naming_the_closest() -> None:
    Path(".env").write_text("QUEUE_CONCURENCY=4\nQUEUE_COLOUR=blue\nQUEUE_LOG_LEVEL=info\n")
    env = {"QUEUE_WAIT_TIME": "3", "QUEUE_LOCAL_PORT": "0", "QUEUE_HTTP_PORT": "0"}
    result = run_cli("run", "memapp:app", "--burst", "--workers", "2", env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    dotenv = Path(".env").resolve()
    warnings = [r.message for r in records(result.stderr) if r.level == "WARNING"]
    assert [m for m in warnings if not _in_memory(m)] == [
        f"QUEUE_COLOUR (in {dotenv}) is not an aiosqsq setting: ignored; the settings are "
        "listed in the README and by aiosqsq run --help",
        f"QUEUE_CONCURENCY (in {dotenv}) is not an aiosqsq setting: ignored; did you mean "
        "QUEUE_CONCURRENCY?",
        "QUEUE_WAIT_TIME (in the environment) is not an aiosqsq setting: ignored; did you "
        "mean QUEUE_WAIT_TIME_SECONDS?",
    ]  # once, by the supervisor: not again by each worker
