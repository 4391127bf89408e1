"""Queue an email in the same transaction as the change that causes it."""

from __future__ import annotations

import email.policy
import logging
from collections.abc import Mapping
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

import attrs
from sqlalchemy import Connection

from haulmer_onboarding.mail.render import Renderer
from haulmer_onboarding.store import insert, outbox

__all__ = [
    "PreparedEmail",
    "build_message",
    "prepare_email",
    "queue_email",
    "write_email",
]

logger = logging.getLogger("haulmer_onboarding")


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    now: datetime,
    reply_to: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message with a fresh, stable Message-ID.

    Both parts are base64 encoded: a link must not depend on a mail client
    joining quoted-printable soft line breaks correctly.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "haulmer.com"
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    if reply_to:
        # The sender is a no-reply address; answers go to people.
        message["Reply-To"] = reply_to
    message.set_content(text, cte="base64")
    message.add_alternative(html, subtype="html", cte="base64")
    return message


@attrs.frozen
class PreparedEmail:
    """An email rendered and built, waiting for the transaction that queues
    it: rendering takes milliseconds, which a write transaction should not
    hold the database's lock for."""

    template: str
    recipient: str
    subject: str
    message_id: str
    raw: bytes


def prepare_email(
    renderer: Renderer,
    *,
    template: str,
    sender: str,
    recipient: str,
    context: Mapping[str, Any],
    now: datetime,
    reply_to: str | None = None,
) -> PreparedEmail:
    """Render ``template`` into the bytes the relay will send."""
    rendered = renderer.email(template, context)
    message = build_message(
        sender=sender,
        recipient=str(Address(addr_spec=recipient)),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        now=now,
        reply_to=reply_to,
    )
    return PreparedEmail(
        template=template,
        recipient=recipient,
        subject=rendered.subject,
        message_id=str(message["Message-ID"]),
        # SMTP wants CRLF line ends; smtplib does not fix them in bytes.
        raw=message.as_bytes(policy=email.policy.SMTP),
    )


def write_email(
    conn: Connection,
    prepared: PreparedEmail,
    *,
    now: datetime,
    journey_id: int | None = None,
) -> str:
    """Write a prepared email to the outbox; return its Message-ID."""
    insert(
        conn,
        outbox,
        {
            "message_id": prepared.message_id,
            "journey_id": journey_id,
            "template": prepared.template,
            "recipient": prepared.recipient,
            "subject": prepared.subject,
            "raw": prepared.raw,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    logger.info(
        "email queued: %s to journey %s (%s)",
        prepared.template,
        journey_id,
        prepared.message_id,
    )
    return prepared.message_id


def queue_email(
    conn: Connection,
    renderer: Renderer,
    *,
    template: str,
    sender: str,
    recipient: str,
    context: Mapping[str, Any],
    now: datetime,
    journey_id: int | None = None,
    reply_to: str | None = None,
) -> str:
    """Render ``template`` and write it to the outbox; return its Message-ID."""
    prepared = prepare_email(
        renderer,
        template=template,
        sender=sender,
        recipient=recipient,
        context=context,
        now=now,
        reply_to=reply_to,
    )
    return write_email(conn, prepared, now=now, journey_id=journey_id)
