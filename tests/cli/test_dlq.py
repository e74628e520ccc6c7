"""``aiosqsq dlq inspect|redrive`` in subprocesses against moto: nothing consumed by a look,
nothing deleted before its copy is confirmed, every message accounted for."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from aiosqsq.backends.base import MessageAttributes, SendEntry
from aiosqsq.cli import ExitCode
from aiosqsq.message import ERROR_ATTRIBUTE, SOURCE_ATTRIBUTE
from tests.cli.conftest import MotoQueues
from tests.cli.harness import CliProcess, MoveTaskProxy, run_cli


@pytest.fixture
def dead_letters(moto_queues: MotoQueues) -> tuple[str, str]:
    """(queue URL, its dead-letter queue URL), the latter holding 25 messages."""
    url = moto_queues.create()
    dlq_url = moto_queues.info(url).dead_letter_queue_url
    assert dlq_url is not None
    moto_queues.send(dlq_url, [f"dead-{i:02d}" for i in range(25)])
    return url, dlq_url


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _not_found(name: str) -> str:
    return (
        f"Error: AWS.SimpleQueueService.NonExistentQueue: queue {name!r} does not exist "
        "(sqs:GetQueueUrl refused): create it or check the name, region and account"
    )


def test_inspect_shows_error_attributes_and_hands_the_messages_back(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create_plain()
    attributes: MessageAttributes = {
        ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": "ValidationError: id: missing"},
        SOURCE_ATTRIBUTE: {"DataType": "String", "StringValue": "orders 1234"},
    }
    moto_queues.send_entries(
        url, [SendEntry("0", '{"sku": "A"}', message_attributes=attributes), SendEntry("1", "x")]
    )
    result = run_cli("dlq", "inspect", _name(url), "--json", env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    rows = sorted(json.loads(result.stdout), key=lambda row: row["body"])
    assert [(r["body"], r["error"], r["source"], r["receive_count"]) for r in rows] == [
        ("x", None, None, 1),
        ('{"sku": "A"}', "ValidationError: id: missing", "orders 1234", 1),
    ]
    depth = moto_queues.depth(url)
    assert (depth.visible, depth.in_flight) == (2, 0)  # visible again at once

    table = run_cli("dlq", "inspect", _name(url), "--limit", "1", env={**sqs_env, "COLUMNS": "200"})
    assert table.returncode == ExitCode.OK, table.stderr
    assert table.stdout.split()[:12] == [
        "message", "id", "┃", "sent", "at", "┃", "receives", "┃", "error", "┃", "source", "┃",
    ]  # fmt: skip
    assert moto_queues.depth(url).visible == 2


def _inspect_table(sqs_env: dict[str, str], url: str) -> str:
    result = run_cli("dlq", "inspect", _name(url), env={**sqs_env, "COLUMNS": "400"})
    assert (result.returncode, result.stderr) == (ExitCode.OK, ""), result.stderr
    return result.stdout


def test_inspect_shows_a_body_that_looks_like_markup_as_written(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create_plain()
    moto_queues.send(url, ['{"p": "[/usr/bin]"}'])  # a closing tag that Rich cannot match
    assert '{"p": "[/usr/bin]"}' in _inspect_table(sqs_env, url)


def test_inspect_prints_attributes_literally_with_control_characters_escaped(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    # A sender chooses all of this: markup that forges a link, a carriage return that hides
    # what precedes it, and a C1 CSI (0x9b), which some terminals read as ESC [.
    attributes: MessageAttributes = {
        ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": "[link=https://evil]x[/link]"},
        SOURCE_ATTRIBUTE: {"DataType": "String", "StringValue": "[bold]orders[/bold]\x9b2J"},
    }
    url = moto_queues.create_plain()
    moto_queues.send_entries(url, [SendEntry("0", "fine\rhidden\nnext", 0, attributes)])

    table = _inspect_table(sqs_env, url)

    assert "[link=https://evil]x[/link]" in table
    assert "[bold]orders[/bold]\\x9b2J" in table
    assert "fine\\rhidden\\nnext" in table
    assert not {"\r", "\x9b", "\x1b"} & set(table)


def test_inspect_to_a_pipe_keeps_each_id_and_body_on_one_line(
    moto_queues: MotoQueues, sqs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    url = moto_queues.create_plain()
    body = json.dumps({"order": "x" * 40})  # 55 characters: shown whole
    moto_queues.send(url, [body])
    result = run_cli("dlq", "inspect", _name(url), env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    (message,) = moto_queues.receive_all(url)
    (row,) = [line for line in result.stdout.splitlines() if message.message_id in line]
    assert body in row


def test_inspect_an_empty_and_a_missing_queue(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create_plain()
    empty = run_cli("dlq", "inspect", _name(url), env=sqs_env)
    assert (empty.returncode, empty.stdout) == (
        ExitCode.OK,
        f"no visible messages in {_name(url)}\n",
    )
    name = f"cli-missing-{uuid.uuid4().hex[:8]}"
    missing = run_cli("dlq", "inspect", name, env=sqs_env)
    assert missing.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert missing.stderr.splitlines() == [_not_found(name)]


def test_redrive_keeps_message_attributes_and_stops_at_max(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    source, target = moto_queues.create_plain(), moto_queues.create_plain()
    attributes: MessageAttributes = {ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": "boom"}}
    moto_queues.send_entries(
        source, [SendEntry(str(i), f"m{i}", message_attributes=attributes) for i in range(5)]
    )
    args = ("dlq", "redrive", _name(source), "--to", _name(target), "--max", "3")
    result = run_cli(*args, env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout == f"moved 3 messages from {_name(source)} to {_name(target)}\n"
    moved = moto_queues.receive_all(target)
    assert [m.message_attributes[ERROR_ATTRIBUTE]["StringValue"] for m in moved] == ["boom"] * 3
    assert moto_queues.depth(source).visible == 2


def test_redrive_copies_to_the_source_queue_where_move_tasks_are_missing(
    dead_letters: tuple[str, str], moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url, dlq_url = dead_letters
    result = run_cli("dlq", "redrive", _name(dlq_url), env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stderr == (
        "this endpoint has no message move tasks (ListMessageMoveTasks: 500): moving by copy\n"
    )
    assert result.stdout == f"moved 25 messages from {_name(dlq_url)} to {_name(url)}\n"
    assert moto_queues.depth(dlq_url).visible == 0
    moved = sorted(message.body for message in moto_queues.receive_all(url))
    assert moved == [f"dead-{i:02d}" for i in range(25)]  # each once, to its source queue


@pytest.fixture
def move_task_proxy(moto_endpoint: str) -> Iterator[Callable[..., MoveTaskProxy]]:
    """Starts a :class:`MoveTaskProxy` in front of moto (``tasks=`` for its answer)."""
    started: list[MoveTaskProxy] = []

    def start(tasks: Sequence[Mapping[str, object]] = ()) -> MoveTaskProxy:
        started.append(MoveTaskProxy(moto_endpoint, tasks))
        return started[-1]

    yield start
    for proxy in started:
        proxy.close()


def test_redrive_starts_sqs_move_task_where_the_endpoint_has_it(
    dead_letters: tuple[str, str],
    moto_queues: MotoQueues,
    sqs_env: dict[str, str],
    move_task_proxy: Callable[..., MoveTaskProxy],
) -> None:
    url, dlq_url = dead_letters
    proxy = move_task_proxy()
    env = {**sqs_env, "QUEUE_SQS_ENDPOINT_URL": proxy.endpoint_url}
    args = ("dlq", "redrive", _name(dlq_url), "--to", _name(url), "--rate", "50")
    result = run_cli(*args, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.splitlines() == [
        f"started SQS's message move task from {_name(dlq_url)} to {_name(url)} "
        f"(handle {MoveTaskProxy.HANDLE})",
        f"SQS moves them in the background: follow with aiosqsq queues stats {_name(dlq_url)}",
    ]
    dlq_arn, arn = moto_queues.info(dlq_url).arn, moto_queues.info(url).arn
    assert proxy.calls == [
        ("ListMessageMoveTasks", {"SourceArn": dlq_arn, "MaxResults": 10}),
        (
            "StartMessageMoveTask",
            {"SourceArn": dlq_arn, "DestinationArn": arn, "MaxNumberOfMessagesPerSecond": 50},
        ),
    ]
    assert moto_queues.depth(dlq_url).visible == 25  # the task, not this command, moves them


def test_redrive_to_a_missing_queue_moves_nothing(
    dead_letters: tuple[str, str], moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    _, dlq_url = dead_letters
    name = f"cli-missing-{uuid.uuid4().hex[:8]}"
    result = run_cli("dlq", "redrive", _name(dlq_url), "--to", name, "--copy", env=sqs_env)
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert (result.stdout, result.stderr.splitlines()) == ("", [_not_found(name)])
    depth = moto_queues.depth(dlq_url)
    assert (depth.visible, depth.in_flight) == (25, 0)


def test_redrive_without_a_target_it_can_find(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    lonely = moto_queues.create_plain()
    moto_queues.send(lonely, ["a"])
    result = run_cli("dlq", "redrive", _name(lonely), "--copy", env=sqs_env)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.splitlines()[-1] == (
        f"Error: no queue has {_name(lonely)} as its dead-letter queue: pass --to NAME"
    )
    assert moto_queues.depth(lonely).visible == 1


def test_messages_the_target_refuses_stay_in_the_dead_letter_queue(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    source = moto_queues.create_plain()
    target = moto_queues.create_plain({"MaximumMessageSize": "1024"})
    moto_queues.send(source, ["small-1", "y" * 2000, "small-2"])
    args = ("dlq", "redrive", _name(source), "--to", _name(target), "--copy")
    result = run_cli(*args, env=sqs_env)
    assert result.returncode == 1
    assert result.stdout == f"moved 2 messages from {_name(source)} to {_name(target)}\n"
    (refused, summary) = result.stderr.splitlines()
    message_id = summary.rsplit(": ", 1)[-1]
    assert refused == (
        f"refused: {message_id}: InvalidParameterValue: sqs:SendMessageBatch on queue "
        f"'{target}' failed: One or more parameters are invalid. Reason: Message must be "
        "shorter than 1024 bytes."
    )
    assert summary == f"Error: 1 message not moved, still in {_name(source)}: {message_id}"
    depth = moto_queues.depth(source)
    assert (depth.visible, depth.in_flight) == (1, 0)  # visible again at the end
    assert sorted(m.body for m in moto_queues.receive_all(target)) == ["small-1", "small-2"]
    (left,) = moto_queues.receive_all(source)
    assert (left.message_id, left.body) == (message_id, "y" * 2000)


def test_redrive_does_not_start_a_second_move_task(
    dead_letters: tuple[str, str],
    moto_queues: MotoQueues,
    sqs_env: dict[str, str],
    move_task_proxy: Callable[..., MoveTaskProxy],
) -> None:
    _, dlq_url = dead_letters
    proxy = move_task_proxy([{"Status": "RUNNING", "TaskHandle": "running-handle"}])
    env = {**sqs_env, "QUEUE_SQS_ENDPOINT_URL": proxy.endpoint_url}
    result = run_cli("dlq", "redrive", _name(dlq_url), env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: a message move task from {_name(dlq_url)} is already running (handle "
        "running-handle); SQS runs one at a time per queue: wait for it to finish, or cancel it"
    ]
    assert [operation for operation, _ in proxy.calls] == ["ListMessageMoveTasks"]
    assert moto_queues.depth(dlq_url).visible == 25


INT_APP = """\
from aiosqsq import App

