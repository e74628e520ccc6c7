"""QueueSettings: sources, defaults, and the exact text of every configuration error."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from aiosqsq import ConfigurationError, QueueSettings
from aiosqsq.cli.command import run

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_need_no_configuration() -> None:
    settings = QueueSettings()
    assert settings.backend == "memory"
    assert settings.default_queue == "default"
    assert (settings.wait_time_seconds, settings.max_messages) == (5, 10)
    assert settings.aws_access_key_id is None  # the default AWS credential chain applies


def test_environment_and_dotenv_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("QUEUE_CONCURRENCY=7\nQUEUE_WAIT_TIME_SECONDS=3\n")
    monkeypatch.setenv("QUEUE_WAIT_TIME_SECONDS", "20")  # the environment wins over .env
    settings = QueueSettings()
    assert (settings.concurrency, settings.wait_time_seconds) == (7, 20)
    assert QueueSettings(concurrency=2).concurrency == 2  # arguments win over both


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "QUEUE_BACKEND",
            "kafka",
            "QUEUE_BACKEND='kafka' is invalid: expected one of: memory, sqs",
        ),
        (
            "QUEUE_WAIT_TIME_SECONDS",
            "21",
            "QUEUE_WAIT_TIME_SECONDS='21' is invalid: expected an integer from 0 to 20",
        ),
        (
            "QUEUE_MAX_MESSAGES",
            "0",
            "QUEUE_MAX_MESSAGES='0' is invalid: expected an integer from 1 to 10",
        ),
        (
            "QUEUE_CONCURRENCY",
            "many",
            "QUEUE_CONCURRENCY='many' is invalid: expected an integer from 1 to 10000",
        ),
        (
            "QUEUE_VISIBILITY_TIMEOUT",
            "43201",
            "QUEUE_VISIBILITY_TIMEOUT='43201' is invalid: expected an integer from 0 to 43200 "
            "(seconds)",
        ),
        (
            "QUEUE_SHUTDOWN_TIMEOUT",
            "-1",
            "QUEUE_SHUTDOWN_TIMEOUT='-1' is invalid: expected a number of seconds >= 0",
        ),
    ],
)
def test_a_bad_value_names_its_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        QueueSettings()
    assert str(raised.value) == message


def test_sqs_backend_requires_the_queue_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_BACKEND", "sqs")
    with pytest.raises(ConfigurationError) as raised:
        QueueSettings()
    assert str(raised.value) == (
        "QUEUE_SQS_QUEUE_URL is required when QUEUE_BACKEND=sqs: set it to the default "
        "queue's URL or name, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    )


def test_several_errors_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_MAX_MESSAGES", "11")
    monkeypatch.setenv("QUEUE_WAIT_TIME_SECONDS", "x")
    with pytest.raises(ConfigurationError) as raised:
        QueueSettings()
    assert "QUEUE_MAX_MESSAGES='11'" in str(raised.value)
    assert "QUEUE_WAIT_TIME_SECONDS='x'" in str(raised.value)


def test_secrets_never_appear_in_reprs_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = "SENTINEL-SECRET-9f2c"
    monkeypatch.setenv("QUEUE_AWS_SECRET_ACCESS_KEY", sentinel)
    monkeypatch.setenv("QUEUE_AWS_SESSION_TOKEN", sentinel)
    settings = QueueSettings()
    assert sentinel not in repr(settings)
    assert sentinel not in str(settings)
    assert sentinel not in settings.model_dump_json()
    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == sentinel
    monkeypatch.setenv("QUEUE_CONCURRENCY", "0")
    with pytest.raises(ConfigurationError) as raised:
        QueueSettings()
    assert sentinel not in str(raised.value)


def test_env_example_lists_every_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*(QUEUE_[A-Z0-9_]+)=", example, flags=re.MULTILINE))
    expected = {f"QUEUE_{name.upper()}" for name in QueueSettings.model_fields}
    expected |= {  # the command's own options
        param.envvar
        for param in run.params
        if isinstance(param, click.Option) and isinstance(param.envvar, str)
    }
    assert listed == expected


def test_an_empty_secret_in_the_environment_hides_the_one_in_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("QUEUE_AWS_SESSION_TOKEN=from-dotenv\n")
    assert QueueSettings().aws_session_token is not None
    monkeypatch.setenv("QUEUE_AWS_SESSION_TOKEN", "")
    assert QueueSettings().aws_session_token is None
