"""What a typed text may hold: visible characters, on one line.

Every free-text value the journey stores (a person's name, a razón social,
a workspace's name, a giro, an address, an order number, a product's name)
is shown later on pages and in emails, and sent to the SII's services.
None of them may hold a character that is not seen where it stands:

- control characters (Unicode category Cc): NUL, tab, line feed, carriage
  return, escape, DEL and the C1 controls;
- format characters (Cf): bidirectional controls such as U+202E
  RIGHT-TO-LEFT OVERRIDE, which make a text read otherwise than it is
  stored, zero-width spaces and joiners, the soft hyphen, the byte order
  mark;
- line and paragraph separators (Zl, Zp);
- lone surrogates (Cs), which are no text at all and cannot be stored.

Spaces (category Zs, the no-break space among them) are fine: the journey
trims them and writes a run of them as one. Passwords have a looser rule
(``passwords.py``): a password is never shown, so only Cc and Cs are
refused there. A RUT is parsed, not stored as typed (``rut.py``).
"""

from __future__ import annotations

import unicodedata

from haulmer_onboarding.errors import ValidationError

__all__ = ["check_line", "describe", "first_refused"]

#: Categories no single line of free text may hold.
LINE_REFUSED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | frozenset(
    "\u2066\u2067\u2068\u2069"
)


def first_refused(text: str, refused: frozenset[str] = LINE_REFUSED) -> str | None:
    """The first character of ``text`` whose category is in ``refused``, or
    ``None`` when there is none."""
    # isprintable() is False for every refused category (and for spaces
    # other than " "), so the common case costs one pass in C.
    if text.isprintable():
        return None
    return next((c for c in text if unicodedata.category(c) in refused), None)


def describe(char: str) -> str:
    """``char`` as a Spanish sentence names it: ``una tabulación``,
    ``un control de dirección del texto (U+202E)``."""
    code = f"U+{ord(char):04X}"
    if char == "\t":
        return "una tabulación"
    if char in _LINE_BREAKS:
        return "un salto de línea"
    if char in _BIDI:
        return f"un control de dirección del texto ({code})"
    category = unicodedata.category(char)
    if category == "Cs":
        return f"un carácter que no es texto válido ({code})"
    if category == "Cf":
        return f"un carácter invisible ({code})"
    return f"un carácter de control ({code})"


def check_line(value: str, field: str, label: str, *, code: str | None = None) -> None:
    """Refuse ``value`` if it holds a character of ``LINE_REFUSED``.

    Raises ``ValidationError`` with ``code``, by default
    ``<field>_invalid_character``; ``label`` names the field in the message
    (``"la razón social"``).
    """
    char = first_refused(value)
    if char is None:
        return
    raise ValidationError(
        f"{label[:1].upper()}{label[1:]} tiene {describe(char)}. Usa una sola "
        "línea, sin tabulaciones, saltos de línea ni caracteres invisibles.",
        code=code or f"{field}_invalid_character",
        field=field,
    )
