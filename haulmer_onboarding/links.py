"""The life of a link in the database: issued, used, revoked.

``tokens.py`` says whether a token is genuine and current; this module adds
what only the database knows. Every issued link has a row keyed by its
random id: a link works while its row is neither used nor revoked. All
methods take the connection of the caller's transaction, so issuing a link,
consuming another and the state change that causes both commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy import Connection

from haulmer_onboarding.errors import (
    LinkExpired,
    LinkInvalid,
    LinkSuperseded,
    LinkUsed,
)
from haulmer_onboarding.store.tables import link_tokens
from haulmer_onboarding.tokens import LinkClaims, LinkSigner, Purpose

__all__ = ["LINK_PATHS", "LinkBook", "LiveLink"]

#: Where each purpose's link lands, relative to ``Settings.base_url``.
LINK_PATHS: Mapping[str, str] = {
    Purpose.CREATE_PASSWORD: "/contrasena/{token}",
    Purpose.CREATE_WORKSPACE: "/workspace/{token}",
    Purpose.START_SETUP: "/setup/{token}",
    Purpose.TAX_DOCUMENT: "/documento-tributario/{token}",
    Purpose.CERTIFICATION_STATUS: "/certificacion/{token}",
}

#: Why a link was revoked.
SUPERSEDED = "superseded"
COMPLETED = "completed"

# Built once: a link is read and consumed on every click, and building a
# statement costs more than running it on SQLite.
_BY_JTI = sa.select(link_tokens).where(link_tokens.c.jti == sa.bindparam("jti"))
_INSERT = link_tokens.insert()
_CONSUME = (
    link_tokens.update()
    .where(
        link_tokens.c.jti == sa.bindparam("b_jti"),
        link_tokens.c.used_at.is_(None),
        link_tokens.c.revoked_at.is_(None),
    )
    .values(used_at=sa.bindparam("b_used_at"))
)
_USE = (
    link_tokens.update()
    .where(
        link_tokens.c.jti == sa.bindparam("b_jti"),
        link_tokens.c.purpose == sa.bindparam("b_purpose"),
        link_tokens.c.used_at.is_(None),
        link_tokens.c.revoked_at.is_(None),
    )
    .values(used_at=sa.bindparam("b_used_at"))
    .returning(link_tokens.c.subject)
)
_REVOKE = (
    link_tokens.update()
    .where(
        link_tokens.c.subject == sa.bindparam("b_subject"),
        link_tokens.c.purpose == sa.bindparam("b_purpose"),
        link_tokens.c.used_at.is_(None),
        link_tokens.c.revoked_at.is_(None),
    )
    .values(
        revoked_at=sa.bindparam("b_revoked_at"),
        revoked_reason=sa.bindparam("b_reason"),
    )
)


@attrs.frozen
class LiveLink:
    """A genuine, current, unused link and what it acts on."""

    claims: LinkClaims
    subject: str

    @property
    def subject_id(self) -> int:
        """The numeric id in a subject such as ``journey:7``."""
        return int(self.subject.partition(":")[2])


class LinkBook:
    """Issues, reads, consumes and revokes links against the database."""

    def __init__(
        self,
        signer: LinkSigner,
        *,
        base_url: str,
        clock: Callable[[], datetime],
        paths: Mapping[str, str] = LINK_PATHS,
    ) -> None:
        self.signer = signer
        self._base_url = base_url.rstrip("/")
        self._clock = clock
        self._paths = dict(paths)

    def url(self, purpose: str, token: str) -> str:
        return self._base_url + self._paths[purpose].format(token=token)

    def issue(
        self,
        conn: Connection,
        purpose: str,
        subject: str,
        *,
        supersede: bool = True,
        signed: tuple[str, LinkClaims] | None = None,
    ) -> str:
        """A new link's URL; with ``supersede`` the subject's older links of
        the same purpose stop working.

        ``signed`` is a token the signer made for ``purpose`` beforehand (an
        email was rendered with it outside the transaction); it works once
        this transaction commits, as any other.
        """
        token, claims = signed or self.signer.issue(purpose)
        if claims.purpose != purpose:
            raise ValueError(f"a {claims.purpose} token cannot be a {purpose} link")
        if supersede:
            self.revoke(conn, subject, purpose, reason=SUPERSEDED)
        conn.execute(
            _INSERT,
            {
                "jti": claims.jti,
                "purpose": purpose,
                "subject": subject,
                "issued_at": self._clock(),
            },
        )
        return self.url(purpose, token)

    def read(self, conn: Connection, token: str, purpose: str) -> LiveLink:
        """The live link behind ``token``, or the ``LinkError`` that says why
        it cannot be used."""
        claims = self.signer.read(token, purpose)
        row = self._row(conn, claims.jti, purpose)
        _refuse_dead(row)
        return LiveLink(claims=claims, subject=str(row.subject))

    def read_expired(self, conn: Connection, token: str, purpose: str) -> str:
        """The subject of a genuine link that expired unused.

        Raises the link's error when it is not such a link: a link that was
        used or superseded is not renewed.
        """
        try:
            self.signer.read(token, purpose)
        except LinkExpired as expired:
            row = self._row(conn, expired.jti, purpose)
            _refuse_dead(row)
            return str(row.subject)
        raise LinkInvalid(reason="not expired")

    def read_used(self, conn: Connection, token: str, purpose: str) -> str:
        """The subject of a genuine link that was used to complete its step.

        Lets a page say "already done" (a double click, a reload, a return
        from the email) instead of only "already used". Expiry does not
        matter here; a superseded link is not a used one.
        """
        try:
            claims = self.signer.read(token, purpose)
            jti = claims.jti
        except LinkExpired as expired:
            jti = expired.jti
        row = self._row(conn, jti, purpose)
        if row.used_at is None and row.revoked_reason != COMPLETED:
            raise LinkInvalid(reason="not used")
        return str(row.subject)

    def use(self, conn: Connection, token: str, purpose: str) -> LiveLink:
        """Read and consume in one statement: the path of a step's POST.

        When the step then refuses the request, the caller's transaction
        rolls back and the link is unused again.
        """
        claims = self.signer.read(token, purpose)
        subject = conn.execute(
            _USE,
            {"b_jti": claims.jti, "b_purpose": purpose, "b_used_at": self._clock()},
        ).scalar()
        if subject is None:
            _refuse_dead(self._row(conn, claims.jti, purpose))
            raise LinkUsed()  # used between the statement and the look
        return LiveLink(claims=claims, subject=str(subject))

    def consume(self, conn: Connection, link: LiveLink) -> None:
        """Mark the link used; if another request got there first, refuse.

        The conditional update is what makes two concurrent uses safe: only
        one of them can change the row from unused to used.
        """
        result = conn.execute(
            _CONSUME, {"b_jti": link.claims.jti, "b_used_at": self._clock()}
        )
        if result.rowcount != 1:
            raise LinkUsed()

    def revoke(
        self, conn: Connection, subject: str, purpose: str, *, reason: str
    ) -> None:
        """Kill every unused link of ``purpose`` for ``subject``."""
        conn.execute(
            _REVOKE,
            {
                "b_subject": subject,
                "b_purpose": purpose,
                "b_revoked_at": self._clock(),
                "b_reason": reason,
            },
        )

    def _row(self, conn: Connection, jti: str, purpose: str) -> Any:
        row = conn.execute(_BY_JTI, {"jti": jti}).first()
        if row is None or row.purpose != purpose:
            # Signed with our key but never recorded: a database restored
            # from an older backup, or links from another deployment.
            raise LinkInvalid(reason="unknown")
        return row


def _refuse_dead(row: Any) -> None:
    if row.used_at is not None:
        raise LinkUsed(used_at=row.used_at)
    if row.revoked_at is not None:
        if row.revoked_reason == SUPERSEDED:
            raise LinkSuperseded(used_at=row.revoked_at)
        raise LinkUsed(used_at=row.revoked_at)
