from __future__ import annotations

import pytest

from haulmer_onboarding.dte import DteType, parse_codes
from haulmer_onboarding.errors import DocumentsError

# The SII's table, as the domain describes it.
TABLE = [
    (33, "FACTURA", "Factura electrónica", "factura"),
    (34, "FACTURA_EXENTA", "Factura no afecta o exenta electrónica", "factura"),
    (39, "BOLETA", "Boleta electrónica", "boleta"),
    (41, "BOLETA_EXENTA", "Boleta exenta electrónica", "boleta"),
    (43, "LIQUIDACION_FACTURA", "Liquidación factura electrónica", "factura"),
    (46, "FACTURA_COMPRA", "Factura de compra electrónica", "factura"),
    (52, "GUIA_DESPACHO", "Guía de despacho electrónica", "guía"),
    (56, "NOTA_DEBITO", "Nota de débito electrónica", "nota"),
    (61, "NOTA_CREDITO", "Nota de crédito electrónica", "nota"),
    (110, "FACTURA_EXPORTACION", "Factura de exportación electrónica", "exportación"),
    (
        111,
        "NOTA_DEBITO_EXPORTACION",
        "Nota de débito de exportación electrónica",
        "exportación",
    ),
    (
        112,
        "NOTA_CREDITO_EXPORTACION",
        "Nota de crédito de exportación electrónica",
        "exportación",
    ),
]


@pytest.mark.parametrize(("code", "name", "title", "family"), TABLE)
def test_each_type_matches_the_sii_table(
    code: int, name: str, title: str, family: str
) -> None:
    member = DteType(code)
    assert member.name == name
    assert member == code
    assert member.title == title
    assert member.family == family


def test_there_are_exactly_the_twelve_codes() -> None:
    assert [member.value for member in DteType] == [row[0] for row in TABLE]


def test_parse_codes_takes_ints_and_strings() -> None:
    assert parse_codes([33, "39", " 61 ", DteType.GUIA_DESPACHO]) == frozenset(
        {DteType.FACTURA, DteType.BOLETA, DteType.NOTA_CREDITO, DteType.GUIA_DESPACHO}
    )


def test_parse_codes_collapses_duplicates_and_takes_any_iterable() -> None:
    codes: list[int | str] = [33, "33", 33]
    assert parse_codes(iter(codes)) == frozenset({DteType.FACTURA})
    assert parse_codes(()) == frozenset()


@pytest.mark.parametrize("value", [99, 0, -33, "99", "abc", "", "33.0", "٣٣", True])
def test_parse_codes_refuses_unknown_codes(value: int | str) -> None:
    with pytest.raises(DocumentsError) as caught:
        parse_codes([33, value])
    assert caught.value.code == "documents_unknown"
    assert caught.value.field == "documents"
    assert caught.value.message.startswith("El código ")


def test_parse_codes_names_every_unknown_code() -> None:
    with pytest.raises(DocumentsError) as caught:
        parse_codes([33, 99, "x", 99])
    assert caught.value.message == (
        "Los códigos 99, x no corresponden a un documento tributario "
        "electrónico que podamos habilitar."
    )


def test_documents_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="38"):
        parse_codes([38])


def test_parse_codes_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        parse_codes("33")
