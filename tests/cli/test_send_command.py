"""``aiosqsq send`` in subprocesses against moto: every message accounted for, every bad input
named, and nothing sent when the input is bad."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from aiosqsq.cli import ExitCode
from tests.cli.conftest import MotoQueues
from tests.cli.harness import run_cli

USAGE = "Usage: aiosqsq send [OPTIONS] NAME [BODY]\nTry 'aiosqsq send --help' for help.\n\n"


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _bodies(moto_queues: MotoQueues, url: str) -> list[str]:
    return sorted(message.body for message in moto_queues.receive_all(url))


def test_send_one_body_as_given(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    url = moto_queues.create()
    result = run_cli("send", _name(url), 'plain text, {"not": json}', env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert (result.stdout, result.stderr) == (f"sent 1 message to {_name(url)}\n", "")
    assert _bodies(moto_queues, url) == ['plain text, {"not": json}']


def test_send_a_file_in_batches(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    url = moto_queues.create()
    lines = [json.dumps({"id": i, "text": "é"}, ensure_ascii=False) for i in range(25)]
    Path("orders.jsonl").write_text("\n".join(lines[:12]) + "\n\n" + "\n".join(lines[12:]) + "\n")
    result = run_cli("send", _name(url), "--file", "orders.jsonl", env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert (result.stdout, result.stderr) == (f"sent 25 messages to {_name(url)}\n", "")
    assert _bodies(moto_queues, url) == sorted(lines)  # each line as written, once


def test_a_bad_json_line_sends_nothing(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    url = moto_queues.create()
    Path("orders.jsonl").write_text('{"id": 1}\n{"id": 2}\n{"id": 3,}\n{"id": 4}\n')
    result = run_cli("send", _name(url), "--file", "orders.jsonl", env=sqs_env)
    assert result.returncode == ExitCode.USAGE
    assert result.stdout == ""
    assert result.stderr == (
        f"{USAGE}Error: Invalid value for '--file': orders.jsonl line 3, column 9, is not "
        "JSON (trailing comma is not allowed): nothing was sent\n"
    )
    assert moto_queues.depth(url).visible == 0


def test_a_line_over_sqs_limit_sends_nothing(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create()
    big = json.dumps("x" * 1_048_576)
    Path("orders.jsonl").write_text(f'"small"\n{big}\n')
    result = run_cli("send", _name(url), "--file", "orders.jsonl", env=sqs_env)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--file': orders.jsonl line 2 cannot be sent: it is "
        "1048578 bytes, over SQS's limit of 1048576: nothing was sent"
    )
    assert moto_queues.depth(url).visible == 0


def test_bad_arguments_send_nothing(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    url = moto_queues.create()
    Path("empty.jsonl").write_text("\n\n")
    cases = {
        (): "Error: give a BODY to send, or --file FILE.jsonl (not both)",
        ("body", "--file", "empty.jsonl"): (
            "Error: give a BODY to send, or --file FILE.jsonl (not both)"
        ),
        ("--file", "empty.jsonl"): (
            "Error: Invalid value for '--file': empty.jsonl has no lines to send: nothing was sent"
        ),
        ("",): (
            "Error: Invalid value for BODY: InvalidParameterValue: the message body must not be "
            "empty: nothing was sent"
        ),
    }
    for args, error in cases.items():
        result = run_cli("send", _name(url), *args, env=sqs_env)
        assert result.returncode == ExitCode.USAGE, args
        assert result.stderr.splitlines()[-1] == error
    assert moto_queues.depth(url).visible == 0


def test_lines_the_queue_refuses_are_listed_and_the_rest_sent(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    # moto refuses the whole batch for one message over the queue's MaximumMessageSize;
    # the command then sends that batch's messages one by one to find it.
    url = moto_queues.create_plain({"MaximumMessageSize": "1024"})
    lines = [json.dumps(i) for i in range(25)]
    lines[6] = json.dumps("y" * 2000)
    Path("orders.jsonl").write_text("\n".join(lines) + "\n")
    result = run_cli("send", _name(url), "--file", "orders.jsonl", env=sqs_env)
    assert result.returncode == 1
    assert result.stdout == f"sent 24 of 25 messages to {_name(url)}\n"
    assert result.stderr.splitlines() == [
        "refused: line 7: InvalidParameterValue: sqs:SendMessageBatch on queue "
        f"'{url}' failed: One or more parameters are invalid. Reason: Message must be "
        "shorter than 1024 bytes.",
        "Error: 1 message not sent: line 7",
    ]
    assert _bodies(moto_queues, url) == sorted(lines[:6] + lines[7:])


def test_sending_to_a_missing_queue(sqs_env: dict[str, str]) -> None:
    name = f"cli-missing-{uuid.uuid4().hex[:8]}"
    result = run_cli("send", name, "hello", env=sqs_env)
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert result.stderr.splitlines() == [
        f"Error: AWS.SimpleQueueService.NonExistentQueue: queue {name!r} does not exist "
        "(sqs:GetQueueUrl refused): create it or check the name, region and account"
    ]


def test_a_fifo_queue_needs_a_group_id(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    url = moto_queues.create_plain({"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    refused = run_cli("send", _name(url), "hello", env=sqs_env)
    assert refused.returncode == ExitCode.USAGE
    assert refused.stderr.splitlines()[-1] == (
        f"Error: queue {_name(url)!r} is a FIFO queue: pass --group-id"
    )
    sent = run_cli("send", _name(url), "hello", "--group-id", "g1", env=sqs_env)
    assert sent.returncode == ExitCode.OK, sent.stderr
    (message,) = moto_queues.receive_all(url)
    assert (message.body, message.group_id) == ("hello", "g1")


def test_a_binary_file_sends_nothing_and_says_so_in_one_line(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create()
    Path("image.png").write_bytes(b'{"id": 1}\n\x89PNG\r\n\x1a\n' + bytes(range(256)) * 40)
    Path("zeros").write_bytes(b"\0" * 3_000_000)  # /dev/zero's first 3 MB, one "line"
    for path, problem in [
        ("image.png", "line 2 is not UTF-8 text (invalid start byte)"),
        ("zeros", "line 1 holds a NUL byte"),
    ]:
        result = run_cli("send", _name(url), "--file", path, env=sqs_env)
        assert result.returncode == ExitCode.USAGE
        assert result.stderr == (
            f"{USAGE}Error: Invalid value for '--file': {path} {problem}: it is not a JSON "
            "Lines file: nothing was sent\n"
        )
    assert moto_queues.depth(url).visible == 0


def test_every_bad_line_is_named_up_to_twenty_and_nothing_is_sent(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create()
    lines = ['{"id": 1}', json.dumps("x" * 3_000_000), '"ok"']  # line 2: 3 MB, never loaded
    lines += [f'{{"id": {i},}}' for i in range(24)]  # lines 4 to 27: trailing commas
    Path("orders.jsonl").write_text("\n".join(lines) + "\n")
    result = run_cli("send", _name(url), "--file", "orders.jsonl", env=sqs_env)
    assert result.returncode == ExitCode.USAGE
    listed = [
        "  line 2 cannot be sent: it is 3000002 bytes, over SQS's limit of 1048576",
        *[
            f"  line {n}, column {8 + len(str(n - 4))}, is not JSON (trailing comma is not allowed)"
            for n in range(4, 23)
        ],
        "  ... and 5 more",
    ]
    assert result.stderr.splitlines()[3:] == [
        "Error: Invalid value for '--file': 25 lines of orders.jsonl cannot be sent: nothing "
        "was sent",
        *listed,
    ]
    assert moto_queues.depth(url).visible == 0


def test_standard_input_is_checked_then_sent(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create()
    lines = [json.dumps({"id": i}) for i in range(12)]
    result = run_cli(
        "send", _name(url), "--file", "-", env=sqs_env, stdin_text="\n".join(lines) + "\n"
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout == f"sent 12 messages to {_name(url)}\n"
    assert _bodies(moto_queues, url) == sorted(lines)
    bad = run_cli("send", _name(url), "--file", "-", env=sqs_env, stdin_text='{"id": 1}\n{\n')
    assert bad.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--file': <stdin> line 2, column 2, is not JSON (unexpected "
        "end of data): nothing was sent"
    )
