"""``aiosqsq queues create|stats|purge`` in subprocesses against moto: what the user sees
(the text, the exit status) and what the queues hold afterwards."""

from __future__ import annotations

import json
import signal
import uuid

import anyio
import pytest

from aiosqsq.backends.base import SendEntry
from aiosqsq.backends.sqs_admin import SQSAdmin
from aiosqsq.cli import ExitCode
from aiosqsq.errors import AccessError, BackendError, QueueNotFoundError
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import CliProcess, run_cli

NOT_FOUND = (
    "Error: AWS.SimpleQueueService.NonExistentQueue: queue {name!r} does not exist "
    "(sqs:GetQueueUrl refused): create it or check the name, region and account"
)


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def test_the_memory_backend_is_refused_as_a_configuration_error() -> None:
    result = run_cli("queues", "stats")
    assert result.returncode == ExitCode.CONFIGURATION
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: configuration error: QUEUE_BACKEND is 'memory': the memory backend's queues "
        "live inside the process that made them, so this command cannot see them; set "
        "QUEUE_BACKEND=sqs, and QUEUE_SQS_ENDPOINT_URL for an emulator (e.g. "
        "http://127.0.0.1:4566) or QUEUE_AWS_REGION and credentials for Amazon SQS"
    ]


def test_an_invalid_setting_names_its_variable(sqs_env: dict[str, str]) -> None:
    env = {**sqs_env, "QUEUE_SQS_ENDPOINT_URL": "http://sqs.example.com"}
    result = run_cli("queues", "stats", env=env)
    assert result.returncode == ExitCode.CONFIGURATION
    assert result.stderr.splitlines() == [
        "Error: configuration error: QUEUE_SQS_ENDPOINT_URL='http://sqs.example.com' is "
        "invalid: plain http is allowed only for a loopback host (127.0.0.0/8, localhost, "
        "::1); use https"
    ]


