"""How a queue is addressed: by URL, by ARN or by name."""

from __future__ import annotations


def is_queue_url(value: str) -> bool:
    """True when ``value`` is an http(s) URL rather than a queue name or an ARN."""
    return value.startswith(("https://", "http://"))


def queue_name(address: str) -> str:
    """The queue name at the end of a queue URL or ARN (a name is returned as it is)."""
    return address.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
