"""Queue an email in the same transaction as the change that causes it."""

from __future__ import annotations

import email.policy
import logging
from collections.abc import Mapping
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

import attrs
from sqlalchemy import Connection

from haulmer_onboarding.mail.render import Renderer
from haulmer_onboarding.store import insert, outbox

__all__ = [
    "PreparedEmail",
    "build_message",
    "message_bytes",
    "prepare_email",
    "queue_email",
    "write_email",
]

logger = logging.getLogger("haulmer_onboarding")


#: How the outbox stores a message: as SMTP wants it, CRLF line ends.
_SMTP_LEGACY = email.policy.compat32.clone(linesep="\r\n")


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    now: datetime,
    reply_to: str | None = None,
) -> Message:
    """A multipart/alternative message with a fresh, stable Message-ID.

    Both parts are base64 encoded: a link must not depend on a mail client
    joining quoted-printable soft line breaks correctly. Its bytes, as the
    outbox keeps them, are ``message_bytes(message)``.

    Built with the standard library's ``email.mime`` classes: the
    ``email.policy.default`` API parses and refolds every header and took
    five times as long, most of what recording a purchase cost. An address
    that is not ASCII (an SMTPUTF8 mailbox) still goes through that API,
    which knows how to write it.
    """
    if not (sender.isascii() and recipient.isascii() and (reply_to or "").isascii()):
        return _build_unicode(
            sender=sender,
            recipient=recipient,
            subject=subject,
            text=text,
            html=html,
            now=now,
            reply_to=reply_to,
        )
    message = MIMEMultipart("alternative")
    message["From"] = sender
    message["To"] = recipient
    # Header encodes a non-ASCII subject as RFC 2047 words (typeshed types
    # a legacy message's headers as plain strings).
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")  # type: ignore[assignment]
    message["Date"] = format_datetime(now)
    message["Message-ID"] = _message_id(sender)
    message["Auto-Submitted"] = "auto-generated"
    if reply_to:
        # The sender is a no-reply address; answers go to people.
        message["Reply-To"] = reply_to
    for body, subtype in ((text, "plain"), (html, "html")):
        # utf-8 text parts are base64 encoded by default.
        part = MIMEText(body, subtype, "utf-8")
        del part["MIME-Version"]  # once, on the whole message
        message.attach(part)
    return message


def _message_id(sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "haulmer.com"
    return make_msgid(domain=domain)


def _build_unicode(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    now: datetime,
    reply_to: str | None,
) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = _message_id(sender)
    message["Auto-Submitted"] = "auto-generated"
    if reply_to:
        message["Reply-To"] = reply_to
    message.set_content(text, cte="base64")
    message.add_alternative(html, subtype="html", cte="base64")
    return message


def message_bytes(message: Message) -> bytes:
    """``message`` as the outbox stores it and the relay sends it."""
    if isinstance(message, EmailMessage):
        return message.as_bytes(policy=email.policy.SMTP)
    return message.as_bytes(policy=_SMTP_LEGACY)


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
        raw=message_bytes(message),
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
