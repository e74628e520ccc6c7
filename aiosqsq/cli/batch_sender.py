"""Send many messages in batches without losing track of any: which were sent, which SQS
refused, and why. Used by ``aiosqsq send --file`` and by the copying ``dlq redrive``.

* :func:`pack` (from :mod:`aiosqsq.backends.limits`) groups entries into batches of at
  most 10 entries and 1 MiB, SQS's caps: the one packing rule the producer shares.
* :func:`send_batch` sends one batch. Entries SQS fails for a reason of its own (not the
  sender's fault) are sent again, up to :data:`ENTRY_ATTEMPTS` times in all. When SQS
  refuses a whole batch for the content of one of its messages (some servers refuse the
  request rather than the entry), each entry is sent alone to tell the bad one apart.
  Any other refusal of the whole request (the queue is gone, access denied) is raised.
* :func:`send_all` sends a stream of entries that way, with large payloads (when on) put
  to S3 as they are read, a few at a time, so that only their pointers wait for a batch;
  the object of an entry that is not sent is deleted.

Each entry is sent until it succeeds or fails once for good: a success is never resent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

import anyio

from aiosqsq.backends.base import (
    MAX_BATCH_ENTRIES,
    BatchFailure,
    BatchResult,
    QueueBackend,
    SendEntry,
)
from aiosqsq.backends.limits import CODE_PREFIX, pack
from aiosqsq.backends.object_store import ObjectNotFoundError
from aiosqsq.errors import AccessError, BackendError, QueueNotFoundError

if TYPE_CHECKING:
    from aiosqsq.large_payload import LargePayloads

ENTRY_ATTEMPTS: Final = 3
#: Bodies put to S3 at once by :func:`send_all`: the large bodies it holds at most.
PARALLEL_PUTS: Final = 4
#: ... and their characters at most, past one body: four bodies of 64 MiB would take
#: about 1 GB while they are put (each is held as text, as bytes, and by the S3 client).
PUT_BUDGET_CHARS: Final = 64 * 1024 * 1024
_RETRY_DELAY_S: Final = 0.2  # doubled after each attempt
_CLEANUP_TIMEOUT_S: Final = 30.0  # deleting the objects of unsent entries, when stopped
# Refusals of a whole SendMessageBatch that are about a message in it, not the request.
_CONTENT_REFUSALS: Final = frozenset(
    {
        "InvalidParameterValue",
        "InvalidMessageContents",
        "MissingParameter",
        "InvalidAttributeValue",
        "BatchRequestTooLong",
    }
)


async def send_batch(
    backend: QueueBackend, queue_url: str, batch: Sequence[SendEntry]
) -> BatchResult:
    """Send ``batch`` (ids unique within it); every entry ends successful or failed.

    Raises :class:`~aiosqsq.errors.BackendError` when SQS refuses the request as a whole
    for a reason that is not one message's content; nothing of ``batch`` was sent then
    (once part of it was, such a refusal fails the entries not yet sent instead).
    """
    try:
        result = await backend.send_batch(queue_url, batch)
    except QueueNotFoundError:
        raise
    except BackendError as exc:
        if exc.code.removeprefix(CODE_PREFIX) not in _CONTENT_REFUSALS:
            raise
        if len(batch) == 1:
            return _failed(batch, exc, refused=True)
        alone: list[BatchResult] = []
        for entry in batch:
            try:
                alone.append(await send_batch(backend, queue_url, [entry]))
            except BackendError as error:
                if not any(result.successful for result in alone):
                    raise  # still nothing of the batch sent
                alone.append(_failed([entry], error, refused=False))
        return _merge(alone)
    by_id = {entry.id: entry for entry in batch}
    delay_s = _RETRY_DELAY_S
    for _ in range(ENTRY_ATTEMPTS - 1):
        again = [by_id[failure.id] for failure in result.failed if not failure.sender_fault]
        if not again:
            break
        await anyio.sleep(delay_s)
        delay_s *= 2
        try:
            retried = await backend.send_batch(queue_url, again)
        except BackendError as error:  # some of the batch was sent: these fail, not resent
            retried = _failed(again, error, refused=False)
        final = tuple(failure for failure in result.failed if failure.sender_fault)
        result = _merge([BatchResult(result.successful, final, result.message_ids), retried])
    return result


async def send_all(
    backend: QueueBackend,
    queue_url: str,
    entries: Iterable[SendEntry],
    sent: Callable[[Sequence[SendEntry], BatchResult], None],
    *,
    payloads: LargePayloads | None = None,
    offload: bool | None = None,
) -> None:
    """Send ``entries`` (ids unique among them all) in batches packed by :func:`pack`,
    with :func:`send_batch`; ``sent(batch, result)`` after each.

    With ``payloads``, each body it :meth:`~LargePayloads.wants` (``offload`` as there) is
    put to S3 as it is read and replaced by its pointer, up to :data:`PARALLEL_PUTS` (and
    :data:`PUT_BUDGET_CHARS`) at once: entries are read in runs of at most 10 holding at
    most that many such bodies.
    The object of an entry SQS refuses for its content is deleted, and so are those of
    entries put but never sent when this stops (an error, a cancellation); an entry whose
    request failed otherwise, or was in flight then, may have been taken: its object
    stays. Best effort: a failed delete is logged.

    Raises :class:`~aiosqsq.errors.BackendError` for a failed PUT (what failed and where,
    in one line) and as :func:`send_batch` does, and whatever reading ``entries`` raises;
    the batches before were sent and reported.
    """
    unsent: dict[str, SendEntry] = {}  # offloaded: their objects, if they are never sent

    async def send_tracked(batch: list[SendEntry]) -> None:
        try:
            result = await send_batch(backend, queue_url, batch)
        except BaseException:
            for entry in batch:  # an error or a cancel in flight: maybe taken, objects stay
                unsent.pop(entry.id, None)
            raise
        # Only an entry refused for its content was surely not taken: its object goes.
        # Any other outcome (sent, failed otherwise, none at all) keeps the object.
        refused_ids = {failure.id for failure in result.failed if failure.sender_fault}
        refused = [
            unsent[entry.id] for entry in batch if entry.id in refused_ids and entry.id in unsent
        ]
        for entry in batch:
            unsent.pop(entry.id, None)
        sent(batch, result)
        if refused and payloads is not None:
            await payloads.discard(refused)

    carried: list[SendEntry] = []  # the last batch packed, which the next run may fill
    try:
        for run in _runs(entries, payloads, offload):
            if payloads is not None:
                run = await _offloaded(run, payloads, offload, unsent)
            *full, carried = pack([*carried, *run])
            for batch in full:
                await send_tracked(batch)
        if carried:
            await send_tracked(carried)
    finally:
        if payloads is not None and unsent:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
                await payloads.discard(unsent.values())


def _runs(
    entries: Iterable[SendEntry], payloads: LargePayloads | None, offload: bool | None
) -> Iterator[list[SendEntry]]:
    """``entries`` in runs of at most 10, each with at most :data:`PARALLEL_PUTS` bodies
    to put to S3, of at most :data:`PUT_BUDGET_CHARS` characters together (or one)."""
    run: list[SendEntry] = []
    puts = chars = 0
    for entry in entries:
        run.append(entry)
        if payloads is not None and payloads.wants(entry, offload):
            puts += 1
            chars += len(entry.body)
        if len(run) == MAX_BATCH_ENTRIES or puts == PARALLEL_PUTS or chars >= PUT_BUDGET_CHARS:
            yield run
            run, puts, chars = [], 0, 0
    if run:
        yield run


async def _offloaded(
    run: list[SendEntry],
    payloads: LargePayloads,
    offload: bool | None,
    unsent: dict[str, SendEntry],
) -> list[SendEntry]:
    """``run`` with the bodies ``payloads`` wants put to S3 at once
    (:meth:`LargePayloads.offload_all`, which deletes what it stored when a PUT fails);
    each pointer entry is added to ``unsent``. Raises the first failure, in order."""
    try:
        done = await payloads.offload_all(run, offload)
    except BackendError as failure:
        raise _put_failed(failure, payloads.bucket) from None
    unsent.update((new.id, new) for new, old in zip(done, run, strict=True) if new is not old)
    return done


def _put_failed(error: BackendError, bucket: str) -> BackendError:
    if isinstance(error, ObjectNotFoundError):
        reason = "the bucket does not exist: create it or check QUEUE_LARGE_PAYLOAD_BUCKET"
    elif isinstance(error, AccessError):
        reason = "access denied: check the IAM policy (and the KMS key with SSE-KMS)"
    else:
        reason = error.message
    return BackendError(error.code, f"s3:PutObject to bucket {bucket!r} failed: {reason}")


def _failed(entries: Sequence[SendEntry], error: BackendError, *, refused: bool) -> BatchResult:
    """Each of ``entries`` failed with ``error``: ``refused`` for its content (a sender
    fault: it was not taken), or for a reason that leaves open whether it was."""
    return BatchResult(
        failed=tuple(
            BatchFailure(entry.id, error.code, error.message, refused) for entry in entries
        )
    )


def _merge(results: Sequence[BatchResult]) -> BatchResult:
    return BatchResult(
        successful=tuple(entry_id for result in results for entry_id in result.successful),
        failed=tuple(failure for result in results for failure in result.failed),
        message_ids={k: v for result in results for k, v in result.message_ids.items()},
    )
