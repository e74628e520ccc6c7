"""What the operator commands share: an error line never carries a secret."""

from __future__ import annotations

import pytest

from aiosqsq.cli.ops import fail
from tests.test_redaction import KEY_ID, SECRET, TOKEN


def test_fail_masks_secrets_and_escapes_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    message = (
        f"queue '{url}' refused key {KEY_ID} token {TOKEN} via "
        f"https://user:{SECRET}@proxy.example:3128\n2026-01-01 forged"
    )

    assert fail(message, 5) == 5

    (line,) = capsys.readouterr().err.splitlines()
    for secret in (KEY_ID, TOKEN, SECRET, TOKEN[:8], SECRET[:8]):
        assert secret not in line
    assert line.startswith(f"Error: queue '{url}' refused key AKIA*** token ***#")
    assert line.endswith(" via https://***@proxy.example:3128\\n2026-01-01 forged")
