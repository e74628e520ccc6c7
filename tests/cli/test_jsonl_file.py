"""Reading ``send --file``'s JSON Lines: a file that changes between the check and the
sending stops the sending where it changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiosqsq.cli import jsonl_file


@pytest.mark.parametrize(
    ("changed", "error"),
    [
        ('{"id": 1}\n{"id": 2,}\n', "orders.jsonl changed after it was checked: line 2, column 9, "
         "is not JSON (trailing comma is not allowed)"),
        ('{"id": 1}\n{"id": 2}\n{"id": 3}\n', "orders.jsonl changed after it was checked: line 3 "
         "is new"),
    ],
    ids=["a line went bad", "a line was added"],
)  # fmt: skip
def test_a_file_that_changed_after_its_check_stops_the_sending(changed: str, error: str) -> None:
    path = Path("orders.jsonl")
    path.write_text('{"id": 1}\n\n{"id": 2}\n')
    with path.open("rb") as stream:
        total = jsonl_file.check(stream, "orders.jsonl")
        assert (total, list(jsonl_file.bodies(stream, "orders.jsonl", total))) == (
            2,
            [(1, '{"id": 1}'), (3, '{"id": 2}')],
        )
        path.write_text(changed)
        read = jsonl_file.bodies(stream, "orders.jsonl", total)
        assert next(read) == (1, '{"id": 1}')
        with pytest.raises(jsonl_file.BadFile) as raised:
            list(read)
    assert str(raised.value) == error
