"""The relay: claims queued emails and delivers them over SMTP.

A claim is a lease written to the row (``claimed_by``, ``claimed_until``), so
several relays can share one outbox: a row is claimed by one relay at a time,
and a relay that dies mid-batch only delays its rows until the lease ends.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

import sqlalchemy as sa

from haulmer_onboarding.store import Store, outbox

__all__ = ["Relay"]

logger = logging.getLogger("haulmer_onboarding")

_LEASE = timedelta(minutes=2)
_MAX_BACKOFF = timedelta(minutes=30)
# About two days of retries at the longest backoff.
_MAX_ATTEMPTS = 100


def _permanent(exc: BaseException) -> bool:
    """A 5xx answer about this message: sending it again will not help."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600 and not isinstance(
            exc, smtplib.SMTPServerDisconnected
        )
    return False


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Relay:
    """Delivers the outbox to one SMTP server."""

    def __init__(
        self,
        store: Store,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = _utcnow,
        batch_size: int = 100,
    ) -> None:
        self._store = store
        self._host, self._port = host, port
        self._envelope_from = parseaddr(sender)[1]
        self._username, self._password = username, password
        self._starttls, self._timeout = starttls, timeout
        self._clock = clock
        self._batch_size = batch_size
        self.name = uuid.uuid4().hex[:12]

    def _claim(self) -> list[tuple[int, str, bytes, int]]:
        now = self._clock()
        claim = f"{self.name}:{uuid.uuid4().hex[:12]}"
        free = sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
        earlier = outbox.alias("earlier")
        # A recipient's emails leave in the order they were queued: one
        # waiting for a retry, or claimed by another relay, holds back the
        # later ones to the same address. Due ones come in this batch, in
        # order, and a failure holds back the rest of the batch for it.
        waits_behind = (
            sa.select(earlier.c.id)
            .where(
                earlier.c.recipient == outbox.c.recipient,
                earlier.c.id < outbox.c.id,
                earlier.c.sent_at.is_(None),
                earlier.c.failed_at.is_(None),
                sa.or_(
                    earlier.c.next_attempt_at > now,
                    earlier.c.claimed_until >= now,
                ),
            )
            .exists()
        )
        due = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.sent_at.is_(None),
                outbox.c.failed_at.is_(None),
                outbox.c.next_attempt_at <= now,
                free,
                ~waits_behind,
            )
            .order_by(outbox.c.id)
            .limit(self._batch_size)
        )
        with self._store.begin() as conn:
            ids = [row.id for row in conn.execute(due)]
            if not ids:
                return []
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(ids), outbox.c.sent_at.is_(None), free)
                .values(claimed_by=claim, claimed_until=now + _LEASE)
            )
            query = (
                sa.select(
                    outbox.c.id, outbox.c.recipient, outbox.c.raw, outbox.c.attempts
                )
                .where(outbox.c.claimed_by == claim)
                .order_by(outbox.c.id)
            )
            return [(r.id, r.recipient, r.raw, r.attempts) for r in conn.execute(query)]

    def deliver_pending(self) -> int:
        """Send what is due, in the order it was queued; return how many."""
        rows = self._claim()
        if not rows:
            return 0

        sent = 0
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            for row in rows:
                self._failed(row[0], row[3], exc)
            return 0

        held: set[str] = set()
        try:
            for message_row_id, recipient, raw, attempts in rows:
                if recipient in held:
                    # An earlier email to this address failed in this batch.
                    self._release(message_row_id)
                    continue
                try:
                    smtp.sendmail(self._envelope_from, [recipient], raw)
                except (OSError, smtplib.SMTPException) as exc:
                    held.add(recipient)
                    self._failed(message_row_id, attempts, exc)
                    continue
                self._sent(message_row_id)
                sent += 1
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return sent

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        if self._starttls:
            smtp.starttls()
        if self._username and self._password:
            smtp.login(self._username, self._password)
        return smtp

    def _sent(self, row_id: int) -> None:
        now = self._clock()
        with self._store.begin() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == row_id)
                .values(sent_at=now, claimed_by=None, claimed_until=None)
            )
            subject = conn.execute(
                sa.select(outbox.c.template, outbox.c.journey_id).where(
                    outbox.c.id == row_id
                )
            ).one()
        logger.info("email sent: %s to journey %s", subject[0], subject[1])

    def _release(self, row_id: int) -> None:
        with self._store.begin() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == row_id)
                .values(claimed_by=None, claimed_until=None)
            )

    def _failed(self, row_id: int, attempts: int, exc: BaseException) -> None:
        now = self._clock()
        if _permanent(exc) or attempts + 1 >= _MAX_ATTEMPTS:
            with self._store.begin() as conn:
                conn.execute(
                    outbox.update()
                    .where(outbox.c.id == row_id)
                    .values(
                        attempts=attempts + 1,
                        last_error=f"{type(exc).__name__}: {exc}"[:500],
                        failed_at=now,
                        claimed_by=None,
                        claimed_until=None,
                    )
                )
            logger.warning(
                "email %s refused for good after %s attempts (%s): an operator "
                "must look at it",
                row_id,
                attempts + 1,
                type(exc).__name__,
            )
            return
        backoff = min(timedelta(seconds=5 * 2**attempts), _MAX_BACKOFF)
        with self._store.begin() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == row_id)
                .values(
                    attempts=attempts + 1,
                    last_error=f"{type(exc).__name__}: {exc}"[:500],
                    next_attempt_at=now + backoff,
                    claimed_by=None,
                    claimed_until=None,
                )
            )
        logger.warning(
            "email %s not delivered (attempt %s), retrying in %ss: %s",
            row_id,
            attempts + 1,
            int(backoff.total_seconds()),
            type(exc).__name__,
        )

    def run(self, stop: threading.Event, *, interval: float = 0.5) -> None:
        """Deliver until ``stop`` is set, polling every ``interval`` seconds."""
        while not stop.is_set():
            try:
                busy = self.deliver_pending() > 0
            except Exception:  # a relay must outlive one bad round
                logger.exception("the relay failed a round; it will try again")
                busy = False
            if not busy:
                stop.wait(interval)