app = App()


@app.handler()
async def handle(payload: int) -> None:
    pass
"""


def test_inspect_shows_the_original_id_the_worker_logged_beside_the_copys_own(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    Path("intapp.py").write_text(INT_APP)
    url = moto_queues.create()
    name = _name(url)
    env = {**sqs_env, "QUEUE_SQS_QUEUE_URL": url}
    with CliProcess("run", "intapp:app", env=env) as worker:
        worker.wait_for(r"aiosqsq: consuming ")
        moto_queues.send_entries(url, [SendEntry("0", "not a number")])
        (line,) = worker.wait_for(r"was moved to the dead-letter queue as ")
    moved = re.search(
        rf"message (\S+) on {name} was moved to the dead-letter queue as (\S+):", line
    )
    assert moved is not None, line
    original_id, copy_id = moved.groups()
    dlq_name = f"{name}-dlq"

    result = run_cli("dlq", "inspect", dlq_name, "--json", env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    ((row),) = json.loads(result.stdout)
    assert (row["message_id"], row["original_message_id"], row["source_queue"]) == (
        copy_id,
        original_id,
        name,
    )
    assert row["source"] == f"{name} {original_id}"

    table = run_cli("dlq", "inspect", dlq_name, env={**sqs_env, "COLUMNS": "400"})
    assert table.returncode == ExitCode.OK, table.stderr
    header, _, cells = table.stdout.splitlines()[:3]
    assert [column.strip() for column in header.split("┃")][:6] == [
        "message id", "sent at", "receives", "error", "source", "original id",
    ]  # fmt: skip
    values = [cell.strip() for cell in cells.split("│")]
    assert (values[0], values[4], values[5]) == (copy_id, name, original_id)
