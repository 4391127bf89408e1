"""A real SMTP server on loopback that keeps what it receives.

``SmtpCatcher`` is what the ``demo`` and ``serve`` commands and the tests
deliver the journey's emails to: aiosmtpd speaks SMTP on a real socket, and
each message is parsed with the standard library, exactly as a mail client
would see it.
"""

from __future__ import annotations

import email.policy
import threading
import time
from email.message import EmailMessage
from typing import Any

import attrs
from aiosmtpd.controller import Controller

from haulmer_onboarding.testing.servers import free_port

__all__ = ["CaughtMessage", "SmtpCatcher"]


@attrs.frozen
class CaughtMessage:
    """One message as delivered: envelope, raw bytes and parsed form."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def to(self) -> str:
        return str(self.message["To"])

    def text(self) -> str:
        """The plain-text alternative, decoded."""
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content())

    def html(self) -> str:
        """The HTML alternative, decoded."""
        part = self.message.get_body(preferencelist=("html",))
        return "" if part is None else str(part.get_content())


class _Handler:
    def __init__(self, catcher: SmtpCatcher) -> None:
        self._catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else content.encode()
        self._catcher._add(
            CaughtMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
                raw=raw,
            )
        )
        return "250 Message accepted for delivery"


class SmtpCatcher:
    """An SMTP server on ``host``:``port`` collecting every message it gets.

    Use it as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        # aiosmtpd cannot be given port 0, so a free port is chosen first.
        self.port = port or free_port(host)
        self._messages: list[CaughtMessage] = []
        self._changed = threading.Condition()
        self._controller = Controller(
            _Handler(self), hostname=host, port=self.port, ready_timeout=10.0
        )

    def start(self) -> SmtpCatcher:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpCatcher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _add(self, message: CaughtMessage) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    @property
    def messages(self) -> list[CaughtMessage]:
        """Every message received so far, oldest first (a copy)."""
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[CaughtMessage]:
        """Block until at least ``count`` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} messages, got {len(self._messages)}"
                    )
                self._changed.wait(remaining)
            return list(self._messages)
