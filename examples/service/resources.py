"""What the service creates once per worker process and closes on stop."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Mailer:
    """Stands in for an SMTP or HTTP client: it only records what it was asked to send."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = False

    async def send(self, to: str, subject: str) -> None:
        self.sent.append((to, subject))

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Warehouse:
    """Stands in for a database pool: rows written in one statement per batch."""

    rows: list[dict[str, object]] = field(default_factory=list)
    statements: int = 0

    async def insert_many(self, rows: list[dict[str, object]]) -> None:
        self.statements += 1
        self.rows.extend(rows)


@dataclass
class Resources:
    mailer: Mailer
    warehouse: Warehouse
