"""The electronic tax document (DTE) types an organization can issue.

Each ``DteType`` is its SII code, so ``DteType(33)`` is the factura
electrónica and a member compares equal to its code. ``title`` is the
document's Spanish name as the SII writes it; ``family`` groups documents
that travel and are certified together.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from haulmer_onboarding.errors import DocumentsError

__all__ = ["DteType", "parse_codes"]


class DteType(IntEnum):
    """A DTE type, by its SII code."""

    FACTURA = 33
    FACTURA_EXENTA = 34
    BOLETA = 39
    BOLETA_EXENTA = 41
    LIQUIDACION_FACTURA = 43
    FACTURA_COMPRA = 46
    GUIA_DESPACHO = 52
    NOTA_DEBITO = 56
    NOTA_CREDITO = 61
    FACTURA_EXPORTACION = 110
    NOTA_DEBITO_EXPORTACION = 111
    NOTA_CREDITO_EXPORTACION = 112

    @property
    def title(self) -> str:
        """The Spanish name, e.g. ``"Factura electrónica"``."""
        return _TITLES[self]

    @property
    def family(self) -> str:
        """One of ``factura``, ``boleta``, ``guía``, ``nota``, ``exportación``."""
        return _FAMILIES[self]


_TITLES: dict[DteType, str] = {
    DteType.FACTURA: "Factura electrónica",
    DteType.FACTURA_EXENTA: "Factura no afecta o exenta electrónica",
    DteType.BOLETA: "Boleta electrónica",
    DteType.BOLETA_EXENTA: "Boleta exenta electrónica",
    DteType.LIQUIDACION_FACTURA: "Liquidación factura electrónica",
    DteType.FACTURA_COMPRA: "Factura de compra electrónica",
    DteType.GUIA_DESPACHO: "Guía de despacho electrónica",
    DteType.NOTA_DEBITO: "Nota de débito electrónica",
    DteType.NOTA_CREDITO: "Nota de crédito electrónica",
    DteType.FACTURA_EXPORTACION: "Factura de exportación electrónica",
    DteType.NOTA_DEBITO_EXPORTACION: "Nota de débito de exportación electrónica",
    DteType.NOTA_CREDITO_EXPORTACION: "Nota de crédito de exportación electrónica",
}

_FAMILIES: dict[DteType, str] = {
    DteType.FACTURA: "factura",
    DteType.FACTURA_EXENTA: "factura",
    DteType.BOLETA: "boleta",
    DteType.BOLETA_EXENTA: "boleta",
    DteType.LIQUIDACION_FACTURA: "factura",
    DteType.FACTURA_COMPRA: "factura",
    DteType.GUIA_DESPACHO: "guía",
    DteType.NOTA_DEBITO: "nota",
    DteType.NOTA_CREDITO: "nota",
    DteType.FACTURA_EXPORTACION: "exportación",
    DteType.NOTA_DEBITO_EXPORTACION: "exportación",
    DteType.NOTA_CREDITO_EXPORTACION: "exportación",
}


def _code_of(value: int | str) -> DteType | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            return None
        value = int(text)
    try:
        return DteType(value)
    except ValueError:
        return None


def parse_codes(values: Iterable[int | str]) -> frozenset[DteType]:
    """The DTE types named by ``values``: codes as ints or as strings.

    Duplicates collapse. Raises ``DocumentsError`` with code
    ``documents_unknown`` naming every value that is not a known DTE code.
    """
    if isinstance(values, str | bytes):
        raise TypeError("parse_codes takes a collection of codes, not one string")

    found: set[DteType] = set()
    unknown: list[str] = []
    for value in values:
        code = _code_of(value)
        if code is None:
            # Echo the value back, but not a whole pasted paragraph.
            shown = str(value).strip()[:20] or "(vacío)"
            if shown not in unknown:
                unknown.append(shown)
        else:
            found.add(code)

    if unknown:
        listed = ", ".join(unknown)
        noun = "El código" if len(unknown) == 1 else "Los códigos"
        verb = "no corresponde" if len(unknown) == 1 else "no corresponden"
        raise DocumentsError(
            f"{noun} {listed} {verb} a un documento tributario electrónico "
            "que podamos habilitar.",
            code="documents_unknown",
            field="documents",
        )
    return frozenset(found)
