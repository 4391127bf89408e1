"""OpenFactura, loaded as users load it: by the facade and by entry point."""

from __future__ import annotations

import importlib.metadata

import haulmer_openfactura
import pytest

from haulmer_onboarding import DteType, Plugins, Purchase, PurchaseItem

ITEM_CODES = {"OF-EMPRENDE", "OF-PYME", "OF-FULL"}
CLASSIC = [
    "postulacion",
    "set_pruebas",
    "simulacion",
    "intercambio",
    "muestras_impresas",
    "declaracion",
]


def purchase(*item_codes: str) -> Purchase:
    return Purchase(
        order_number="OC-1",
        email="a@b.cl",
        buyer_name="Ana",
        items=[PurchaseItem(code=code, name=code) for code in item_codes],
        legal_name="X SpA",
        rut="76086428-5",
    )


@pytest.fixture
def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=[haulmer_openfactura])


def test_declares_the_product_with_its_item_codes(plugins: Plugins) -> None:
    product = plugins.products["openfactura"]

    assert product.name == "OpenFactura"
    assert product.item_codes == ITEM_CODES


@pytest.mark.parametrize("item_code", sorted(ITEM_CODES))
def test_item_codes_mean_openfactura(plugins: Plugins, item_code: str) -> None:
    assert plugins.products_for_items([item_code]) == ("openfactura",)


def test_openretail_is_not_an_openfactura_item(plugins: Plugins) -> None:
    assert plugins.products_for_items(["OPENRETAIL"]) == ()


def test_offer_requires_factura_and_offers_boletas(plugins: Plugins) -> None:
    offer = plugins.document_offer(["openfactura"], purchase("OF-PYME"))

    assert offer.required == {DteType.FACTURA}
    assert {DteType.BOLETA, DteType.BOLETA_EXENTA} <= offer.optional
    assert offer.optional == {34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112}
    assert offer.preselected == {33, 56, 61}
    assert not offer.locked


def test_hooks_ignore_other_products() -> None:
    assert haulmer_openfactura.onboarding_dte_policy("tuu", purchase("TUU-POS")) is None
    assert (
        haulmer_openfactura.onboarding_certification_steps("tuu", frozenset({33}))
        is None
    )


def test_facturas_go_through_the_classic_stages(plugins: Plugins) -> None:
    steps = plugins.certification_steps(["openfactura"], frozenset({33, 61}))

    assert [step.id for step in steps] == CLASSIC
    assert [step.business_days for step in steps] == [1, 2, 1, 1, 1, 1]
    assert steps[0].title == "Postulación"
    assert steps[-1].title == "Declaración de cumplimiento"


@pytest.mark.parametrize("boleta", [DteType.BOLETA, DteType.BOLETA_EXENTA])
def test_a_boleta_adds_its_set_before_the_declaration(
    plugins: Plugins, boleta: DteType
) -> None:
    steps = plugins.certification_steps(["openfactura"], frozenset({33, boleta}))

    assert [step.id for step in steps] == [*CLASSIC[:-1], "set_boletas", "declaracion"]
    assert steps[-2].title == "Set de pruebas de boletas"


def test_only_boletas_skip_the_classic_stages(plugins: Plugins) -> None:
    steps = plugins.certification_steps(["openfactura"], frozenset({39, 41}))

    assert [step.id for step in steps] == ["postulacion", "set_boletas", "declaracion"]


def test_loads_through_its_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="haulmer_onboarding")
    assert "openfactura" in entry_points.names
    assert entry_points["openfactura"].value == "haulmer_openfactura"

    plugins = Plugins()

    assert plugins.pm.get_plugin("openfactura") is haulmer_openfactura
    assert plugins.products["openfactura"].item_codes == ITEM_CODES
