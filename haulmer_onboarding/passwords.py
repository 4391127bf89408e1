"""The platform password: its policy and how it is stored.

The policy is the one customers are told when they create their password:
at least 8 characters, with lowercase letters, uppercase letters and
digits, typed twice. Passwords are stored as Argon2id hashes.

Passwords are normalized to Unicode NFKC before they are checked, hashed or
verified, so the same password typed on two keyboards that compose accents
differently still matches.

A password may not hold a control character (NUL, tab, a line break: no
keyboard types one into a password box) nor a lone surrogate (not text,
so it cannot be hashed). Format characters are allowed: a password is never
shown, and emoji sequences are joined with one (``text.py``).
"""

from __future__ import annotations

import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from haulmer_onboarding.errors import PasswordError
from haulmer_onboarding.text import describe, first_refused

__all__ = ["check_policy", "hash_password", "needs_rehash", "verify_password"]

MIN_LENGTH = 8
# Long enough for any passphrase or password manager, short enough that
# hashing it cannot be used to burn CPU.
MAX_LENGTH = 1024

_hasher = PasswordHasher()

_REFUSED = frozenset({"Cc", "Cs"})
_CS = frozenset({"Cs"})


def _normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def _too_long() -> PasswordError:
    return PasswordError(
        f"La contraseña no puede tener más de {MAX_LENGTH} caracteres.",
        code="password_too_long",
        field="password",
    )


def _checked(password: str) -> str:
    """The normalized password, or ``password_too_long``, or
    ``password_invalid_character``."""
    if len(password) > MAX_LENGTH:
        raise _too_long()
    char = first_refused(password, _REFUSED)
    if char is not None:
        raise PasswordError(
            f"La contraseña tiene {describe(char)}, que no puede ser parte de "
            "una contraseña. Usa letras, números, espacios y símbolos.",
            code="password_invalid_character",
            field="password",
        )
    normalized = _normalize(password)
    if len(normalized) > MAX_LENGTH:
        raise _too_long()
    return normalized


def check_policy(password: str, confirmation: str) -> None:
    """Refuse a new password that breaks the policy or was not repeated.

    Raises ``PasswordError`` for the first rule broken, in this order:
    ``password_too_long``, ``password_invalid_character``,
    ``password_too_short``,
    ``password_missing_lowercase``, ``password_missing_uppercase``,
    ``password_missing_digit`` (all with ``field="password"``), then
    ``password_mismatch`` (``field="confirmation"``).
    """
    normalized = _checked(password)

    if len(normalized) < MIN_LENGTH:
        raise PasswordError(
            f"La contraseña debe tener al menos {MIN_LENGTH} caracteres.",
            code="password_too_short",
            field="password",
        )
    if not any(char.islower() for char in normalized):
        raise PasswordError(
            "La contraseña debe incluir al menos una letra minúscula.",
            code="password_missing_lowercase",
            field="password",
        )
    if not any(char.isupper() for char in normalized):
        raise PasswordError(
            "La contraseña debe incluir al menos una letra mayúscula.",
            code="password_missing_uppercase",
            field="password",
        )
    if not any(char.isdecimal() for char in normalized):
        raise PasswordError(
            "La contraseña debe incluir al menos un número.",
            code="password_missing_digit",
            field="password",
        )

    # A decomposed spelling is longer than the password it normalizes to, but
    # never by this much: past it, do not spend time normalizing.
    if len(confirmation) > 4 * MAX_LENGTH:
        repeated = confirmation
    else:
        repeated = _normalize(confirmation)
    if repeated != normalized:
        raise PasswordError(
            "Las contraseñas no coinciden. Escribe la misma contraseña en ambos "
            "recuadros.",
            code="password_mismatch",
            field="confirmation",
        )


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password``, salted, in PHC string form.

    Raises ``PasswordError`` past the maximum length
    (``password_too_long``) and for a character no password may hold
    (``password_invalid_character``); the other rules are
    ``check_policy``'s business.
    """
    return _hasher.hash(_checked(password))


def verify_password(hashed: str, password: str) -> bool:
    """Whether ``password`` is the one ``hashed`` was made from.

    A wrong password is ``False``, never an exception. ``hashed`` that is not
    an Argon2 hash at all raises ``ValueError``: that is damaged data, not a
    customer's mistake, and should be seen.
    """
    # A lone surrogate cannot be encoded, so no stored hash was made from
    # it. Other characters refused today are still tried: a hash made before
    # the rule must keep opening its account.
    if len(password) > MAX_LENGTH or first_refused(password, _CS) is not None:
        return False
    try:
        return _hasher.verify(hashed, _normalize(password))
    except VerificationError:
        return False


def needs_rehash(hashed: str) -> bool:
    """Whether ``hashed`` was made with weaker parameters than today's.

    When true, hash the password again after a successful verification.
    """
    return _hasher.check_needs_rehash(hashed)
