"""The README's "Running" and "Operating queues" as a newcomer follows them on a laptop: the
export line it shows is the one ``--local`` prints, and every operator command it lists
works as written against ``aiosqsq local``, in a shell where that line was pasted."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from aiosqsq.cli.local import reach_lines
from tests.cli.harness import CliProcess, cli_env
from tests.cli.test_local import free_port, in_shell
from tests.helpers import slow

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    (section,) = [s for s in re.split(r"^## ", README, flags=re.M) if s.startswith(title)]
    return section


def test_the_readmes_export_lines_are_the_ones_local_prints() -> None:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", _section("Running"), flags=re.S | re.M)
    shown = [text for kind, text in blocks if "export QUEUE_" in text and not kind]
    assert shown == ["\n".join(reach_lines("http://127.0.0.1:8411", "default")) + "\n"]


def test_operating_queues_works_as_written_against_aiosqsq_local() -> None:
    (block,) = re.findall(r"```sh\n(.*?)```", _section("Operating queues"), flags=re.S)
    commands = [shlex.split(line.split("  #")[0]) for line in block.splitlines()]
    assert all(command[0] == "aiosqsq" for command in commands)
    Path("orders.jsonl").write_text('{"id": 1}\n{"id": 2}\n\n{"id": 3}\n')
    seen: dict[str, str] = {}
    with CliProcess("local", "--port", str(free_port())) as server:
        (export_line,) = server.wait_for(r"^export ")
        for command in commands:
            args = command[1:]
            if "--watch" in args:
                seen["watch"] = _first_watch_table(export_line, args)
                continue
            answer = "y\n" if args[:2] == ["queues", "purge"] else None
            result = in_shell(export_line, *args, stdin_text=answer)
            assert result.returncode == 0, (args, result.stdout, result.stderr)
            seen[" ".join(args[:2])] = result.stdout
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert seen["queues create"].startswith("created queue orders")
    assert "orders" in seen["watch"]
    assert seen["send orders"] == "sent 3 messages to orders\n"
    assert seen["dlq inspect"] == "no visible messages in orders-dlq\n"
    assert seen["queues purge"] == "purged queue orders (3 messages)\n"


def _first_watch_table(export_line: str, args: list[str]) -> str:
    """Run a ``--watch`` command until its first table is out, then Ctrl-C it (exit 0)."""
    command = shlex.join(["exec", sys.executable, "-m", "aiosqsq", *args])
    process = subprocess.Popen(
        ["bash", "-c", f"{export_line}\n{command}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # ends at EOF: the process exits or is stopped below
            lines.append(line)
            if line.lstrip().startswith("orders "):
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=slow(30)) == 0, "".join(lines)
        return "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=slow(30))
        if process.stdout is not None:
            process.stdout.close()
