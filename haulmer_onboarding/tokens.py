"""Signed email links: issue and read.

A link token says which step it is for (its *purpose*), when it was issued,
and carries a random id (``jti``), as ``purpose.jti.issued.signature``. The
signature is itsdangerous' (HMAC-SHA256 under a key derived once per secret
key); what it does not cover lives here: purpose binding, expiry measured
by the SDK's own clock with a tolerance for hosts whose clocks run ahead,
and key rotation in the order people expect (the first key signs).

Whether a link was already used is a fact of the database, not of the token:
the journey records each issued ``jti`` and consumes it in the transaction
that completes the step (see ``journey.py``). This module only answers
"is this a genuine, current link for this purpose?".
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import attrs
from itsdangerous import BadData, Signer

from haulmer_onboarding.errors import (
    LinkExpired,
    LinkInvalid,
    LinkWrongPurpose,
)

__all__ = [
    "DEFAULT_MAX_AGES",
    "LinkClaims",
    "LinkSigner",
    "Purpose",
]


class Purpose:
    """The purposes of the core's links; plugins may add their own strings."""

    CREATE_PASSWORD = "create_password"
    CREATE_WORKSPACE = "create_workspace"
    START_SETUP = "start_setup"
    TAX_DOCUMENT = "tax_document"
    CERTIFICATION_STATUS = "certification_status"


#: How long a link of each purpose stays valid unless settings say otherwise.
DEFAULT_MAX_AGES: Mapping[str, timedelta] = {
    Purpose.CREATE_PASSWORD: timedelta(days=3),
    Purpose.CREATE_WORKSPACE: timedelta(days=14),
    Purpose.START_SETUP: timedelta(days=14),
    Purpose.TAX_DOCUMENT: timedelta(days=30),
    Purpose.CERTIFICATION_STATUS: timedelta(days=60),
}

_FALLBACK_MAX_AGE = timedelta(days=7)
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,39}")
# purpose . jti (16 random bytes) . issued (base 36) . HMAC-SHA256 in
# unpadded base64, whose last character carries two unused bits.
_SHAPE = re.compile(
    r"[a-z][a-z0-9_]{0,39}\.[A-Za-z0-9_-]{22}\.[0-9a-z]{1,13}"
    r"\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
)
_SALT = "haulmer_onboarding.link"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@attrs.frozen
class LinkClaims:
    """What a genuine link says about itself; ``issued`` is a Unix time."""

    purpose: str
    jti: str
    issued: int

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.issued, UTC)


class LinkSigner:
    """Makes and reads link tokens.

    ``secret_keys`` is ordered newest first: the first key signs, every key
    verifies, so a key can be retired by moving it to the end and later
    dropping it. ``clock_skew`` is how far in the future an issue date may lie
    (another host's clock running ahead) before the link is refused.
    """

    def __init__(
        self,
        secret_keys: Sequence[str | bytes],
        *,
        max_ages: Mapping[str, timedelta] | None = None,
        clock_skew: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not secret_keys or not all(secret_keys):
            raise ValueError("at least one non-empty secret key is required")
        self._max_ages = {**DEFAULT_MAX_AGES, **(max_ages or {})}
        self._max_seconds = {
            purpose: age.total_seconds() for purpose, age in self._max_ages.items()
        }
        self._fallback = _FALLBACK_MAX_AGE.total_seconds()
        self._skew_seconds = clock_skew.total_seconds()
        self._clock = clock
        # Each key is derived for this use once, by itsdangerous, instead of
        # on every verification; itsdangerous signs with the *last* key of
        # its list, so ours is reversed.
        derived = [
            Signer(key, salt=_SALT, digest_method=hashlib.sha256).derive_key()
            for key in reversed(secret_keys)
        ]
        self._signer = Signer(
            derived, key_derivation="none", digest_method=hashlib.sha256
        )

    def max_age(self, purpose: str) -> timedelta:
        return self._max_ages.get(purpose, _FALLBACK_MAX_AGE)

    def issue(self, purpose: str) -> tuple[str, LinkClaims]:
        """A new token for ``purpose`` and the claims it carries.

        A purpose is lowercase letters, digits and ``_``, starting with a
        letter (``openretail_activation``).
        """
        if _PURPOSE.fullmatch(purpose) is None:
            raise ValueError(f"a link purpose is [a-z][a-z0-9_]*, not {purpose!r}")
        claims = LinkClaims(
            purpose=purpose,
            jti=secrets.token_urlsafe(16),
            issued=int(self._clock().timestamp()),
        )
        # purpose.jti.issued-at-in-base-36, then itsdangerous adds .signature:
        # only letters, digits, "-", "_" and ".", which survive URL encoding.
        value = f"{purpose}.{claims.jti}.{_base36(claims.issued)}"
        return self._signer.sign(value).decode("ascii"), claims

    def read(self, token: str, purpose: str) -> LinkClaims:
        """The claims of ``token`` if it is a current link for ``purpose``.

        Raises ``LinkInvalid`` (tampered, mangled, from the far future),
        ``LinkWrongPurpose`` or ``LinkExpired`` (which carries the claims'
        id and dates, so that a new link can be offered); never consults a
        database.
        """
        claims = self._decode(token)
        if claims.purpose != purpose:
            raise LinkWrongPurpose(expected=purpose, actual=claims.purpose)

        # Plain seconds: this runs on every click.
        now = self._clock().timestamp()
        if claims.issued > now + self._skew_seconds:
            raise LinkInvalid(reason="future")
        expires = claims.issued + self._max_seconds.get(purpose, self._fallback)
        if now > expires:
            raise LinkExpired(
                purpose=purpose,
                jti=claims.jti,
                issued_at=claims.issued_at,
                expired_at=datetime.fromtimestamp(expires, UTC),
            )
        return claims

    def purpose_of(self, token: str) -> str:
        """The purpose a genuine ``token`` was made for, current or expired.

        Raises ``LinkInvalid`` for a token we did not sign; says nothing of
        its age (``read`` does).
        """
        return self._decode(token).purpose

    def _decode(self, token: str) -> LinkClaims:
        # One spelling per link: base64 decoders forgive stray characters and
        # unused bits, so the shape is checked before the signature.
        shape = _SHAPE.fullmatch(token.strip())
        if shape is None:
            raise LinkInvalid(reason="malformed")
        try:
            value = self._signer.unsign(shape[0]).decode("ascii")
        except (BadData, UnicodeError) as exc:
            raise LinkInvalid(reason="signature") from exc

        purpose, jti, issued = value.split(".")
        try:
            seconds = int(issued, 36)
        except ValueError as exc:
            raise LinkInvalid(reason="malformed") from exc
        return LinkClaims(purpose=purpose, jti=jti, issued=seconds)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text
