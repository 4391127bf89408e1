"""The RUT (Rol Único Tributario), Chile's tax identifier.

``Rut.parse`` accepts the ways people write a RUT (``76.123.456-0``,
``76123456-0``, ``761234560``, a lowercase ``k``, stray spaces and invisible
format characters such as a zero-width space pasted with it) and refuses,
with a Spanish message, anything whose check digit does not match. A ``Rut``
prints in the canonical form ``76123456-0``; ``formatted()`` adds the dots.

``Rut.parse(None)`` is an empty answer (``rut_empty``); any other value that
is not a ``str`` (an int, bytes) is a programming error and raises
``TypeError``: ``Rut.from_number`` takes a number without its check digit.
"""

from __future__ import annotations

import re
import unicodedata

import attrs

from haulmer_onboarding.errors import RutError

__all__ = ["Rut", "check_digit", "dotted"]

# Nine digits already exceed every RUT the SII has assigned; longer bodies are
# typing mistakes, and refusing them keeps the number a plain int.
_MAX_NUMBER = 999_999_999

# Typographic dashes arrive when a RUT is pasted from a document or an email.
_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―−", "-"))

_PATTERN = re.compile(
    r"(?P<body>[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+)-?(?P<dv>[0-9K])",
    re.ASCII,
)

# "999.999.999-9" is 13 characters; anything much longer is not a RUT.
_MAX_TYPED = 16

_NO_CHECK_DIGIT_HINT = (
    " Si escribiste el RUT sin dígito verificador, agrégalo después del guion."
)

_FORMAT_MESSAGE = (
    "El RUT no tiene un formato válido. Escríbelo con su dígito verificador, "
    "por ejemplo 12.345.678-5."
)


def check_digit(number: int) -> str:
    """The mod 11 check digit of ``number``: ``"0"`` to ``"9"`` or ``"K"``."""
    if number < 0:
        raise ValueError("a RUT number cannot be negative")

    total = 0
    factor = 2
    for digit in reversed(str(number)):
        total += int(digit) * factor
        factor = 2 if factor == 7 else factor + 1

    value = 11 - total % 11
    if value == 11:
        return "0"
    if value == 10:
        return "K"
    return str(value)


def dotted(text: str | None) -> str:
    """``text`` as customers read a RUT, ``76.543.210-3``, however it was
    stored; text that is not a valid RUT is returned as it is."""
    if not text:
        return ""
    try:
        return Rut.parse(text).formatted()
    except RutError:
        return text


def _group_thousands(number: int) -> str:
    return f"{number:,}".replace(",", ".")


def _check_number(instance: Rut, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("Rut.number must be an int")
    if not 1 <= value <= _MAX_NUMBER:
        raise RutError(_FORMAT_MESSAGE, code="rut_format", field="rut")


def _check_dv(instance: Rut, attribute: attrs.Attribute[str], value: str) -> None:
    expected = check_digit(instance.number)
    if value != expected:
        raise RutError(
            "El dígito verificador no corresponde: para "
            f"{_group_thousands(instance.number)} debería ser {expected}.",
            code="rut_check_digit",
            field="rut",
        )


def _normalize_dv(value: object) -> str:
    return str(value).strip().upper()


@attrs.frozen
class Rut:
    """A RUT whose check digit is known to be right.

    Building one directly checks it too: ``Rut(76123456, "1")`` raises
    ``RutError`` with code ``rut_check_digit``.
    """

    number: int = attrs.field(validator=_check_number)
    dv: str = attrs.field(converter=_normalize_dv, validator=_check_dv)

    @classmethod
    def parse(cls, text: str | None) -> Rut:
        """Read a RUT as a person types it.

        Raises ``RutError`` with code ``rut_empty`` (nothing typed, or
        ``None``), ``rut_format`` (not shaped like a RUT) or
        ``rut_check_digit`` (the check digit does not match the number; when
        no hyphen was typed the message adds that the check digit may be
        missing). Raises ``TypeError`` for a value that is not a ``str``.
        """
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise TypeError(
                f"Rut.parse takes the RUT as a str, not {type(text).__name__}; "
                "Rut.from_number takes a number without its check digit"
            )
        # NFKC folds what phones' keyboards and copied documents produce
        # into plain characters: full-width digits, hyphens and letters.
        compact = (
            "".join(
                char
                for char in unicodedata.normalize("NFKC", text)
                if not char.isspace() and unicodedata.category(char) != "Cf"
            )
            .translate(_DASHES)
            .upper()
        )
        if len(compact) > _MAX_TYPED:
            raise RutError(_FORMAT_MESSAGE, code="rut_format", field="rut")
        if not compact:
            raise RutError("Ingresa el RUT.", code="rut_empty", field="rut")

        match = _PATTERN.fullmatch(compact)
        if match is None:
            raise RutError(_FORMAT_MESSAGE, code="rut_format", field="rut")

        number = int(match["body"].replace(".", ""))
        try:
            return cls(number, match["dv"])
        except RutError as error:
            if error.code != "rut_check_digit" or "-" in compact:
                raise
            # "76086428" may be a RUT typed without its check digit.
            raise RutError(
                error.message + _NO_CHECK_DIGIT_HINT, code=error.code, field="rut"
            ) from None

    @classmethod
    def from_number(cls, number: int) -> Rut:
        """The RUT of ``number``, with its check digit computed."""
        return cls(number, check_digit(number))

    def formatted(self) -> str:
        """The RUT as people write it: ``76.123.456-0``."""
        return f"{_group_thousands(self.number)}-{self.dv}"

    def __str__(self) -> str:
        return f"{self.number}-{self.dv}"
