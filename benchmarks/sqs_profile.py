"""Where a consumer's CPU goes in one SQS drain: stack samples split by library, per message.

    .venv/bin/python benchmarks/sqs_profile.py SAMPLES --messages N --cpu-s S

``bench_sqs.py --profile`` drains once more with aiosqsq and with the best hand loop, each
consumer sampling its own stacks on its CPU clock during its window
(``sqs_consumers.py --sample-cpu``: SIGPROF every millisecond of CPU time, so neither time
waiting in epoll nor time preempted by the benchmark's other processes is sampled), and
calls :func:`split` on the samples (collapsed stacks: one line per stack,
``func (file:line);... count``, outermost first); this command reads such a file again.

Each sample goes to one category, found from its innermost frame outwards: the first frame
in a library of a category decides. Standard-library frames other than asyncio's are
skipped, so time in ``hmac``, ``json``, ``email`` (HTTP headers), ``urllib.parse`` or
``logging`` counts for the library that called them; C functions are not frames, so they
count for their Python caller. Categories:

* botocore (with aiobotocore), per request: signing (SigV4: ``auth.py``, ``signers.py``);
  serialising and validating the request (``serialize.py``, ``validate.py``); parsing the
  response (``parsers.py``); the User-Agent header (``useragent.py``, rebuilt for every
  request); HTTP request and response objects (``awsrequest.py``, ``httpsession.py``,
  ``endpoint.py``, with the ``email`` header classes they use); event hooks and handlers
  (``hooks.py``, ``handlers.py``); endpoint resolution (``regions.py``: the endpoint rule
  set runs for every request); the rest (client, retries, utils, model);
* aiohttp (with yarl, multidict): the HTTP client;
* the asyncio event loop and its sockets (``asyncio``, ``selectors``: a send() on loopback
  also runs the receiving side of TCP in the kernel, on the sender's CPU time);
* anyio: aiosqsq's task groups, cancel scopes and events (the hand loop does not use it);
* aiosqsq's lean transport: its SigV4 signing (``sigv4.py``, with the hashlib and hmac
  calls it makes) and the rest of it (``sqs_lean.py``: headers, orjson bodies, retries);
* aiosqsq: the sqs backend (``aiosqsq/backends/``); aiosqsq: the engine and app (the rest);
* the consumer's own code: the handler, the hand loop's body, the benchmark's counting
  (``sqs_consumers.py``).

Samples become CPU microseconds per message by the CPU time the consumer measured over the
same window (``--cpu-s``): each sample is worth ``cpu_s / samples``. Taking a sample costs
about 10 µs, about 1% of the CPU sampled.
``estimated_us_per_message`` applies each share to the CPU per message of the unprofiled
runs instead.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

SIGNING = "botocore: signing"
SERIALISING = "botocore: serialising, validating"
PARSING = "botocore: parsing"
USER_AGENT = "botocore: User-Agent header"
HTTP_OBJECTS = "botocore: HTTP request/response objects"
HOOKS = "botocore: event hooks and handlers"
ENDPOINT = "botocore: endpoint resolution"
BOTOCORE_REST = "botocore: rest (client, retries, utils)"
AIOHTTP = "aiohttp"
ASYNCIO = "asyncio event loop and sockets"
ANYIO = "anyio (task groups, cancel scopes)"
LEAN_SIGNING = "aiosqsq: lean SigV4 signing"
LEAN = "aiosqsq: lean transport (requests, JSON)"
BACKEND = "aiosqsq: sqs backend"
ENGINE = "aiosqsq: engine and app"
CONSUMER = "handler, hand loop, counting"
OTHER = "other"
BOTOCORE = (
    SIGNING,
    SERIALISING,
    PARSING,
    USER_AGENT,
    HTTP_OBJECTS,
    HOOKS,
    ENDPOINT,
    BOTOCORE_REST,
)
CATEGORIES = (
    *BOTOCORE,
    AIOHTTP,
    ASYNCIO,
    ANYIO,
    LEAN_SIGNING,
    LEAN,
    BACKEND,
    ENGINE,
    CONSUMER,
    OTHER,
)

# First match wins: (category, path fragments).
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (SIGNING, ("/botocore/auth.py", "/botocore/signers.py", "/aiobotocore/signers.py")),
    (SERIALISING, ("/botocore/serialize.py", "/botocore/validate.py")),
    (PARSING, ("/botocore/parsers.py", "/aiobotocore/parsers.py")),
    (USER_AGENT, ("/botocore/useragent.py",)),
    (
        HTTP_OBJECTS,
        ("/botocore/awsrequest.py", "/aiobotocore/awsrequest.py", "/httpsession.py"),
    ),
    (HTTP_OBJECTS, ("/botocore/endpoint.py", "/aiobotocore/endpoint.py")),
    (HOOKS, ("/botocore/hooks.py", "/aiobotocore/hooks.py", "/botocore/handlers.py")),
    (HOOKS, ("/aiobotocore/_helpers.py", "/aiobotocore/context.py")),
    (ENDPOINT, ("/botocore/regions.py", "/aiobotocore/regions.py", "endpoint_provider.py")),
    (
        BOTOCORE_REST,
        ("/botocore/", "/aiobotocore/", "/aioboto3/", "/boto3/", "/urllib3/", "/jmespath/"),
    ),
    (AIOHTTP, ("/aiohttp/", "/yarl/", "/multidict/", "/aiohappyeyeballs/", "/propcache/")),
    (ASYNCIO, ("/asyncio/", "/selectors.py")),
    (ANYIO, ("/anyio/", "/sniffio/")),
    (LEAN_SIGNING, ("/aiosqsq/backends/sigv4.py",)),
    (LEAN, ("/aiosqsq/backends/sqs_lean.py",)),
    (BACKEND, ("/aiosqsq/backends/",)),
    (ENGINE, ("/aiosqsq/",)),
    (CONSUMER, ("/sqs_consumers.py",)),
)
_TOP = 25

Frame = tuple[str, str]  # (function, file)


def _category(filename: str) -> str | None:
    """The category of a frame's file; None for the standard library (skipped)."""
    for category, fragments in _RULES:
        if any(fragment in filename for fragment in fragments):
            return category
    if filename.startswith("<") or (  # <frozen ...>, <string> (dataclass, namedtuple code)
        "/lib/python3" in filename and "site-packages" not in filename
    ):
        return None
    return OTHER


