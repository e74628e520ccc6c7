"""A canned SQS endpoint on 127.0.0.1, for the consumer's own ceiling (a benchmark fixture).

    .venv/bin/python benchmarks/sqs_canned.py

It prints the port it listens on, then serves SQS's JSON protocol over HTTP/1.1 keep-alive
from one queue of N messages (bodies "0" .. "N-1"), as cheaply as it can so that the
consumer, not the server, sets the pace. It is not an SQS emulator: nothing becomes
visible again, there is no visibility timeout and signatures are not checked.

* ``ReceiveMessage``: the next ``MaxNumberOfMessages`` messages at once, each handed out
  exactly once (with the system attributes when asked for them, as SQS does); once all
  N are out, an empty answer after ``WaitTimeSeconds`` (a long poll on an empty queue).
* ``DeleteMessageBatch``: every entry succeeds and is counted by the message its receipt
  handle names: deleted once, deleted again (a duplicate), or never handed out (a bad
  handle). ``ChangeMessageVisibilityBatch``: every entry succeeds.
* ``SendMessageBatch``: every entry succeeds, counted.
* ``GetQueueAttributes``, ``GetQueueUrl``: a standard queue's attributes, its URL.

Control requests, never counted: ``GET /__canned/counts`` (JSON) and ``POST
/__canned/reset?messages=N`` (a fresh queue of N messages; the counts before, as JSON).
It exits on SIGTERM or when its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
QUEUE_NAME = "canned"
ACCOUNT = "123456789012"
_TARGET = b"\r\nx-amz-target:"
_LENGTH = b"\r\ncontent-length:"
# Real receipt handles are about 180 characters: the same size keeps the bytes honest.
_HANDLE_PAD = "Q" * 160


class Queue:
    """N messages handed out once each, and what became of them."""

    def __init__(self, messages: int = 0) -> None:
        self.messages = messages
        self.next = 0
        self.deleted = bytearray(messages)
        self.requests: Counter[str] = Counter()
        self.delete_duplicates = 0
        self.bad_handles = 0
        self.sent = 0
        self.started = time.time()

    def counts(self) -> dict[str, Any]:
        deleted = sum(1 for d in self.deleted if d)
        return {
            "messages": self.messages,
            "received": self.next,
            "deleted": deleted,
            "delete_duplicates": self.delete_duplicates,
            "bad_handles": self.bad_handles,
            "never_deleted": self.messages - deleted,
            "sent": self.sent,
            "requests": dict(self.requests),
        }


class Server:
    def __init__(self, port_holder: list[int]) -> None:
        self.queue = Queue()
        self.port_holder = port_holder

    def url(self) -> str:
        return f"http://{HOST}:{self.port_holder[0]}/{ACCOUNT}/{QUEUE_NAME}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # a long poll cut by the consumer's exit ends here too (CancelledError): quietly
        with contextlib.suppress(
            asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError
        ):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                length = 0
                at = lower.find(_LENGTH)
                if at >= 0:
                    length = int(lower[at + len(_LENGTH) : lower.find(b"\r\n", at + len(_LENGTH))])
                body = await reader.readexactly(length) if length else b""
                status, payload = await self.answer(head, lower, body)
                writer.write(
                    b"HTTP/1.1 %d OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                    b"x-amzn-RequestId: canned\r\nContent-Length: %d\r\n\r\n%s"
                    % (status, len(payload), payload)
                )
                await writer.drain()
        writer.close()

    async def answer(self, head: bytes, lower: bytes, body: bytes) -> tuple[int, bytes]:
        request_line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = request_line.split(" ", 2)
        if target.startswith("/__canned/"):
            return 200, self.control(method, target)
        at = lower.find(_TARGET)
        if at < 0:
            return 400, b'{"__type":"MissingAction","message":"no X-Amz-Target"}'
        value = head[
            at + len(_TARGET) : lower.find(b"\r\n", at + len(_TARGET))
        ]  # same offsets as lower
        action = value.decode().strip().removeprefix("AmazonSQS.")
        self.queue.requests[action] += 1
        params = json.loads(body) if body else {}
        if action == "ReceiveMessage":
            return 200, await self.receive(params)
        if action == "DeleteMessageBatch":
            return 200, self.delete(params)
        if action == "ChangeMessageVisibilityBatch":
            ids = [{"Id": e["Id"]} for e in params.get("Entries", [])]
            return 200, json.dumps({"Successful": ids}).encode()
        if action == "SendMessageBatch":
            return 200, self.send(params)
        if action == "GetQueueAttributes":
            return 200, self.attributes()
        if action == "GetQueueUrl":
            return 200, json.dumps({"QueueUrl": self.url()}).encode()
        return 400, json.dumps({"__type": "UnsupportedOperation", "message": action}).encode()

    def control(self, method: str, target: str) -> bytes:
        counts = self.queue.counts()
        if method == "POST":
            query = parse_qs(urlsplit(target).query)
            self.queue = Queue(int(query.get("messages", ["0"])[0]))
        return json.dumps({**counts, "queue_url": self.url()}).encode()

    async def receive(self, params: dict[str, Any]) -> bytes:
        queue = self.queue
        count = min(int(params.get("MaxNumberOfMessages", 1)), queue.messages - queue.next)
        if count <= 0:
            await asyncio.sleep(float(params.get("WaitTimeSeconds", 0)))
            return b"{}"
        with_attributes = bool(params.get("MessageSystemAttributeNames"))
        now = str(int(time.time() * 1000))
        messages = []
        for seq in range(queue.next, queue.next + count):
            body = str(seq)
            message: dict[str, Any] = {
                "MessageId": f"00000000-0000-4000-8000-{seq:012d}",
                "ReceiptHandle": f"{seq}:{_HANDLE_PAD}",
                "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "Body": body,
            }
            if with_attributes:
                message["Attributes"] = {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "ApproximateFirstReceiveTimestamp": now,
                    "SenderId": "AIDACANNEDSENDER",
                }
            messages.append(message)
        queue.next += count
        return json.dumps({"Messages": messages}).encode()

    def delete(self, params: dict[str, Any]) -> bytes:
        queue = self.queue
        successful = []
        for entry in params.get("Entries", []):
            seq_text = str(entry.get("ReceiptHandle", "")).split(":", 1)[0]
            seq = int(seq_text) if seq_text.isdigit() else -1
            if not 0 <= seq < queue.next:
                queue.bad_handles += 1
            elif queue.deleted[seq]:
                queue.delete_duplicates += 1
            else:
                queue.deleted[seq] = 1
            successful.append({"Id": entry["Id"]})
        return json.dumps({"Successful": successful}).encode()

    def send(self, params: dict[str, Any]) -> bytes:
        successful = []
        for entry in params.get("Entries", []):
            self.queue.sent += 1
            body = str(entry.get("MessageBody", ""))
            successful.append(
                {
                    "Id": entry["Id"],
                    "MessageId": f"00000000-0000-4000-9000-{self.queue.sent:012d}",
                    "MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest(),
                }
            )
        return json.dumps({"Successful": successful}).encode()

    def attributes(self) -> bytes:
        queue = self.queue
        return json.dumps(
            {
                "Attributes": {
                    "QueueArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{QUEUE_NAME}",
                    "VisibilityTimeout": "60",
                    "FifoQueue": "false",
                    "MessageRetentionPeriod": "345600",
                    "ApproximateNumberOfMessages": str(queue.messages - queue.next),
                    "ApproximateNumberOfMessagesNotVisible": "0",
                    "ApproximateNumberOfMessagesDelayed": "0",
                }
            }
        ).encode()


async def main() -> None:
    port: list[int] = [0]
    server_state = Server(port)
    server = await asyncio.start_server(server_state.handle, HOST, 0)
    port[0] = server.sockets[0].getsockname()[1]
    print(port[0], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # exit when the parent goes away (its end of our stdin closes)
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
