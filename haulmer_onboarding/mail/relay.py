"""The relay: claims queued emails and delivers them over SMTP.

A claim is a lease written to the row (``claimed_by``, ``claimed_until``), so
several relays, threads or processes, can share one outbox:

- a row is claimed by one relay at a time. On PostgreSQL the claiming query
  skips rows another relay is claiming right now (``FOR UPDATE SKIP
  LOCKED``), so relays do not queue behind each other; on SQLite the write
  lock serializes claims.
- a recipient's emails leave in the order they were queued, even with many
  relays: a row waits while an earlier unsent row to the same address is
  claimed elsewhere or waiting for a retry.
- emails the SMTP server accepted are marked sent within 0.2 s, 100 at a
  time at most, so in normal operation each is sent once. A relay that
  dies before that mark leaves those rows to be sent again when its lease
  ends: delivery is at least once, and a copy carries the same
  ``Message-ID`` (written once, when the email was queued), which mail
  clients use to recognize a duplicate.
- a relay stops using a claim when half its lease has passed and releases
  what it did not send, so a slow SMTP server cannot make two relays hold
  the same row.

One SMTP connection carries every message of a call to ``deliver_pending``,
batch after batch, and is kept for the next call while mail keeps coming.
"""

from __future__ import annotations

import logging
import random
import smtplib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import attrs
import sqlalchemy as sa

from haulmer_onboarding.store import Store, outbox

__all__ = ["Relay"]

logger = logging.getLogger("haulmer_onboarding")

_LEASE = timedelta(minutes=2)
_RETRY_BASE = timedelta(seconds=5)
_MAX_BACKOFF = timedelta(minutes=30)
# About two days of retries at the longest backoff.
_MAX_ATTEMPTS = 100
# One call delivers for at most this long, then leaves the rest to the
# next call, so that a worker's other duties are not starved by a burst.
_CALL_BUDGET = 5.0
# Emails the server accepted are marked sent together, at the latest after
# this many or this many seconds: a commit per email would cost about as
# much as sending it. (A thread committing while the next email goes out
# was tried: it fights the sending thread for the GIL and is slower.)
_MARK_EVERY = 100
_MARK_AFTER = 0.2
# An idle SMTP connection older than this is closed rather than reused:
# servers drop idle clients, commonly after a minute or more.
_IDLE = 30.0


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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


@attrs.frozen
class _Claimed:
    id: int
    recipient: str
    raw: bytes
    attempts: int
    template: str
    journey_id: int | None


