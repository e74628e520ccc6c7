"""``--workers N`` and ``--reload``: worker processes started, shared, restarted and stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from tests.cli.conftest import MotoQueues
from tests.cli.harness import AIOSQSQ, APPS_DIR, CliProcess, cli_env, run_cli, wait_for_lines
from tests.cli.test_importer import MEMAPP

CONSUMING = r"\[\d+\] aiosqsq: consuming "
STARTED = r"aiosqsq\.supervisor: worker (?P<slot>\d) started \(pid (?P<pid>\d+)\)"


def _started(worker: CliProcess, count: int) -> list[tuple[int, int]]:
    lines = worker.wait_for(STARTED, count=count)
    matches = [re.search(STARTED, line) for line in lines]
    return [(int(m["slot"]), int(m["pid"])) for m in matches if m]


def test_two_workers_share_one_queue_without_duplicates_and_stop_on_sigterm(
    moto_queues: MotoQueues, sqs_env: dict[str, str], ledger: Path
) -> None:
    url = moto_queues.create()
    total = 100
    moto_queues.send(url, [str(i) for i in range(total)])
    env = {**sqs_env, "QUEUE_SQS_QUEUE_URL": url, "LEDGER_PATH": str(ledger)}
    env["HANDLER_DELAY_S"] = "0.05"  # long enough for both workers to get a share
    args = ("run", "ledger:app", "--app-dir", str(APPS_DIR), "--workers", "2")
    with CliProcess(*args, "--concurrency", "5", env=env) as supervisor:
        workers = {pid for _, pid in _started(supervisor, 2)}
        lines = wait_for_lines(ledger, total)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait() == ExitCode.OK
    handled = [json.loads(line) for line in lines]
    assert sorted(int(line["seq"]) for line in handled) == list(range(total))  # no duplicate
    assert {line["pid"] for line in handled} == workers  # both took a share
    records = supervisor.records()
    stops = [
        r.pid for r in records if r.message.startswith("SIGTERM received: stopping gracefully")
    ]
    assert sorted(stops) == sorted(workers)  # forwarded once to each
    assert sum(r.message.startswith("stopped after ") for r in records) == 2
    assert not [r for r in records if "received again" in r.message]
    assert records[-1].message == "all workers stopped"
    depth = moto_queues.depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)


def test_a_worker_killed_with_sigkill_is_restarted() -> None:
    Path("memapp.py").write_text(MEMAPP)
    with CliProcess("run", "memapp:app", "--workers", "2") as supervisor:
        first = dict(_started(supervisor, 2))
        supervisor.wait_for(CONSUMING, count=2)
        killed = first[1]
        os.kill(killed, signal.SIGKILL)
        supervisor.wait_for(
            rf"worker 1 \(pid {killed}\) was killed by SIGKILL; restarting it in 0\.5 s "
            r"\(1 of 4 deaths allowed within 60 s\)$"
        )
        (_, restarted) = _started(supervisor, 3)[2]
        assert restarted not in first.values()
        supervisor.wait_for(CONSUMING, count=3)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait() == ExitCode.OK


def test_workers_that_keep_dying_make_the_supervisor_give_up() -> None:
    result = run_cli("run", "dying:app", "--app-dir", str(APPS_DIR), "--workers", "2")
    assert result.returncode == ExitCode.WORKERS_KEEP_DYING
    restarts = re.findall(r"restarting it in (.+)$", result.stderr, re.MULTILINE)
    assert restarts == [
        "0.5 s (1 of 4 deaths allowed within 60 s)",
        "1 s (2 of 4 deaths allowed within 60 s)",
        "2 s (3 of 4 deaths allowed within 60 s)",
        "4 s (4 of 4 deaths allowed within 60 s)",
    ]
    assert re.search(
        r"worker \d \(pid \d+\) was killed by SIGKILL; workers died 5 times within 60 s: "
        r"giving up$",
        result.stderr,
        re.MULTILINE,
    )


def test_an_exit_a_restart_cannot_fix_stops_every_worker() -> None:
    result = run_cli("run", "nothere:app", "--workers", "2")
    assert result.returncode == ExitCode.APP_NOT_LOADED
    assert re.search(
        r"worker \d \(pid \d+\) exited with code 3 \(the app cannot be loaded\): a restart "
        r"cannot fix that; stopping the other workers$",
        result.stderr,
        re.MULTILINE,
    )
    assert "restarting it" not in result.stderr


def test_reload_restarts_the_worker_on_a_change_and_waits_for_a_fix_after_a_crash() -> None:
    module = Path("reloaded.py")
    module.write_text("x = 1 / 0\n")
    with CliProcess("run", "reloaded:app", "--reload") as supervisor:
        supervisor.wait_for(
            r"worker 1 \(pid \d+\) exited with code 3 \(the app cannot be loaded\): waiting for "
            r"a change to restart it$"
        )
        module.write_text(MEMAPP)
        supervisor.wait_for(r"reloaded\.py changed: restarting the worker$")
        supervisor.wait_for(CONSUMING)
        module.write_text(MEMAPP + "\n# edited\n")
        supervisor.wait_for(r"SIGTERM received: stopping gracefully", timeout_s=30)
        supervisor.wait_for(CONSUMING, count=2)
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait() == ExitCode.OK
    assert supervisor.records()[-1].message == "all workers stopped"


def test_burst_workers_that_drained_their_queues_stay_stopped() -> None:
    Path("memapp.py").write_text(MEMAPP)
    result = run_cli("run", "memapp:app", "--workers", "2", "--burst")
    assert result.returncode == ExitCode.OK, result.stderr
    drained = re.findall(
        r"worker (\d) \(pid \d+\) drained its queues and stopped$", result.stderr, re.MULTILINE
    )
    assert sorted(drained) == ["1", "2"]
    assert "restarting it" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [[str(Path(sys.executable).parent / "aiosqsq")], [*AIOSQSQ[:1], "-P", *AIOSQSQ[1:]]],
    ids=["script", "python-P"],
)
def test_workers_never_import_a_module_planted_in_the_current_directory(
    command: list[str],
) -> None:
    # Started either safe way, the supervisor starts its workers safely too: a click.py in
    # the current directory (here also the app directory) is never imported by anyone.
    Path("memapp.py").write_text(MEMAPP)
    Path("click.py").write_text(
        "import os\n\nopen(f'planted-{os.getpid()}', 'w').close()\n"
        "raise SystemExit('the planted click.py ran')\n"
    )
    args = ("run", "memapp:app", "--workers", "2", "--burst")
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, env=cli_env(), timeout=60, check=False
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert not list(Path().glob("planted-*"))
    assert len(re.findall(CONSUMING, result.stderr)) == 2


def test_the_supervisor_imports_nothing_of_the_command_line() -> None:
    # Imports run one way: the cli uses the supervisor, never the reverse.
    check = (
        "import sys, aiosqsq.supervisor; "
        "print(sorted(m for m in sys.modules if m.startswith('aiosqsq.cli')))"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-c", check], capture_output=True, text=True, check=True
    )
    assert result.stdout == "[]\n"