def _frame(text: str) -> Frame:
    # "function (/path/to/file.py:123)"; the function name may hold spaces or parentheses
    function, _, location = text.rpartition(" (")
    filename = location.rstrip(")").rpartition(":")[0] or location.rstrip(")")
    return function or text, filename


def read_samples(path: Path) -> list[tuple[list[Frame], int]]:
    """Collapsed stacks: (frames outermost first, sample count) per line."""
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples.append(([_frame(f) for f in stack.split(";")], int(count)))
    return samples


def split(
    path: Path, messages: int, cpu_s: float, cpu_us_per_message: float | None = None
) -> dict[str, Any]:
    """Samples per category as CPU µs per message, and the functions with the most
    inclusive CPU in botocore, aiohttp and aiosqsq."""
    samples = read_samples(path)
    total = sum(count for _, count in samples)
    if total == 0:
        raise ValueError(f"{path}: no samples (was the window sampled?)")
    us_per_sample_per_message = cpu_s * 1e6 / total / messages
    own: Counter[str] = Counter()
    inclusive: Counter[Frame] = Counter()
    for frames, count in samples:
        category = OTHER
        for _, filename in reversed(frames):
            found = _category(filename)
            if found is not None:
                category = found
                break
        own[category] += count
        for frame in set(frames):
            inclusive[frame] += count
    categories = {
        category: {
            "samples": own[category],
            "share": own[category] / total,
            "us_per_message": own[category] * us_per_sample_per_message,
            **(
                {"estimated_us_per_message": own[category] / total * cpu_us_per_message}
                if cpu_us_per_message is not None
                else {}
            ),
        }
        for category in CATEGORIES
        if own[category]
    }
    shown = {*BOTOCORE, AIOHTTP, ANYIO, BACKEND, ENGINE}
    top = [
        (frame, count) for frame, count in inclusive.most_common() if _category(frame[1]) in shown
    ][:_TOP]
    botocore = sum(own[c] for c in BOTOCORE) / total
    return {
        "samples": total,
        "messages": messages,
        "window_cpu_s": cpu_s,
        "cpu_us_per_message_profiled_drain": cpu_s * 1e6 / messages,
        "cpu_us_per_message_unprofiled": cpu_us_per_message,
        "botocore_share": botocore,
        "signing_and_parsing_share": (own[SIGNING] + own[PARSING]) / total,
        "botocore_and_aiohttp_share": botocore + own[AIOHTTP] / total,
        "categories": categories,
        "top_inclusive": [
            {
                "function": f"{_short(filename)}:{function}",
                "category": _category(filename),
                "share": count / total,
                "us_per_message": count * us_per_sample_per_message,
            }
            for (function, filename), count in top
        ],
    }


def _short(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    for marker in ("/aiosqsq/", "/benchmarks/"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    return filename.rsplit("/", 1)[-1]


def describe(profiles: dict[str, dict[str, Any]]) -> str:
    """A text table: one column per consumer, one row per category (estimated µs/message
    of the unprofiled runs, and the share)."""
    labels = list(profiles)
    width = 20
    lines = [f"{'CPU per message by category':<38}" + "".join(f"{x:>{width}}" for x in labels)]
    for category in CATEGORIES:
        if not any(category in p["categories"] for p in profiles.values()):
            continue
        cells = []
        for label in labels:
            found = profiles[label]["categories"].get(category)
            if found is None:
                cells.append(f"{'-':>{width}}")
                continue
            us = found.get("estimated_us_per_message", found["us_per_message"])
            cells.append(f"{us:>{width - 9}.0f} us {found['share']:>5.1%}")
        lines.append(f"{category:<38}" + "".join(cells))
    totals = []
    for label in labels:
        found = profiles[label]["categories"].values()
        us = sum(c.get("estimated_us_per_message", c["us_per_message"]) for c in found)
        totals.append(f"{us:>{width - 9}.0f} us {1:>5.0%}")
    lines.append(f"{'total':<38}" + "".join(totals))
    lines.append(
        f"{'botocore, all of it':<38}"
        + "".join(f"{profiles[x]['botocore_share']:>{width}.1%}" for x in labels)
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="collapsed stacks of one drain's window")
    parser.add_argument("--messages", type=int, required=True, help="messages in that drain")
    parser.add_argument("--cpu-s", type=float, required=True, help="CPU s of that window")
    parser.add_argument("--label", default="consumer")
    args = parser.parse_args()
    profile = split(args.samples, args.messages, args.cpu_s)
    print(describe({args.label: profile}))
    print(json.dumps(profile["top_inclusive"], indent=2))


if __name__ == "__main__":
    main()