class Relay:
    """Delivers the outbox to one SMTP server.

    ``lease`` is how long a claim keeps other relays off a row; a relay
    killed mid-batch delays its rows by at most that. A failed delivery is
    retried after ``retry_base`` doubled per attempt (capped at 30 minutes,
    with ±20% jitter so that relays back from an outage do not retry in
    step).
    """

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
        batch_size: int = 200,
        lease: timedelta = _LEASE,
        retry_base: timedelta = _RETRY_BASE,
    ) -> None:
        self._store = store
        self._host, self._port = host, port
        self._envelope_from = parseaddr(sender)[1]
        self._username, self._password = username, password
        self._starttls, self._timeout = starttls, timeout
        self._clock = clock
        self._batch_size = batch_size
        self._lease = lease
        self._retry_base = retry_base
        self._smtp: smtplib.SMTP | None = None
        self._smtp_used = 0.0
        self._smtp_carried = 0
        self.name = uuid.uuid4().hex[:12]
        #: SMTP connections opened so far (the benchmark and tests read it).
        self.connections_opened = 0

    # -- claiming ----------------------------------------------------------

    def _claim(self) -> list[_Claimed]:
        now = self._clock()
        claim = f"{self.name}:{uuid.uuid4().hex[:12]}"
        # The rows selected are locked (PostgreSQL) or the whole database is
        # (SQLite) until this transaction ends: all of them are ours.
        free = sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
        unsent = sa.and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
        # An address's first email waiting for a retry or claimed by another
        # relay holds back its later ones. Computed once per claim, not per
        # row: a correlated query per row made a claim slow on a long queue.
        waiting = sa.or_(outbox.c.next_attempt_at > now, outbox.c.claimed_until >= now)
        blocking = (
            sa.select(
                outbox.c.recipient.label("recipient"),
                sa.func.min(outbox.c.id).label("first"),
            )
            .where(unsent, waiting)
            .group_by(outbox.c.recipient)
            .subquery("blocking")
        )
        due = (
            sa.select(outbox.c.id, outbox.c.recipient)
            .select_from(
                outbox.outerjoin(blocking, blocking.c.recipient == outbox.c.recipient)
            )
            .where(
                unsent,
                outbox.c.next_attempt_at <= now,
                free,
                sa.or_(blocking.c.first.is_(None), blocking.c.first > outbox.c.id),
            )
            .order_by(outbox.c.id)
            .limit(self._batch_size)
        )
        if self._store.dialect != "sqlite":
            due = due.with_for_update(skip_locked=True, of=outbox)

        with self._store.begin() as conn:
            candidates = conn.execute(due).all()
            if not candidates:
                return []
            ids = self._in_order(conn, candidates)
            if not ids:
                return []
            claimed = conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(ids))
                .values(claimed_by=claim, claimed_until=now + self._lease)
                .returning(
                    outbox.c.id,
                    outbox.c.recipient,
                    outbox.c.raw,
                    outbox.c.attempts,
                    outbox.c.template,
                    outbox.c.journey_id,
                )
            ).all()
            # RETURNING promises no order: the queue's order is the ids'.
            return sorted((_Claimed(*row) for row in claimed), key=lambda r: r.id)

    def _in_order(self, conn: sa.Connection, candidates: Sequence[Any]) -> list[int]:
        """Drop the candidates behind an earlier unsent email to the same
        address that is not among them.

        Such an email is being claimed by another relay at this moment (its
        row was skipped as locked, its claim not yet visible): sending the
        later one now could overtake it.
        """
        ids = [row.id for row in candidates]
        if self._store.dialect == "sqlite":
            return ids  # claims are serialized: nothing is half-claimed
        recipients = {row.recipient for row in candidates}
        blocking = conn.execute(
            sa.select(outbox.c.recipient, sa.func.min(outbox.c.id))
            .where(
                outbox.c.recipient.in_(recipients),
                outbox.c.sent_at.is_(None),
                outbox.c.failed_at.is_(None),
                outbox.c.id.not_in(ids),
                outbox.c.id < max(ids),
            )
            .group_by(outbox.c.recipient)
        ).all()
        first_blocker = {recipient: first for recipient, first in blocking}
        return [
            row.id
            for row in candidates
            if row.recipient not in first_blocker
            or row.id < first_blocker[row.recipient]
        ]

    # -- delivering --------------------------------------------------------

    def deliver_pending(self) -> int:
        """Send what is due, in the order it was queued; return how many.

        Goes on batch after batch over one SMTP connection until nothing is
        due or a few seconds passed; the connection is closed once the
        outbox is drained.
        """
        started = time.monotonic()
        sent = 0
        try:
            while True:
                rows = self._claim()
                if rows:
                    sent += self._deliver_batch(rows)
                if len(rows) < self._batch_size or self._smtp is None:
                    # Drained, or the server is away: the next call or the
                    # retry times will tell.
                    self.close()
                    return sent
                if time.monotonic() - started > _CALL_BUDGET:
                    return sent
        except BaseException:
            self.close()
            raise

    def _deliver_batch(self, rows: list[_Claimed]) -> int:
        stop_at = self._clock() + self._lease / 2
        try:
            self._connection()
        except (OSError, smtplib.SMTPException) as exc:
            self._retry_later(rows, exc)
            return 0

        sent = 0
        held: set[str] = set()
        accepted: list[_Claimed] = []
        first_accepted = 0.0
        try:
            for index, row in enumerate(rows):
                if self._clock() >= stop_at:
                    # The claim is getting old: another relay may take these
                    # rows soon, so this one must not send them any more.
                    self._release([r.id for r in rows[index:]])
                    break
                if row.recipient in held:
                    # An earlier email to this address failed in this batch.
                    self._release([row.id])
                    continue
                try:
                    self._send(row)
                except (OSError, smtplib.SMTPException) as exc:
                    held.add(row.recipient)
                    self._retry_later([row], exc)
                    if self._smtp is None:
                        # The connection is gone and could not be renewed:
                        # the rest of the batch waits for the next round.
                        self._release([r.id for r in rows[index + 1 :]])
                        break
                    continue
                if not accepted:
                    first_accepted = time.monotonic()
                accepted.append(row)
                if (
                    len(accepted) >= _MARK_EVERY
                    or time.monotonic() - first_accepted >= _MARK_AFTER
                ):
                    self._sent(accepted)
                    sent, accepted = sent + len(accepted), []
        finally:
            self._sent(accepted)
        return sent + len(accepted)

    def _send(self, row: _Claimed) -> None:
        smtp = self._connection()
        reused = self._smtp_carried > 0
        try:
            smtp.sendmail(self._envelope_from, [row.recipient], row.raw)
        except smtplib.SMTPServerDisconnected:
            self._drop()
            if not reused:
                raise
            # An idle connection the server had closed: it said nothing about
            # this message, so a new connection sends it once.
            smtp = self._connection()
            try:
                smtp.sendmail(self._envelope_from, [row.recipient], row.raw)
            except (OSError, smtplib.SMTPServerDisconnected):
                self._drop()
                raise
        except OSError:
            self._drop()  # a socket error leaves the session unusable
            raise
        self._smtp_carried += 1
        self._smtp_used = time.monotonic()

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None and time.monotonic() - self._smtp_used > _IDLE:
            self.close()
        if self._smtp is None:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            try:
                if self._starttls:
                    smtp.starttls()
                if self._username and self._password:
                    smtp.login(self._username, self._password)
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
            self._smtp_used = time.monotonic()
            self._smtp_carried = 0
            self.connections_opened += 1
        return self._smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def close(self) -> None:
        """Say goodbye to the SMTP server, if connected."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    # -- recording the outcome ---------------------------------------------

    def _sent(self, rows: list[_Claimed]) -> None:
        """Record that the server accepted ``rows``.

        They are gone already: a mark that does not land means they go
        again when their lease ends. So a database error here (a lock held
        past ``Store.lock_timeout``, a dropped PostgreSQL connection) is
        tried again, until a quarter of the lease has passed; only then is
        it raised, and those emails are left to at-least-once.
        """
        if not rows:
            return
        now = self._clock()
        update = (
            outbox.update()
            .where(outbox.c.id.in_([row.id for row in rows]))
            .values(sent_at=now, claimed_by=None, claimed_until=None)
        )
        give_up = time.monotonic() + self._lease.total_seconds() / 4
        pause = 0.05
        while True:
            try:
                with self._store.begin() as conn:
                    conn.execute(update)
                break
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                if time.monotonic() + pause > give_up:
                    raise
                logger.warning(
                    "could not mark %s sent email(s) (%s); trying again",
                    len(rows),
                    type(exc.orig).__name__,
                )
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        for row in rows:
            logger.info("email sent: %s to journey %s", row.template, row.journey_id)

    def _release(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        with self._store.begin() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(row_ids))
                .values(claimed_by=None, claimed_until=None)
            )

    def _backoff(self, attempts: int) -> timedelta:
        # The exponent is capped before the cap on the delay: 2**100 times a
        # few seconds does not fit in a timedelta.
        delay = min(self._retry_base * (1 << min(attempts, 24)), _MAX_BACKOFF)
        jitter: float = random.uniform(0.8, 1.2)  # noqa: S311 (not a secret)
        return delay * jitter

    def _retry_later(self, rows: list[_Claimed], exc: BaseException) -> None:
        now = self._clock()
        error = _describe(exc)
        given_up: list[int] = []
        delay: timedelta | None = None
        with self._store.begin() as conn:
            for row in rows:
                values: dict[str, object] = {
                    "attempts": row.attempts + 1,
                    "last_error": error,
                    "claimed_by": None,
                    "claimed_until": None,
                }
                if _permanent(exc) or row.attempts + 1 >= _MAX_ATTEMPTS:
                    given_up.append(row.id)
                    values["failed_at"] = now
                else:
                    delay = self._backoff(row.attempts)
                    values["next_attempt_at"] = now + delay
                conn.execute(
                    outbox.update().where(outbox.c.id == row.id).values(**values)
                )
        for row_id in given_up:
            logger.warning(
                "email %s refused for good (%s): an operator must look at it",
                row_id,
                type(exc).__name__,
            )
        if delay is not None:
            logger.warning(
                "%s email(s) not delivered (%s), retrying in about %ss",
                len(rows) - len(given_up),
                type(exc).__name__,
                int(delay.total_seconds()),
            )

    def run(self, stop: threading.Event, *, interval: float = 0.5) -> None:
        """Deliver until ``stop`` is set, polling every ``interval`` seconds."""
        try:
            while not stop.is_set():
                try:
                    busy = self.deliver_pending() > 0
                except Exception:  # a relay must outlive one bad round
                    logger.exception("the relay failed a round; it will try again")
                    busy = False
                if not busy:
                    stop.wait(interval)
        finally:
            self.close()