def test_create_makes_the_queue_its_dead_letter_queue_and_the_redrive_policy(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    name = f"cli-new-{uuid.uuid4().hex[:8]}"
    args = ("queues", "create", name, "--max-receive", "3", "--visibility-timeout", "40")
    result = run_cli(*args, env=sqs_env)
    dlq_url = moto_queues.adopt(f"{name}-dlq")
    url = moto_queues.adopt(name)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.splitlines() == [
        f"created queue {name}-dlq: {dlq_url}",
        f"created queue {name}: {url}",
        f"dead letters of {name} go to {name}-dlq after 3 receives",
    ]
    info = moto_queues.info(url)
    assert (info.dead_letter_queue_url, info.max_receive_count) == (dlq_url, 3)
    assert (info.visibility_timeout_s, info.fifo) == (40, False)
    assert moto_queues.info(dlq_url).message_retention_s == 1_209_600

    again = run_cli(*args, env=sqs_env)
    assert again.returncode == ExitCode.OK, again.stderr
    assert again.stdout.splitlines()[:2] == [
        f"queue {name}-dlq exists: {dlq_url}",
        f"queue {name} exists: {url}",
    ]

    other = run_cli("queues", "create", name, "--visibility-timeout", "50", env=sqs_env)
    assert other.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert other.stderr.splitlines() == [
        f"Error: QueueAlreadyExists: queue {name!r} exists with other attributes "
        "(VisibilityTimeout is 40, not 50; maxReceiveCount is 3, not 5): pass the options it "
        "was created with, or change its attributes with SetQueueAttributes (the AWS console "
        "or CLI)"
    ]
    assert moto_queues.info(url).visibility_timeout_s == 40  # unchanged


def test_create_a_fifo_queue(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    name = f"cli-new-{uuid.uuid4().hex[:8]}"
    result = run_cli("queues", "create", f"{name}.fifo", "--fifo", env=sqs_env)
    dlq_url = moto_queues.adopt(f"{name}-dlq.fifo")
    url = moto_queues.adopt(f"{name}.fifo")
    assert result.returncode == ExitCode.OK, result.stderr
    info = moto_queues.info(url)
    assert (info.fifo, info.dead_letter_queue_url, info.max_receive_count) == (True, dlq_url, 5)


def test_create_refuses_bad_usage_before_creating_anything(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    name = f"cli-new-{uuid.uuid4().hex[:8]}"
    cases = {
        ("--fifo",): f"Error: Invalid value for NAME: a FIFO queue's name must end in .fifo: "
        f"{name}.fifo",
        ("--no-dlq", "--max-receive", "3"): (
            "Error: --no-dlq cannot be combined with --dlq or --max-receive"
        ),
        ("--dlq", "bad name"): "Error: Invalid value for --dlq: 'bad name' is not a queue "
        "name: 1-80 characters from A-Z, a-z, 0-9, '-' and '_' (a FIFO queue's ending in .fifo)",
    }
    for options, error in cases.items():
        result = run_cli("queues", "create", name, *options, env=sqs_env)
        assert result.returncode == ExitCode.USAGE
        assert result.stderr.splitlines()[-1] == error
    with pytest.raises(QueueNotFoundError):
        moto_queues.adopt(name)


def test_stats_counts_each_queue_and_its_dead_letters(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create()
    info = moto_queues.info(url)
    assert info.dead_letter_queue_url is not None
    moto_queues.send(url, ["a", "b", "c"])
    moto_queues.send_entries(url, [SendEntry("0", "later", delay_s=600)])
    moto_queues.send(info.dead_letter_queue_url, ["dead"])

    result = run_cli("queues", "stats", _name(url), "--json", env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert json.loads(result.stdout) == [
        {
            "queue": _name(url),
            "url": url,
            "visible": 3,
            "in_flight": 0,
            "delayed": 1,
            "age_of_oldest_s": None,
            "dead_letter_queue": f"{_name(url)}-dlq",
            "dead_letter_visible": 1,
        }
    ]

    # No NAME: every queue (ListQueues), as a table.
    table = run_cli("queues", "stats", env={**sqs_env, "COLUMNS": "200"})
    assert table.returncode == ExitCode.OK, table.stderr
    header, _, *rows = table.stdout.splitlines()
    assert header.split() == [
        "queue", "┃", "visible", "┃", "in", "flight", "┃", "delayed", "┃", "dead-letter",
        "queue", "┃", "dead", "letters",
    ]  # fmt: skip
    cells = [row.split() for row in rows]
    assert [_name(url), "│", "3", "│", "0", "│", "1", "│", f"{_name(url)}-dlq", "│", "1"] in cells
    assert [f"{_name(url)}-dlq", "│", "1", "│", "0", "│", "0", "│", "-", "│", "-"] in cells


def test_stats_of_a_missing_queue(sqs_env: dict[str, str]) -> None:
    name = f"cli-missing-{uuid.uuid4().hex[:8]}"
    result = run_cli("queues", "stats", name, env=sqs_env)
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert result.stderr.splitlines() == [NOT_FOUND.format(name=name)]


def test_stats_age_samples_and_says_what_it_costs(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create()
    moto_queues.send(url, ["a", "b"])
    result = run_cli("queues", "stats", _name(url), "--age", "--json", env=sqs_env)
    assert result.returncode == ExitCode.OK, result.stderr
    (row,) = json.loads(result.stdout)
    assert 0 <= row["age_of_oldest_s"] < 60
    assert (row["visible"], row["in_flight"]) == (2, 0)  # still visible: visibility 0
    # The cost, as --help says: each sampled message was received once more.
    assert sorted(m.receive_count for m in moto_queues.receive_all(url)) == [2, 2]
    assert "Each sampled message's receive count goes up by one" in " ".join(
        run_cli("queues", "stats", "--help").stdout.split()
    )


def test_stats_age_with_watch_is_refused(sqs_env: dict[str, str]) -> None:
    result = run_cli("queues", "stats", "--age", "--watch", env=sqs_env)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.splitlines()[-1] == (
        "Error: --age cannot be combined with --watch: each sample raises the receive count "
        "of the messages it sees, and repeated samples would move them to the dead-letter queue"
    )


def test_stats_watch_refreshes_until_ctrl_c(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create()
    args = ("queues", "stats", _name(url), "--watch", "--json", "--interval", "0.5")
    with CliProcess(*args, env=sqs_env) as watching:
        watching.wait_for(r'"visible": 0')
        moto_queues.send(url, ["a"])
        watching.wait_for(r'"visible": 1')
        watching.send_signal(signal.SIGINT)
        assert watching.wait() == ExitCode.OK
    assert "Traceback" not in watching.output


def test_purge_asks_first(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    url = moto_queues.create()
    moto_queues.send(url, ["a", "b"])
    question = f"Delete all 2 messages of queue {_name(url)!r}? This cannot be undone. [y/N]: "

    declined = run_cli("queues", "purge", _name(url), env=sqs_env, stdin_text="n\n")
    assert declined.returncode == 1
    assert declined.stderr == f"{question}Aborted: nothing was purged.\n"
    no_answer = run_cli("queues", "purge", _name(url), env=sqs_env, stdin_text="")
    assert no_answer.returncode == 1
    assert no_answer.stderr == f"{question}\nAborted: nothing was purged.\n"
    assert moto_queues.depth(url).visible == 2

    confirmed = run_cli("queues", "purge", _name(url), env=sqs_env, stdin_text="y\n")
    assert confirmed.returncode == ExitCode.OK, confirmed.stderr
    assert confirmed.stdout == f"purged queue {_name(url)} (2 messages)\n"
    assert moto_queues.depth(url).visible == 0


def test_purge_yes_does_not_ask(moto_queues: MotoQueues, sqs_env: dict[str, str]) -> None:
    url = moto_queues.create()
    moto_queues.send(url, ["a"])
    result = run_cli("queues", "purge", _name(url), "--yes", env=sqs_env, stdin_text="")
    assert result.returncode == ExitCode.OK, result.stderr
    assert (result.stdout, result.stderr) == (f"purged queue {_name(url)} (1 message)\n", "")
    assert moto_queues.depth(url).visible == 0


def test_purge_a_missing_queue(sqs_env: dict[str, str]) -> None:
    name = f"cli-missing-{uuid.uuid4().hex[:8]}"
    result = run_cli("queues", "purge", name, "--yes", env=sqs_env)
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert result.stderr.splitlines() == [NOT_FOUND.format(name=name)]


def test_a_second_purge_within_a_minute_names_sqs_rule(
    moto_queues: MotoQueues, sqs_env: dict[str, str]
) -> None:
    url = moto_queues.create_plain()
    assert run_cli("queues", "purge", _name(url), "--yes", env=sqs_env).returncode == ExitCode.OK
    again = run_cli("queues", "purge", _name(url), "--yes", env=sqs_env)
    assert again.returncode == 1
    assert (again.stdout, again.stderr.splitlines()) == (
        "",
        [
            f"Error: queue {_name(url)!r} was purged less than 60 seconds ago, and SQS allows "
            "one purge of a queue every 60 seconds (PurgeQueueInProgress): that purge may "
            "still be deleting messages; try again in a minute"
        ],
    )


def test_a_second_purge_is_its_own_error_not_denied_access(
    moto_queues: MotoQueues, sqs_settings: QueueSettings
) -> None:
    """What a program calling SQSAdmin sees: a BackendError naming SQS's 60 s rule, never
    an AccessError telling the operator to change an IAM policy that is fine."""
    url = moto_queues.create_plain()

    async def purge_twice() -> BackendError:
        admin = SQSAdmin(sqs_settings)
        async with admin:
            await admin.purge_queue(url)
            with pytest.raises(BackendError) as refused:
                await admin.purge_queue(url)
            return refused.value

    error = anyio.run(purge_twice)
    assert not isinstance(error, AccessError)
    assert (error.code.removeprefix("AWS.SimpleQueueService."), error.retryable) == (
        "PurgeQueueInProgress",
        False,
    )
    assert error.message == (
        f"sqs:PurgeQueue on queue {url!r} was refused: SQS allows one purge of a queue every "
        f"60 seconds ({error.code}); the last purge may still be deleting messages: try again "
        "in a minute"
    )


def test_piped_tables_are_not_squeezed_and_watch_stamps_each_refresh(
    moto_queues: MotoQueues, sqs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    url = moto_queues.create_plain({"VisibilityTimeout": "30"})
    long_name = f"{_name(url)}-" + "x" * 60  # 75 characters: SQS allows 80
    long_url = moto_queues.create_plain(name=long_name)

    table = run_cli("queues", "stats", _name(url), long_name, env=sqs_env)
    assert table.returncode == ExitCode.OK, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == [_name(url), long_name]  # each on one line
    assert moto_queues.depth(long_url).visible == 0

    args = ("queues", "stats", _name(url), "--watch", "--interval", "0.5")
    with CliProcess(*args, env=sqs_env) as watching:
        stamps = watching.wait_for(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", count=2)
        watching.send_signal(signal.SIGINT)
        assert watching.wait() == ExitCode.OK
    assert stamps[0] <= stamps[1]
    assert watching.output.count(_name(url)) >= 2  # a table after each stamp
