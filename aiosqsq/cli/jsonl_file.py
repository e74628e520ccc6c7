"""The JSON Lines file of ``aiosqsq send --file``: read in bounded pieces, checked whole
before anything is sent.

A file may be anything: 150 MB on one line, ``/dev/zero``, a binary file given by mistake.
So nothing is held but one line at a time, and never more of a line than a message can be
(a :class:`SizeLimit`: SQS's 1 MiB, or ``QUEUE_LARGE_PAYLOAD_MAX_BYTES`` when bodies go
through S3): a longer line is measured while it is skipped, never loaded. A NUL byte or
bytes that are not UTF-8 stop the reading at once (:class:`NotText`): such a file is not
JSON Lines, and reading on would only list its "lines".

:func:`check` reads the whole file and says what is wrong with it, every bad line up to
:data:`MAX_LISTED`; :func:`bodies` reads it again for sending, and checks each line again
(a file can change in between: the sending stops there). Standard input, which cannot be
read twice, is copied to a temporary file first (:func:`rereadable`). ``name``, in the
messages, is the file's name as the caller wants it shown.
"""

from __future__ import annotations

import codecs
import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final

import orjson

from aiosqsq.backends.base import MAX_MESSAGE_BYTES, message_size
from aiosqsq.backends.limits import message_problem

MAX_LISTED: Final = 20  # bad lines named in the error; the rest are counted
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class SizeLimit:
    """The largest body a line may be, in bytes, and what sets it (``described`` follows
    "over" in the error: ``SQS's limit of 1048576``)."""

    max_bytes: int
    described: str


SQS_LIMIT: Final = SizeLimit(MAX_MESSAGE_BYTES, f"SQS's limit of {MAX_MESSAGE_BYTES}")


class NotText(ValueError):
    """The file holds a NUL byte or bytes that are not UTF-8; ``str()`` names the line."""


class BadFile(ValueError):
    """Lines of the file cannot be sent: ``str()`` says so in one line, ``listed`` names
    them when there are several (``line 3, column 9, is not JSON (...)``)."""

    def __init__(self, message: str, listed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.listed = list(listed)


@contextlib.contextmanager
def rereadable(stream: BinaryIO) -> Iterator[BinaryIO]:
    """``stream`` itself when it can seek, else a temporary copy of it (standard input)."""
    if stream.seekable():
        yield stream
        return
    with tempfile.TemporaryFile() as copy:
        shutil.copyfileobj(stream, copy, _CHUNK)
        copy.seek(0)
        yield copy


def check(stream: BinaryIO, name: str, limit: SizeLimit = SQS_LIMIT) -> int:
    """The number of bodies in the file; raises :class:`BadFile` naming every line that
    cannot be sent (up to :data:`MAX_LISTED`), or :class:`NotText`."""
    bad: list[str] = []
    found = total = 0
    for number, line in _lines(stream, name, limit):
        total += 1
        if (problem := problem_of(line, limit)) is not None:
            found += 1
            if len(bad) < MAX_LISTED:
                bad.append(f"line {number}{problem}")
    if found == 1:
        raise BadFile(f"{name} {bad[0]}")
    if found:
        more = [f"... and {found - MAX_LISTED} more"] if found > MAX_LISTED else []
        raise BadFile(f"{found} lines of {name} cannot be sent", [*bad, *more])
    if not total:
        raise BadFile(f"{name} has no lines to send")
    return total


def bodies(
    stream: BinaryIO, name: str, expected: int, limit: SizeLimit = SQS_LIMIT
) -> Iterator[tuple[int, str]]:
    """(line number, body) for each of the ``expected`` bodies :func:`check` counted, read
    again from the start; raises :class:`BadFile` if the file changed since."""
    stream.seek(0)
    for sent, (number, line) in enumerate(_lines(stream, name, limit)):
        if sent == expected:
            raise BadFile(f"{name} changed after it was checked: line {number} is new")
        problem = problem_of(line, limit)
        if problem is not None or not isinstance(line, str):
            raise BadFile(f"{name} changed after it was checked: line {number}{problem}")
        yield number, line


def problem_of(line: str | int, limit: SizeLimit = SQS_LIMIT) -> str | None:
    """Why this line cannot be sent as a body (``line`` an int: the size of a line too
    long to load), phrased to follow ``line N``; None when it can be sent."""
    if isinstance(line, int):
        return f" cannot be sent: it is {line} bytes, over {limit.described}"
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f", column {exc.colno}, is not JSON ({exc.msg})"
    if (problem := body_problem(line, limit)) is not None:
        return f" cannot be sent: {problem}"
    return None


def body_problem(text: str, limit: SizeLimit = SQS_LIMIT) -> str | None:
    """Why this body cannot be sent whatever the queue (its size, SQS's rules), or None."""
    size = message_size(text, {})
    if size > limit.max_bytes:
        return f"it is {size} bytes, over {limit.described}"
    found = message_problem(text, {})
    return None if found is None else f"{found[0]}: {found[1]}"


def _lines(stream: BinaryIO, name: str, limit: SizeLimit) -> Iterator[tuple[int, str | int]]:
    """(line number, text without its line end) for each non-blank line, or (line number,
    size in bytes) for a line longer than ``limit``, read in pieces and not kept."""
    line_limit = limit.max_bytes + 2  # a body at the limit and its "\r\n"
    number = 0
    while chunk := stream.readline(line_limit):
        number += 1
        decoder = codecs.getincrementaldecoder("utf-8")()
        if chunk.endswith(b"\n") or len(chunk) < line_limit:
            text = _decoded(decoder, chunk, name, number, final=True).rstrip("\r\n")
            if text.strip():
                yield number, text
            continue
        size = len(chunk)
        _decoded(decoder, chunk, name, number, final=False)
        while not chunk.endswith(b"\n") and (chunk := stream.readline(_CHUNK)):
            size += len(chunk)
            _decoded(decoder, chunk, name, number, final=False)
        yield number, size - len(chunk) + len(chunk.rstrip(b"\r\n"))


def _decoded(
    decoder: codecs.IncrementalDecoder, chunk: bytes, name: str, number: int, *, final: bool
) -> str:
    if b"\0" in chunk:
        raise NotText(f"{name} line {number} holds a NUL byte: it is not a JSON Lines file")
    try:
        return decoder.decode(chunk, final=final)
    except UnicodeDecodeError as exc:
        raise NotText(
            f"{name} line {number} is not UTF-8 text ({exc.reason}): it is not a JSON Lines file"
        ) from None
