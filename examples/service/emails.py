"""The e-mail handlers, in a module of their own: a router the app includes."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from aiosqsq import CallNext, Message, Router
from examples.service.resources import Resources

log = logging.getLogger("examples.service.emails")


async def audit(message: Message, call_next: CallNext) -> Any:
    """Router middleware: wraps only the handlers of this router."""
    log.info("e-mail message %s (receive %d)", message.message_id, message.receive_count)
    return await call_next()


router = Router(middleware=[audit])


class Email(BaseModel):
    to: str
    subject: str


@router.handler("emails", concurrency=20, timeout_s=30)
async def send_email(email: Email, res: Resources) -> None:
    await res.mailer.send(email.to, email.subject)
